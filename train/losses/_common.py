"""Small helpers shared by the loss modules (input checking, presence masks, the graph-connected zero).

Why a graph-connected zero: a loss that has nothing to compare in a batch (no anchor, no
modality pair with a present sample) must still be a tensor that ``backward()`` accepts and
that gives every input a (zero) gradient, so that the trainer never special-cases it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor


def graph_zero(tensors: Iterable[Tensor]) -> Tensor:
    """A scalar 0 connected to the autograd graph of every tensor in ``tensors``."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("graph_zero needs at least one tensor")
    return sum(t.sum() for t in tensors) * 0.0


def weighted_mean(values: Sequence[Tensor], present: Sequence[Tensor]) -> Tensor:
    """Mean of the scalars ``values`` over those whose flag in ``present`` is True; 0 if none.

    Sync-free (no ``.item()``): terms that are absent are multiplied by 0, so a batch in
    which nothing qualifies gives a graph-connected zero without a Python branch.
    """
    v = torch.stack(list(values))
    w = torch.stack([p.to(v.dtype) for p in present])
    return (v * w).sum() / w.sum().clamp(min=1.0)


def as_named(reps: Mapping[str, Tensor] | Sequence[Tensor], what: str) -> dict[str, Tensor]:
    """Normalise a list or dict of representations to an ordered ``{name: tensor}`` dict."""
    if isinstance(reps, Mapping):
        named = dict(reps)
    elif isinstance(reps, Sequence) and not isinstance(reps, (str, bytes)):
        named = {str(k): r for k, r in enumerate(reps)}
    else:
        raise TypeError(f"{what}: expected a list or dict of tensors, got {type(reps).__name__}")
    if not named:
        raise ValueError(f"{what}: no representations given")
    return named


def batch_size(named: Mapping[str, Tensor], what: str, ndim: Sequence[int] = (2,)) -> int:
    """The common batch size of ``named``; clear error if shapes disagree."""
    sizes = {}
    for name, t in named.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: {name!r} is {type(t).__name__}, expected a Tensor")
        if t.dim() not in ndim:
            raise ValueError(f"{what}: {name!r} has shape {tuple(t.shape)}, expected {ndim[0]}-D")
        sizes[name] = t.shape[0]
    if len(set(sizes.values())) != 1:
        raise ValueError(f"{what}: batch sizes differ across representations: {sizes}")
    return next(iter(sizes.values()))


def check_labels(labels: Tensor, b: int, what: str, allow_multihot: bool = False) -> Tensor:
    if not isinstance(labels, Tensor):
        labels = torch.as_tensor(labels)
    ok_dims = (1, 2) if allow_multihot else (1,)
    if labels.dim() not in ok_dims or labels.shape[0] != b:
        raise ValueError(f"{what}: labels have shape {tuple(labels.shape)}, expected ({b},)")
    return labels


def presence(
    mask: Mapping[str, Tensor] | Sequence[Tensor] | Tensor | None,
    names: Sequence[str],
    b: int,
    device: torch.device,
    what: str,
) -> dict[str, Tensor]:
    """Per-name boolean presence vectors of shape (B,).

    ``mask`` may be None (all present), one (B,) tensor shared by every name, a list aligned
    with ``names``, or a dict keyed by (a superset of) ``names``; names missing from a dict
    count as fully present.
    """
    if mask is None:
        full = torch.ones(b, dtype=torch.bool, device=device)
        return {n: full for n in names}
    if isinstance(mask, Tensor):
        per = {n: mask for n in names}
    elif isinstance(mask, Mapping):
        per = {n: mask[n] if n in mask else torch.ones(b, dtype=torch.bool, device=device) for n in names}
    else:
        mask = list(mask)
        if len(mask) != len(names):
            raise ValueError(f"{what}: {len(mask)} masks for {len(names)} representations")
        per = dict(zip(names, mask))
    out = {}
    for n, m in per.items():
        m = torch.as_tensor(m, device=device)
        if m.shape != (b,):
            raise ValueError(f"{what}: mask for {n!r} has shape {tuple(m.shape)}, expected ({b},)")
        out[n] = m.to(torch.bool)
    return out


def views(z: Mapping[str, Tensor], what: str) -> dict[str, Tensor]:
    """``{m: (B, V, D)}`` with V in {1, 2}; a (B, D) input counts as V = 1."""
    out = {}
    for m, t in z.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: {m!r} is {type(t).__name__}, expected a Tensor")
        if t.dim() == 2:
            t = t.unsqueeze(1)
        if t.dim() != 3 or t.shape[1] not in (1, 2):
            raise ValueError(f"{what}: {m!r} has shape {tuple(t.shape)}, expected (B, V, D) with V in {{1, 2}}")
        out[m] = t
    return out


def reduce_over_anchors(per: Mapping[str, tuple[Tensor, Tensor]], labels: Tensor, pres: Mapping[str, Tensor],
                        anchors: str, anchor_state, inputs: Sequence[Tensor], what: str) -> Tensor:
    """IAMC's and IEMC's last step: from the per-anchor losses of each representation
    (``per[r] = (L_r(i) for every i, which i are anchors)``) to one number.

    ``"all"``: the mean over each representation's anchors, then over the representations that
    have one. ``"single"``: the original rule, one anchor per batch picked by ``anchor_state``
    (an :class:`~mer.train.losses.anchors.AnchorCycler`) among the samples present everywhere,
    its loss averaged over the representations. No anchor at all: a zero still connected to
    the graph of ``inputs`` (the original looped forever there).
    """
    if anchors == "all":
        terms, has = [], []
        for loss, is_anchor in per.values():
            w = is_anchor.to(loss.dtype)
            terms.append((loss * w).sum() / w.sum().clamp(min=1.0))
            has.append(is_anchor.any())
        return weighted_mean(terms, has)
    if anchor_state is None:
        raise ValueError(f"{what}: anchors='single' needs anchor_state=AnchorCycler(...)")
    everywhere = torch.stack(list(pres.values())).all(dim=0)
    i = anchor_state.pick(labels, everywhere)
    if i is None:
        return graph_zero(inputs)
    return torch.stack([loss[i] for loss, _ in per.values()]).mean()
