"""The six losses vs plain Python-loop references written from methods.md, plus hand-computed cases.

Every reference below loops over samples (and views, dimensions) with ``math`` on Python
floats, straight from the formulas; the vectorised losses must agree within 1e-5 in float64.
Every case also back-propagates and checks that each input gets a finite gradient.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from mer.train.losses import (
    AnchorCycler,
    cmd,
    cmd_loss,
    diff_loss,
    diff_total,
    iamc_loss,
    iemc_loss,
    pairwise_infonce,
    pairwise_supcon,
)

TOL = 1e-5

# Label patterns for the edge cases the task names.
LABELS = {
    "mixed": [0, 0, 1, 1, 2, 2, 2, 0],
    "singleton_class": [0, 0, 1, 2, 2, 2],  # class 1 has one sample
    "no_pair": [0, 1, 2, 3],  # no class has 2 samples
    "batch_of_1": [2],
    "one_class": [1, 1, 1, 1, 1],  # no negatives at all
}


# --------------------------------------------------------------------------- helpers


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)


def assert_finite_grads(loss: torch.Tensor, tensors) -> None:
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for t in tensors:
        assert t.grad is not None, "an input lost its graph"
        assert torch.isfinite(t.grad).all(), "non-finite gradient"


def dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v))


def cos(u: list[float], v: list[float]) -> float:
    return dot(u, v) / (math.sqrt(dot(u, u)) * math.sqrt(dot(v, v)))


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def unit(v: list[float]) -> list[float]:
    n = math.sqrt(dot(v, v))
    return [a / n for a in v]


def present_list(mask, name, b):
    return [True] * b if mask is None or name not in mask else [bool(x) for x in mask[name].tolist()]


# --------------------------------------------------------------------------- references


def ref_D(x1: torch.Tensor, x2: torch.Tensor, keep: list[bool] | None = None) -> float:
    X1, X2 = x1.tolist(), x2.tolist()
    rows = [i for i in range(len(X1)) if keep is None or keep[i]]
    d1, d2 = len(X1[0]), len(X2[0])
    if not rows:
        return 0.0

    def prep(X, d):
        mu = [sum(X[i][k] for i in rows) / len(rows) for k in range(d)]
        out = {}
        for i in rows:
            c = [X[i][k] - mu[k] for k in range(d)]
            nrm = math.sqrt(sum(a * a for a in c)) + 1e-6
            out[i] = [a / nrm for a in c]
        return out

    c1, c2 = prep(X1, d1), prep(X2, d2)
    total = 0.0
    for k in range(d1):
        for l in range(d2):
            e = sum(c1[i][k] * c2[i][l] for i in rows)
            total += e * e
    return total / (d1 * d2)


def ref_diff_total(private, shared, mask=None) -> float:
    names = list(private)
    b = private[names[0]].shape[0]
    p = {m: present_list(mask, m, b) for m in names}
    total = sum(ref_D(private[m], shared[m], p[m]) for m in names)
    for i, m in enumerate(names):
        for n in names[i + 1 :]:
            total += ref_D(private[m], private[n], [a and c for a, c in zip(p[m], p[n])])
    return total


def ref_cmd(x1, x2, K=3, keep1=None, keep2=None) -> float:
    def moments(X, keep):
        rows = [i for i in range(len(X)) if keep is None or keep[i]]
        d = len(X[0])
        mu = [sum(X[i][k] for i in rows) / len(rows) for k in range(d)]
        out = [mu]
        for p in range(2, K + 1):
            out.append([sum((X[i][k] - mu[k]) ** p for i in rows) / len(rows) for k in range(d)])
        return out

    m1, m2 = moments(x1.tolist(), keep1), moments(x2.tolist(), keep2)
    return sum(math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v))) for u, v in zip(m1, m2))


def ref_cmd_loss(shared, K=3, mask=None) -> float:
    names = list(shared)
    b = shared[names[0]].shape[0]
    vals = []
    for i, m in enumerate(names):
        for n in names[i + 1 :]:
            pm, pn = present_list(mask, m, b), present_list(mask, n, b)
            if any(pm) and any(pn):
                vals.append(ref_cmd(shared[m], shared[n], K, pm, pn))
    return mean(vals) if vals else 0.0


def ref_iamc_anchor(R, y, i, pres) -> float:
    pos = [cos(R[i], R[j]) for j in range(len(R)) if j != i and y[j] == y[i] and pres[j]]
    neg = [cos(R[i], R[j]) for j in range(len(R)) if y[j] != y[i] and pres[j]]
    return 2.0 - mean(pos) + (mean(neg) if neg else 0.0)


def ref_iamc(reps: dict, y: list[int], mask=None) -> float:
    b = len(y)
    per_r = []
    for name, r in reps.items():
        R, pres = r.tolist(), present_list(mask, name, b)
        counts = Counter(y[j] for j in range(b) if pres[j])
        anchors = [i for i in range(b) if pres[i] and counts[y[i]] >= 2]
        if anchors:
            per_r.append(mean([ref_iamc_anchor(R, y, i, pres) for i in anchors]))
    return mean(per_r) if per_r else 0.0


def ref_iemc_paper(shared: dict, y: list[int]) -> float:
    """The literal methods.md formula (no masks): P counts the anchor, N = B − P."""
    S = {m: t.tolist() for m, t in shared.items()}
    b = len(y)
    per_m = []
    for m in S:
        partners = [n for n in S if n != m]
        losses = []
        for i in range(b):
            a = y[i]
            P = sum(1 for j in range(b) if y[j] == a)
            N = b - P
            if P < 2:
                continue
            pos = 0.0
            neg = 0.0
            for j in range(b):
                for n in partners:
                    if j != i and y[j] == a:
                        pos += cos(S[m][i], S[n][j])
                    if y[j] != a:
                        neg += cos(S[m][i], S[n][j])
            losses.append(2.0 - pos / P + (neg / N if N else 0.0))
        if losses:
            per_m.append(mean(losses))
    return mean(per_m) if per_m else 0.0


def ref_iemc_anchor_masked(S, y, m, i, pres) -> tuple[float, bool]:
    """Documented mask generalisation: per partner n, P_n = 1 + #positives with n, N_n = #negatives with n."""
    pos = neg = 0.0
    has_pos = False
    for n in S:
        if n == m:
            continue
        pj = [j for j in range(len(y)) if j != i and y[j] == y[i] and pres[n][j]]
        nj = [j for j in range(len(y)) if y[j] != y[i] and pres[n][j]]
        has_pos = has_pos or bool(pj)
        pos += sum(cos(S[m][i], S[n][j]) for j in pj) / (len(pj) + 1)
        neg += sum(cos(S[m][i], S[n][j]) for j in nj) / len(nj) if nj else 0.0
    return 2.0 - pos + neg, has_pos and pres[m][i]


def ref_iemc_masked(shared, y, mask) -> float:
    S = {m: t.tolist() for m, t in shared.items()}
    pres = {m: present_list(mask, m, len(y)) for m in S}
    per_m = []
    for m in S:
        losses = []
        for i in range(len(y)):
            loss, ok = ref_iemc_anchor_masked(S, y, m, i, pres)
            if ok:
                losses.append(loss)
        if losses:
            per_m.append(mean(losses))
    return mean(per_m) if per_m else 0.0


def _views(z: dict) -> dict:
    """{m: [[unit vector of view v of sample i]]} as Python lists."""
    out = {}
    for m, t in z.items():
        t = t if t.dim() == 3 else t.unsqueeze(1)
        out[m] = [[unit(v) for v in sample] for sample in t.tolist()]
    return out


def ref_infonce(z: dict, tau=0.07, quirks=False, mask=None) -> float:
    Z = _views(z)
    b = len(next(iter(Z.values())))
    pres = {m: present_list(mask, m, b) for m in Z}
    pair_losses = []
    for m in Z:
        for n in Z:
            if m == n:
                continue
            valid = [i for i in range(b) if pres[m][i] and pres[n][i]]
            vm, vn = len(Z[m][0]), len(Z[n][0])
            losses = []
            for i in valid:
                for v in range(max(vm, vn) if vm == 1 else vm):  # a pooled anchor stands for both windows
                    zi = Z[m][i][v if vm == 2 else 0]
                    pv = 0 if vn == 1 else (1 - v if quirks else v)
                    cands = [(j, w) for j in valid for w in range(vn)]
                    if vn == 2:  # the same clip's other entry is neither positive nor negative
                        cands = [c for c in cands if c != (i, 1 - pv)]

                    def s(j, w):
                        return dot(zi, Z[n][j][w]) / tau

                    lse = math.log(sum(math.exp(s(j, w)) for j, w in cands))
                    losses.append(-(s(i, pv) - lse))
            if losses:
                pair_losses.append(mean(losses))
    total = mean(pair_losses) if pair_losses else 0.0
    return total / 2 if quirks else total


def ref_supcon(z: dict, y: list, tau=0.07, mask=None, quirks=False) -> float:
    Z = _views(z)
    b = len(y)
    pres = {m: present_list(mask, m, b) for m in Z}
    pair_losses = []
    for m in Z:
        for n in Z:
            if m == n:
                continue
            valid = [i for i in range(b) if pres[m][i] and pres[n][i]]
            vm, vn = len(Z[m][0]), len(Z[n][0])
            losses = []
            for i in valid:
                for v in range(vn if vm == 1 else vm):  # a pooled anchor stands for both windows
                    zi = Z[m][i][v if vm == 2 else 0]
                    cands = [(j, w) for j in valid for w in range(vn)]
                    if quirks and vn == 2:
                        cands = [c for c in cands if c != (i, v)]
                    positives = [(j, w) for j, w in cands if y[j] == y[i]]
                    if not positives and not quirks:
                        continue

                    def s(j, w):
                        return dot(zi, Z[n][j][w]) / tau

                    lse = math.log(sum(math.exp(s(j, w)) for j, w in cands))
                    terms = [s(j, w) - lse for j, w in positives]
                    losses.append(-sum(terms) / (len(terms) + 1) if quirks else -mean(terms))
            if losses:
                pair_losses.append(mean(losses))
    return mean(pair_losses) if pair_losses else 0.0


# --------------------------------------------------------------------------- Diff


@pytest.mark.parametrize("b", [7, 2, 1])
def test_diff_loss_matches_reference(b):
    x1, x2 = rand(b, 5, seed=1), rand(b, 4, seed=2)
    loss = diff_loss(x1, x2)
    assert loss.item() == pytest.approx(ref_D(x1, x2), abs=TOL)
    assert_finite_grads(loss, [x1, x2])


@pytest.mark.parametrize("names", [("a", "t", "p"), ("a", "t")])
@pytest.mark.parametrize("masked", [False, True])
def test_diff_total_matches_reference(names, masked):
    b = 6
    private = {m: rand(b, 4, seed=10 + k) for k, m in enumerate(names)}
    shared = {m: rand(b, 4, seed=20 + k) for k, m in enumerate(names)}
    mask = None
    if masked:
        mask = {names[0]: torch.tensor([1, 1, 0, 1, 0, 1], dtype=torch.bool)}
        mask[names[1]] = torch.tensor([0, 1, 1, 1, 1, 0], dtype=torch.bool)
    loss = diff_total(private, shared, mask)
    assert loss.item() == pytest.approx(ref_diff_total(private, shared, mask), abs=TOL)
    # 3 modalities: the paper's 6 terms; 2 modalities: 2 + 1 terms
    n_terms = len(names) + len(names) * (len(names) - 1) // 2
    assert n_terms == {3: 6, 2: 3}[len(names)]
    assert_finite_grads(loss, list(private.values()) + list(shared.values()))


def test_diff_gradient_treats_row_norms_as_constants():
    """The row norm is detached: the gradient is that of D with the norms frozen at their values."""
    x1, x2 = rand(4, 3, seed=11), rand(4, 2, seed=12)
    diff_loss(x1, x2).backward()

    def centred(X):
        mu = [sum(r[k] for r in X) / len(X) for k in range(len(X[0]))]
        return [[r[k] - mu[k] for k in range(len(r))] for r in X]

    X1, X2 = x1.tolist(), x2.tolist()
    n1 = [math.sqrt(dot(r, r)) + 1e-6 for r in centred(X1)]  # frozen
    n2 = [math.sqrt(dot(r, r)) + 1e-6 for r in centred(X2)]

    def frozen_D(A):
        c1, c2 = centred(A), centred(X2)
        tot = 0.0
        for k in range(3):
            for l in range(2):
                tot += sum(c1[i][k] / n1[i] * c2[i][l] / n2[i] for i in range(4)) ** 2
        return tot / 6

    h = 1e-6
    for i in range(4):
        for k in range(3):
            up = [r[:] for r in X1]
            dn = [r[:] for r in X1]
            up[i][k] += h
            dn[i][k] -= h
            assert x1.grad[i, k].item() == pytest.approx((frozen_D(up) - frozen_D(dn)) / (2 * h), abs=1e-7)


def test_diff_hand_computed():
    # centred already; rows have norm 1: X̃1ᵀX̃2 = [[0, 2], [0, 0]] / (1 + 1e-6)²  → D = 4/4 / (1+1e-6)^4
    x1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    x2 = torch.tensor([[0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    assert diff_loss(x1, x2).item() == pytest.approx(1.0 / (1 + 1e-6) ** 4, rel=1e-12)
    # a column that is constant over the batch centres to 0: orthogonal → 0
    x3 = torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    assert diff_loss(x1, x3).item() == 0.0
    # D is symmetric, so the order inside the private pairs does not matter
    a, c = rand(5, 3, seed=3), rand(5, 3, seed=4)
    assert diff_loss(a, c).item() == pytest.approx(diff_loss(c, a).item(), abs=1e-12)


# --------------------------------------------------------------------------- CMD


@pytest.mark.parametrize("b", [8, 2, 1])
def test_cmd_matches_reference(b):
    x1, x2 = rand(b, 5, seed=5), rand(b, 5, seed=6)
    loss = cmd(x1, x2, moments=3)
    assert loss.item() == pytest.approx(ref_cmd(x1, x2), abs=TOL)
    assert_finite_grads(loss, [x1, x2])  # b = 1: central moments are 0, norm at 0 must not NaN


def test_cmd_different_row_counts_and_moments():
    x1, x2 = rand(7, 3, seed=7), rand(4, 3, seed=8)
    for k in (1, 2, 3, 5):
        assert cmd(x1, x2, k).item() == pytest.approx(ref_cmd(x1, x2, k), abs=TOL)


@pytest.mark.parametrize("names", [("a", "t", "p"), ("a", "t")])
@pytest.mark.parametrize("masked", [False, True])
def test_cmd_loss_matches_reference(names, masked):
    shared = {m: rand(6, 4, seed=30 + k) for k, m in enumerate(names)}
    mask = {names[0]: torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool)} if masked else None
    loss = cmd_loss(shared, mask=mask)
    assert loss.item() == pytest.approx(ref_cmd_loss(shared, mask=mask), abs=TOL)
    assert_finite_grads(loss, list(shared.values()))


def test_cmd_hand_computed():
    # x1: mean (1,1), central ±(1,1): E c² = (1,1), E c³ = 0.  x2: mean (1,0), central 0.
    # CMD = |(0,1)| + |(1,1)| + |0| = 1 + √2
    x1 = torch.tensor([[0.0, 0.0], [2.0, 2.0]], dtype=torch.float64)
    x2 = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert cmd(x1, x2).item() == pytest.approx(1 + math.sqrt(2), abs=1e-12)
    assert cmd_loss({"a": x1, "t": x2}).item() == pytest.approx(1 + math.sqrt(2), abs=1e-12)
    # a modality absent from the whole batch: its pairs are left out of the mean
    empty = {"a": torch.zeros(2, dtype=torch.bool)}
    x3 = x2 + 1
    got = cmd_loss({"a": x1, "t": x2, "p": x3}, mask=empty)
    assert got.item() == pytest.approx(cmd(x2, x3).item(), abs=1e-12)


# --------------------------------------------------------------------------- IAMC


@pytest.mark.parametrize("case", list(LABELS))
@pytest.mark.parametrize("as_dict", [False, True])
def test_iamc_matches_reference(case, as_dict):
    y = LABELS[case]
    reps = {f"r{k}": rand(len(y), 5, seed=40 + k) for k in range(6)}
    arg = reps if as_dict else list(reps.values())
    loss = iamc_loss(arg, torch.tensor(y))
    assert loss.item() == pytest.approx(ref_iamc(reps, y), abs=TOL)
    assert_finite_grads(loss, reps.values())
    if case in ("no_pair", "batch_of_1"):
        assert loss.item() == 0.0


def test_iamc_masks_match_reference_and_subset():
    y = [0, 0, 1, 1, 2, 2, 2, 0, 1]
    reps = {k: rand(len(y), 4, seed=50 + i) for i, k in enumerate(["pt", "st", "pa", "sa"])}
    ma = torch.tensor([1, 1, 1, 0, 1, 0, 1, 1, 1], dtype=torch.bool)
    mask = {"pa": ma, "sa": ma}
    loss = iamc_loss(reps, torch.tensor(y), mask=mask)
    assert loss.item() == pytest.approx(ref_iamc(reps, y, mask), abs=TOL)
    assert_finite_grads(loss, reps.values())
    # one mask for every representation == the loss on the present rows only
    reps2 = [rand(len(y), 4, seed=60 + i) for i in range(3)]
    full = iamc_loss(reps2, torch.tensor(y), mask=ma)
    sub = iamc_loss([r[ma] for r in reps2], torch.tensor(y)[ma])
    assert full.item() == pytest.approx(sub.item(), abs=1e-12)


def test_iamc_hand_computed():
    # r0 = r1 = (1,0) class 0, r2 = (1,1) class 1 (singleton: not an anchor).
    # anchors 0 and 1: pos = 1, neg = cos 45° = 1/√2  → L = 1 + 1/√2
    r = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1])
    assert iamc_loss([r], y).item() == pytest.approx(1 + 1 / math.sqrt(2), abs=1e-12)
    # one class only: no negatives, neg := 0 → L = 2 − pos
    r1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert iamc_loss([r1], torch.tensor([3, 3])).item() == pytest.approx(2.0, abs=1e-12)


# --------------------------------------------------------------------------- IEMC


@pytest.mark.parametrize("case", list(LABELS))
@pytest.mark.parametrize("names", [("a", "t", "p"), ("a", "t")])
def test_iemc_matches_paper_formula(case, names):
    y = LABELS[case]
    shared = {m: rand(len(y), 5, seed=70 + k) for k, m in enumerate(names)}
    loss = iemc_loss(shared, torch.tensor(y))
    assert loss.item() == pytest.approx(ref_iemc_paper(shared, y), abs=TOL)
    assert_finite_grads(loss, shared.values())
    if case in ("no_pair", "batch_of_1"):
        assert loss.item() == 0.0


@pytest.mark.parametrize("names", [("a", "t", "p"), ("a", "t")])
def test_iemc_masks_match_reference(names):
    y = [0, 0, 1, 1, 2, 2, 2, 0, 1, 3]
    shared = {m: rand(len(y), 4, seed=80 + k) for k, m in enumerate(names)}
    mask = {
        names[0]: torch.tensor([1, 1, 0, 1, 1, 0, 1, 1, 1, 1], dtype=torch.bool),
        names[1]: torch.tensor([0, 1, 1, 1, 1, 1, 0, 1, 1, 1], dtype=torch.bool),
    }
    loss = iemc_loss(shared, torch.tensor(y), mask=mask)
    assert loss.item() == pytest.approx(ref_iemc_masked(shared, y, mask), abs=TOL)
    assert_finite_grads(loss, shared.values())
    # without masks the generalised counts reduce to the paper's P and N
    assert ref_iemc_masked(shared, y, None) == pytest.approx(ref_iemc_paper(shared, y), abs=1e-12)
    # one mask shared by every modality == the loss on the present rows only
    keep = mask[names[0]]
    full = iemc_loss(shared, torch.tensor(y), mask={m: keep for m in names})
    sub = iemc_loss({m: t[keep] for m, t in shared.items()}, torch.tensor(y)[keep])
    assert full.item() == pytest.approx(sub.item(), abs=1e-12)


def test_iemc_hand_computed():
    # B = 2, one class: P = 2 (anchor included), N = 0.
    # a = [(1,0), (0,1)], t = [(1,0), (1,0)].
    # anchor modality a: i=0: pos = cos(a0,t1)/2 = 1/2 → 1.5; i=1: pos = cos(a1,t0)/2 = 0 → 2.  mean 1.75
    # anchor modality t: i=0: pos = cos(t0,a1)/2 = 0 → 2; i=1: pos = cos(t1,a0)/2 = 1/2 → 1.5. mean 1.75
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert iemc_loss({"a": a, "t": t}, torch.tensor([0, 0])).item() == pytest.approx(1.75, abs=1e-12)


# --------------------------------------------------------------------------- single anchor


def test_anchor_cycler_cycles_and_skips():
    # classes 0 (x2), 1 (x1, skipped), 2 (x2), 3 (x1, skipped)
    y = torch.tensor([0, 2, 1, 0, 3, 2])
    c = AnchorCycler(4, torch.Generator().manual_seed(0))
    classes, anchors = [], []
    for _ in range(5):
        i = c.pick(y)
        classes.append(c.last_class)
        anchors.append(i)
        assert y[i].item() == c.last_class
    assert classes == [0, 2, 0, 2, 0]
    # class 1 and 3 appear once: never chosen; choices are random within the class
    c2 = AnchorCycler(4, torch.Generator().manual_seed(0))
    assert [c2.pick(y) for _ in range(5)] == anchors  # deterministic with a seeded generator
    with pytest.raises(ValueError, match="labels must lie"):
        c.pick(torch.tensor([0, 4]))


def test_single_anchor_terminates_without_pairs():
    y = torch.tensor([0, 1, 2])
    reps = [rand(3, 4, seed=90), rand(3, 4, seed=91)]
    c = AnchorCycler(3, torch.Generator().manual_seed(0), next_class=1)
    loss = iamc_loss(reps, y, anchors="single", anchor_state=c)
    assert loss.item() == 0.0 and loss.requires_grad
    assert_finite_grads(loss, reps)
    assert c.next_class == 1 and c.last_class is None  # no class chosen: position kept
    shared = {"a": rand(3, 4, seed=92), "t": rand(3, 4, seed=93)}
    loss = iemc_loss(shared, y, anchors="single", anchor_state=c)
    assert loss.item() == 0.0
    assert_finite_grads(loss, shared.values())
    with pytest.raises(ValueError, match="anchor_state"):
        iamc_loss(reps, y, anchors="single")


@pytest.mark.parametrize("names", [("a", "t", "p"), ("a", "t")])
def test_single_anchor_losses_match_reference(names):
    y = [0, 1, 0, 2, 1, 3, 2]  # class 3 is a singleton, skipped
    yt = torch.tensor(y)
    reps = {k: rand(len(y), 5, seed=100 + i) for i, k in enumerate(["pt", "st", "pa", "sa"])}
    shared = {m: rand(len(y), 5, seed=110 + k) for k, m in enumerate(names)}
    c_a = AnchorCycler(4, torch.Generator().manual_seed(1))
    c_e = AnchorCycler(4, torch.Generator().manual_seed(2))
    seen_a, seen_e = [], []
    S = {m: t.tolist() for m, t in shared.items()}
    allp = {m: [True] * len(y) for m in names}
    for _ in range(4):
        loss = iamc_loss(reps, yt, anchors="single", anchor_state=c_a)
        i = c_a.last_anchor
        want = mean([ref_iamc_anchor(r.tolist(), y, i, [True] * len(y)) for r in reps.values()])
        assert loss.item() == pytest.approx(want, abs=TOL)
        assert_finite_grads(loss, reps.values())
        seen_a.append(c_a.last_class)

        loss = iemc_loss(shared, yt, anchors="single", anchor_state=c_e)
        i = c_e.last_anchor
        want = mean([ref_iemc_anchor_masked(S, y, m, i, allp)[0] for m in names])
        assert loss.item() == pytest.approx(want, abs=TOL)
        assert_finite_grads(loss, shared.values())
        seen_e.append(c_e.last_class)
        for t in list(reps.values()) + list(shared.values()):
            t.grad = None
    assert seen_a == seen_e == [0, 1, 2, 0]


def test_single_anchor_respects_masks():
    # the only sample pair of class 0 loses one member to the mask → class 1 is chosen
    y = torch.tensor([0, 0, 1, 1])
    keep = torch.tensor([True, False, True, True])
    c = AnchorCycler(2, torch.Generator().manual_seed(0))
    iamc_loss([rand(4, 3, seed=1)], y, anchors="single", anchor_state=c, mask=keep)
    assert c.last_class == 1


# --------------------------------------------------------------------------- InfoNCE


VIEW_LAYOUTS = {"V1": (1, 1, 1), "V2": (2, 2, 2), "mixed": (2, 1, 2)}


@pytest.mark.parametrize("layout", list(VIEW_LAYOUTS))
@pytest.mark.parametrize("quirks", [False, True])
@pytest.mark.parametrize("b", [5, 1])
def test_infonce_matches_reference(layout, quirks, b):
    z = {m: rand(b, v, 6, seed=120 + k) for k, (m, v) in enumerate(zip("atl", VIEW_LAYOUTS[layout]))}
    loss = pairwise_infonce(z, temperature=0.07, quirks=quirks)
    assert loss.item() == pytest.approx(ref_infonce(z, 0.07, quirks), abs=TOL)
    assert_finite_grads(loss, z.values())


def test_infonce_two_modalities_and_2d_input():
    z = {"a": rand(4, 2, 3, seed=130), "t": rand(4, 3, seed=131)}  # (B, D) counts as V = 1
    loss = pairwise_infonce(z, temperature=0.5)
    assert loss.item() == pytest.approx(ref_infonce(z, 0.5), abs=TOL)


@pytest.mark.parametrize("layout", ["V1", "V2", "mixed"])
@pytest.mark.parametrize("quirks", [False, True])
def test_infonce_masks(layout, quirks):
    b = 6
    z = {m: rand(b, v, 5, seed=140 + k) for k, (m, v) in enumerate(zip("atl", VIEW_LAYOUTS[layout]))}
    mask = {
        "a": torch.tensor([1, 1, 0, 1, 1, 1], dtype=torch.bool),
        "l": torch.tensor([1, 0, 1, 1, 0, 1], dtype=torch.bool),
    }
    loss = pairwise_infonce(z, quirks=quirks, mask=mask)
    assert loss.item() == pytest.approx(ref_infonce(z, 0.07, quirks, mask), abs=TOL)
    assert_finite_grads(loss, z.values())
    # two modalities, one mask: identical to the loss on the present samples only
    keep = mask["a"]
    two = {"a": z["a"], "t": z["t"]}
    full = pairwise_infonce(two, quirks=quirks, mask={"a": keep})
    sub = pairwise_infonce({m: t[keep] for m, t in two.items()}, quirks=quirks)
    assert full.item() == pytest.approx(sub.item(), abs=1e-10)


def test_infonce_nothing_present_is_graph_zero():
    z = {"a": rand(3, 2, 4, seed=150), "t": rand(3, 2, 4, seed=151)}
    loss = pairwise_infonce(z, mask={"a": torch.zeros(3, dtype=torch.bool)})
    assert loss.item() == 0.0
    assert_finite_grads(loss, z.values())


def test_infonce_hand_computed():
    e1, e2 = [1.0, 0.0], [0.0, 1.0]
    # V = 1, orthogonal samples: ℓ = −[1/τ − log(e^{1/τ} + e^0)] = log(1 + e^{−1/τ}) for every anchor
    one_view = torch.tensor([[e1], [e2]], dtype=torch.float64)
    z = {"a": one_view, "t": one_view.clone()}
    assert pairwise_infonce(z, temperature=1.0).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-12)
    # V = 2, two clips with views [e1, e2] and [e2, e1]: the positive (same window) has s = 1, the
    # clip's other window is left out, the other clip gives s = 0 and s = 1:
    # ℓ = −[1 − log(e + e^0 + e)] = log(1 + 2e) − 1 for every anchor
    views = torch.tensor([[e1, e2], [e2, e1]], dtype=torch.float64)
    z2 = {"a": views, "t": views.clone()}
    assert pairwise_infonce(z2, temperature=1.0).item() == pytest.approx(math.log(1 + 2 * math.e) - 1, abs=1e-12)
    # quirks: the positive is the OTHER window (s = 0), the same window is masked:
    # ℓ = −[0 − log(e^0 + e^0 + e)] = log(2 + e), and × 1/2
    assert pairwise_infonce(z2, temperature=1.0, quirks=True).item() == pytest.approx(math.log(2 + math.e) / 2, abs=1e-12)


def test_infonce_quirks_are_exactly_mask_and_half():
    z = {m: rand(4, 2, 5, seed=160 + k) for k, m in enumerate("at")}
    plain = pairwise_infonce(z, temperature=0.2)
    quirky = pairwise_infonce(z, temperature=0.2, quirks=True)
    assert plain.item() == pytest.approx(ref_infonce(z, 0.2, False), abs=TOL)
    assert quirky.item() == pytest.approx(ref_infonce(z, 0.2, True), abs=TOL)
    # quirks = the default with the partner's windows swapped (positive and masked entry trade
    # places), × 1/2: exactly, for two modalities
    swapped = {"a": z["a"], "t": z["t"][:, [1, 0]]}
    assert quirky.item() * 2 == pytest.approx(pairwise_infonce(swapped, temperature=0.2).item(), abs=1e-12)
    # V = 1 in the partner: the same-view entry IS the positive, so only the ×1/2 remains
    z1 = {m: rand(4, 1, 5, seed=170 + k) for k, m in enumerate("at")}
    assert pairwise_infonce(z1, quirks=True).item() == pytest.approx(pairwise_infonce(z1).item() / 2, abs=1e-12)


# --------------------------------------------------------------------------- SupCon


@pytest.mark.parametrize("quirks", [False, True])
@pytest.mark.parametrize("case", list(LABELS))
@pytest.mark.parametrize("layout", list(VIEW_LAYOUTS))
def test_supcon_matches_reference(case, layout, quirks):
    y = LABELS[case]
    z = {m: rand(len(y), v, 6, seed=180 + k) for k, (m, v) in enumerate(zip("atl", VIEW_LAYOUTS[layout]))}
    loss = pairwise_supcon(z, torch.tensor(y), quirks=quirks)
    assert loss.item() == pytest.approx(ref_supcon(z, y, quirks=quirks), abs=TOL)
    assert_finite_grads(loss, z.values())


@pytest.mark.parametrize("layout", list(VIEW_LAYOUTS))
def test_supcon_masks_and_multihot(layout):
    y = [0, 1, 0, 2, 1, 1, 3]
    z = {m: rand(len(y), v, 4, seed=190 + k) for k, (m, v) in enumerate(zip("atl", VIEW_LAYOUTS[layout]))}
    mask = {
        "t": torch.tensor([1, 1, 0, 1, 1, 0, 1], dtype=torch.bool),
        "l": torch.tensor([0, 1, 1, 1, 1, 1, 1], dtype=torch.bool),
    }
    loss = pairwise_supcon(z, torch.tensor(y), mask=mask)
    assert loss.item() == pytest.approx(ref_supcon(z, y, mask=mask), abs=TOL)
    assert_finite_grads(loss, z.values())
    # multi-hot rows: "same class" = identical rows, so one-hot rows give the integer-label value
    onehot = torch.nn.functional.one_hot(torch.tensor(y), 4)
    assert pairwise_supcon(z, onehot, mask=mask).item() == pytest.approx(loss.item(), abs=1e-12)


def test_supcon_hand_computed():
    # B = 2 of one class, V = 1, a = t = [e1, e2], τ = 1: both candidates are positives,
    # ℓ = −½[(1 − log(e + 1)) + (0 − log(e + 1))] = log(1 + e) − ½ for every anchor
    e = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]], dtype=torch.float64)
    got = pairwise_supcon({"a": e, "t": e.clone()}, torch.tensor([5, 5]), temperature=1.0)
    assert got.item() == pytest.approx(math.log(1 + math.e) - 0.5, abs=1e-12)
    # distinct classes: the only positive is the same sample → exactly the V = 1 InfoNCE value
    z = {"a": rand(5, 1, 3, seed=200), "t": rand(5, 1, 3, seed=201)}
    assert pairwise_supcon(z, torch.arange(5)).item() == pytest.approx(pairwise_infonce(z).item(), abs=1e-10)
