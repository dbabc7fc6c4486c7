"""The fusion heads (LMR-CL, unimodal, concat, late) and the weighted loss, without caches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mer.train.criterion import Criterion, binary_balanced_weights, inverse_class_weights
from mer.train.losses.iamc import iamc_loss
from mer.train.models import lmr as lmr_module
from mer.train.models.common import Batch, ModalityInput
from mer.train.models.concat import Concat
from mer.train.models.late import Late
from mer.train.models.lmr import LMR, default_branch
from mer.train.models.unimodal import Unimodal

H, C, B = 8, 3, 12
TINY = dict(hidden=H, tokens=2, layers=1, heads=2, ffn=16, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def specs(m: int) -> list[dict]:
    names = [("text", 7, "hf-text"), ("audio", 5, "hf-audio"), ("bio", 4, "e4")][:m]
    return [{"name": n, "dim": d, "layers": 0, "family": f} for n, d, f in names]


def inputs(m: int, present_all: bool = True, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = {s["name"]: torch.randn(B, s["dim"], generator=g) for s in specs(m)}
    present = {s["name"]: torch.ones(B, dtype=torch.bool) for s in specs(m)}
    if not present_all:
        last = specs(m)[-1]["name"]
        present[last][[1, 4, 7]] = False
        x[last][[1, 4, 7]] = 0.0
    return x, present


def labels() -> torch.Tensor:
    return torch.arange(B) % C


@pytest.mark.parametrize("m", [2, 3])
def test_lmr_forward_shapes(m):
    torch.manual_seed(0)
    model = LMR(specs(m), C, **TINY)
    x, present = inputs(m)
    out = model(x, present)
    assert out["logits"].shape == (B, C)
    assert out["fused"].shape == (B, 2 * m * H)
    for s in specs(m):
        assert out["private"][s["name"]].shape == (B, H)
        assert out["shared"][s["name"]].shape == (B, H)
        assert out["gates"][s["name"]].shape == (B, 2, H)
    # branch output sizes follow the family rule: text identity (7), audio 512→1024, bio 150→200→304
    assert out["aux"]["text"].shape == (B, C)
    assert model.aux["text"].in_features == 7
    assert model.aux["audio"].in_features == 1024
    if m == 3:
        assert model.aux["bio"].in_features == 304
    # ONE shared encoder, one private encoder per modality
    assert len(model.private) == m and isinstance(model.shared, lmr_module.AttnBlock)
    # the Attn block as specified: Conv1d(1→T,k=1), Conv1d(T→T,k=1), post-norm layers, Linear(T·H→H)
    block = model.shared
    assert block.expand[0].in_channels == 1 and block.expand[0].out_channels == 2 and block.expand[0].kernel_size == (1,)
    assert block.out.in_features == 2 * H and block.out.out_features == H
    assert block.encoder.layers[0].norm_first is False
    assert model.classifier[0].in_features == 2 * m * H and model.classifier[0].out_features == m * H


def test_default_branch_rule():
    assert default_branch("hf-text") == "identity"
    assert default_branch("e4") == "bio"
    assert default_branch("hf-audio") == default_branch("egemaps") == default_branch("logmel") == "audio"
    assert default_branch("", "text") == "identity" and default_branch("", "bio") == "bio"
    model = LMR(specs(2), C, branches={"audio": "identity"}, **TINY)
    assert model.aux["audio"].in_features == 5


def test_lmr_one_modality_is_a_clear_error():
    with pytest.raises(ValueError, match="lmr needs at least two modalities; use model: unimodal"):
        LMR(specs(1), C, **TINY)


def test_gating_matches_a_plain_loop():
    """g_m (B,2,H) multiplies h_m (B,2,H) elementwise: row 0 gates private, row 1 shared."""
    torch.manual_seed(1)
    model = LMR(specs(3), C, **TINY).eval()
    x, present = inputs(3)
    out = model(x, present)
    names = [s["name"] for s in specs(3)]
    c = torch.cat([torch.stack([out["private"][m], out["shared"][m]], dim=1) for m in names], dim=-1)
    expected = torch.zeros(B, 2 * 3 * H)
    for b in range(B):
        pieces = []
        for row in range(2):  # flatten order: (row, modality, unit)
            for m in names:
                gate = model.fusion.gates[m]
                g = torch.sigmoid(gate[2](torch.relu(gate[0](c[b, row]))))  # W2 ReLU(W1 c)
                h = out["private"][m][b] if row == 0 else out["shared"][m][b]
                pieces.append(g * h)
        expected[b] = torch.cat(pieces)
    torch.testing.assert_close(out["fused"], expected, rtol=1e-5, atol=1e-6)


def _total(parts: dict, lam: dict) -> torch.Tensor:
    return parts["ce"] + sum(lam[k] * v for k, v in parts.items() if k != "ce")


@pytest.mark.parametrize("zero", ["lambda_diff", "lambda_cmd", "lambda_iamc", "lambda_iemc", "lambda_aux", "all"])
def test_each_lambda_zero_skips_its_term(zero, monkeypatch):
    lams = {"lambda_diff": 0.1, "lambda_cmd": 0.2, "lambda_iamc": 0.3, "lambda_iemc": 0.4, "lambda_aux": 0.5}
    if zero == "all":
        lams = {k: 0.0 for k in lams}
    else:
        lams[zero] = 0.0
    torch.manual_seed(0)
    model = LMR(specs(3), C, **TINY, **lams)
    calls = {"diff_total": 0, "cmd_loss": 0, "iamc_loss": 0, "iemc_loss": 0}
    for name in calls:
        real = getattr(lmr_module, name)

        def counting(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(lmr_module, name, counting)
    x, present = inputs(3)
    y = labels()
    out = model(x, present)
    total, parts = model.losses(out, Batch(x, present, y, y), Criterion(False))
    term = {"lambda_diff": "diff", "lambda_cmd": "cmd", "lambda_iamc": "iamc", "lambda_iemc": "iemc", "lambda_aux": "aux"}
    for key, name in term.items():
        assert (name in parts) == (lams[key] != 0)
    for fn, name in (("diff_total", "diff"), ("cmd_loss", "cmd"), ("iamc_loss", "iamc"), ("iemc_loss", "iemc")):
        assert calls[fn] == (1 if name in parts else 0)
    lam = {v: lams[k] for k, v in term.items()}
    torch.testing.assert_close(total, _total(parts, lam))
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_total_loss_is_the_paper_sum():
    torch.manual_seed(0)
    model = LMR(specs(2), C, **TINY)
    x, present = inputs(2)
    y = labels()
    crit = Criterion(False, weights=torch.tensor([1.0, 2.0, 0.5]))
    out = model(x, present)
    total, parts = model.losses(out, Batch(x, present, y, y), crit)
    ce = F.cross_entropy(out["logits"], y, weight=crit.weights)
    aux = sum(F.cross_entropy(out["aux"][m], y, weight=crit.weights) for m in ("text", "audio"))
    torch.testing.assert_close(parts["ce"], ce)
    torch.testing.assert_close(parts["aux"], aux)
    expected = ce + 0.1 * (parts["diff"] + parts["cmd"] + parts["iamc"] + parts["iemc"]) + 1.0 * aux
    torch.testing.assert_close(total, expected)


def test_missing_embedding_is_used_where_absent():
    torch.manual_seed(0)
    model = LMR(specs(3), C, **TINY).eval()
    x, present = inputs(3, present_all=False)
    before = model(x, present)["logits"].detach().clone()
    with torch.no_grad():
        model.inputs["bio"].missing.add_(1.0)
    after = model(x, present)["logits"].detach()
    absent = ~present["bio"]
    assert not torch.allclose(before[absent], after[absent])
    torch.testing.assert_close(before[~absent], after[~absent])


def test_missing_samples_are_left_out_of_every_term_that_needs_the_modality():
    """Perturbing an absent modality's representations changes no term but the fused CE."""
    torch.manual_seed(0)
    model = LMR(specs(3), C, **TINY)
    x, present = inputs(3, present_all=False)
    y = labels()
    out = model(x, present)
    batch = Batch(x, present, y, y)
    _, parts = model.losses(out, batch, Criterion(False))
    absent = ~present["bio"]
    noise = torch.randn(int(absent.sum()), H)
    out2 = {**out, "private": dict(out["private"]), "shared": dict(out["shared"]), "aux": dict(out["aux"])}
    for key in ("private", "shared"):
        t = out[key]["bio"].clone()
        t[absent] = t[absent] + noise
        out2[key]["bio"] = t
    a = out["aux"]["bio"].clone()
    a[absent] = a[absent] + 5.0
    out2["aux"]["bio"] = a
    _, parts2 = model.losses(out2, batch, Criterion(False))
    for name in ("diff", "cmd", "iamc", "iemc", "aux"):
        torch.testing.assert_close(parts2[name], parts[name], msg=name)
    # IAMC equals the loss computed per representation on the present subset only
    keep = present["bio"]
    reps = {f"{k}_{m}": out[n][m] for k, n in (("p", "private"), ("s", "shared")) for m in ("text", "audio", "bio")}
    per = [iamc_loss({r: v[keep] if r.endswith("bio") else v}, y[keep] if r.endswith("bio") else y) for r, v in reps.items()]
    torch.testing.assert_close(parts["iamc"], torch.stack(per).mean())


def test_anchors_single_runs_and_cycles():
    torch.manual_seed(0)
    model = LMR(specs(2), C, anchors="single", **TINY)
    with pytest.raises(RuntimeError, match="prepare_training"):
        x, present = inputs(2)
        model.losses(model(x, present), Batch(x, present, labels(), labels()), Criterion(False))
    model.prepare_training(C, torch.Generator().manual_seed(0))
    x, present = inputs(2)
    for step in range(3):
        total, parts = model.losses(model(x, present), Batch(x, present, labels(), labels()), Criterion(False))
        assert torch.isfinite(total)
        assert model._cyclers["iamc"].last_class == step % C


def test_baselines_shapes_and_late_mean_over_present():
    torch.manual_seed(0)
    x, present = inputs(3, present_all=False)
    uni = Unimodal(specs(1), C, hidden=6)
    assert uni(x, present)["logits"].shape == (B, C)
    assert Unimodal.use_modalities(["text", "audio"]) == ["text"]
    cat = Concat(specs(3), C, hidden=6)
    assert cat.mlp[0].in_features == 7 + 5 + 4
    assert cat(x, present)["logits"].shape == (B, C)
    late = Late(specs(3), C, hidden=6, dropout=0.0).eval()
    out = late(x, present)
    per = out["per_modality"]
    for b in range(B):
        used = [m for m in ("text", "audio", "bio") if present[m][b]]
        torch.testing.assert_close(out["logits"][b], torch.stack([per[m][b] for m in used]).mean(0))
    y = labels()
    total, parts = late.losses(out, Batch(x, present, y, y), Criterion(False))
    keep = present["bio"]
    torch.testing.assert_close(parts["ce_bio"], F.cross_entropy(per["bio"][keep], y[keep]))
    torch.testing.assert_close(total, parts["ce_text"] + parts["ce_audio"] + parts["ce_bio"])


def test_weighted_layer_mix_and_layer_choice():
    x = torch.randn(4, 3, 5)
    present = torch.tensor([True, True, False, True])
    mix = ModalityInput(5, layers=3, layer="weighted")
    with torch.no_grad():
        mix.layer_logits.copy_(torch.tensor([0.0, 1.0, 2.0]))
        mix.missing.zero_()
    w = torch.softmax(torch.tensor([0.0, 1.0, 2.0]), 0)
    torch.testing.assert_close(mix(x, present), (x * w[None, :, None]).sum(1))
    torch.testing.assert_close(ModalityInput(5, 3, "last")(x, torch.ones(4, dtype=torch.bool)), x[:, -1])
    torch.testing.assert_close(ModalityInput(5, 3, "1")(x, torch.ones(4, dtype=torch.bool)), x[:, 1])
    with pytest.raises(ValueError, match="out of range"):
        ModalityInput(5, 3, "3")


def test_class_weights_formula_by_hand():
    y = [0, 0, 0, 1]  # N = 4, C = 3: w_c = N / (C · n_c)
    with pytest.warns(UserWarning, match=r"\['sad'\] have no training sample"):
        w = inverse_class_weights(y, 3, ["ang", "hap", "sad"])
    assert w.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])
    yb = [[1, 0], [0, 0], [1, 0], [1, 1]]  # target 0: P=3 of N=4; target 1: P=1
    w_pos, w_neg = binary_balanced_weights(yb)
    assert w_pos.tolist() == pytest.approx([4 / 6, 4 / 2])
    assert w_neg.tolist() == pytest.approx([4 / 2, 4 / 6])


def test_masked_weighted_ce_equals_torch_on_the_subset():
    torch.manual_seed(0)
    logits, y = torch.randn(10, 3), torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 1, 2])
    w = torch.tensor([0.5, 2.0, 1.0])
    mask = torch.tensor([1, 0, 1, 1, 1, 0, 1, 0, 1, 1], dtype=torch.bool)
    crit = Criterion(False, weights=w)
    torch.testing.assert_close(crit(logits, y), F.cross_entropy(logits, y, weight=w))
    torch.testing.assert_close(crit(logits, y, mask), F.cross_entropy(logits[mask], y[mask], weight=w))
    assert crit(logits, y, torch.zeros(10, dtype=torch.bool)).item() == 0.0


@pytest.mark.parametrize("c_in,c_out", [(1, 4), (4, 4), (3, 7)])
def test_pointwise_conv_equals_the_k1_convolution(c_in, c_out):
    from mer.train.models.lmr import PointwiseConv1d

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(c_in, c_out, kernel_size=1)
    torch.manual_seed(0)
    fast = PointwiseConv1d(c_in, c_out)
    assert all(torch.equal(a, b) for a, b in zip(conv.parameters(), fast.parameters()))  # same init
    x = torch.randn(5, c_in, 16, requires_grad=True)
    assert torch.allclose(fast(x), conv(x), atol=1e-6)
    g_fast = torch.autograd.grad(fast(x).square().sum(), [x, fast.weight])
    g_conv = torch.autograd.grad(conv(x).square().sum(), [x, conv.weight])
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_fast, g_conv))


def test_lmr_attn_final_norm_is_the_originals_layer_norm_after_the_encoder():
    from mer.train.models.lmr import AttnBlock

    torch.manual_seed(0)
    plain, normed = AttnBlock(16, tokens=4, layers=1, heads=2, ffn=32), AttnBlock(16, tokens=4, layers=1, heads=2,
                                                                                  ffn=32, final_norm=True)
    assert plain.encoder.norm is None and isinstance(normed.encoder.norm, torch.nn.LayerNorm)
    # after post-norm layers the extra norm matters through its learned affine part
    weight, bias = torch.full((16,), 2.0), torch.full((16,), 0.5)
    normed.load_state_dict({**plain.state_dict(), "encoder.norm.weight": weight, "encoder.norm.bias": bias})
    plain.eval(), normed.eval()
    x = torch.randn(5, 16)
    tokens = plain.encoder(plain.expand(x.unsqueeze(1)))
    expected = torch.sigmoid(plain.out(torch.nn.functional.layer_norm(tokens, (16,), weight, bias).flatten(1)))
    torch.testing.assert_close(normed(x), expected)
    assert not torch.allclose(plain(x), normed(x))
