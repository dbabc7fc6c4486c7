"""Central moment discrepancy (Zellinger et al., 2017), as used by MISA and LMR-CL (methods.md §1).

CMD pulls the shared representations of different modalities towards one distribution by
matching their first K moments, dimension by dimension, over the batch:

    CMD_K(x1, x2) = ‖E[x1] − E[x2]‖₂ + Σ_{k=2..K} ‖E[(x1 − E x1)^k] − E[(x2 − E x2)^k]‖₂

with expectations over the batch per dimension and ‖·‖₂ over dimensions (K = 3 in LMR-CL).
As in MISA, the per-moment scaling 1/|b − a|^k of the original paper is not applied.
The LMR-CL loss is the mean of CMD over the unordered pairs of shared outputs:

    CMD loss = mean_{m<n} CMD_K(s_m, s_n)      (3 pairs for 3 modalities, 1 for 2).

Norms use ``torch.linalg.vector_norm``, whose gradient at 0 is 0 (not the NaN of a naive
sqrt(sum of squares)): the higher central moments of a single-sample batch are exactly 0.
Only the distribution is matched, so x1 and x2 need not have the same number of rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ._common import presence, weighted_mean


def _moments(x: Tensor, w: Tensor | None, moments: int) -> list[Tensor]:
    """[E x, E(x−Ex)², …, E(x−Ex)^K] over the rows of x (weighted by the 0/1 column w)."""
    if w is None:
        mean = x.mean(dim=0)
        c = x - mean
        return [mean] + [c.pow(k).mean(dim=0) for k in range(2, moments + 1)]
    n = w.sum().clamp(min=1.0)
    mean = (x * w).sum(dim=0) / n
    c = (x - mean) * w
    return [mean] + [c.pow(k).sum(dim=0) / n for k in range(2, moments + 1)]


def cmd(
    x1: Tensor,
    x2: Tensor,
    moments: int = 3,
    mask1: Tensor | None = None,
    mask2: Tensor | None = None,
) -> Tensor:
    """CMD_K(x1, x2) for x1 (B1, d), x2 (B2, d); optional (B,) bool masks select rows."""
    if x1.dim() != 2 or x2.dim() != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(f"cmd: expected (B1, d) and (B2, d), got {tuple(x1.shape)} and {tuple(x2.shape)}")
    if moments < 1:
        raise ValueError(f"cmd: moments must be >= 1, got {moments}")
    w1 = None if mask1 is None else mask1.to(x1.dtype).unsqueeze(1)
    w2 = None if mask2 is None else mask2.to(x2.dtype).unsqueeze(1)
    m1, m2 = _moments(x1, w1, moments), _moments(x2, w2, moments)
    return sum(torch.linalg.vector_norm(a - b) for a, b in zip(m1, m2))


def cmd_loss(
    shared: Mapping[str, Tensor],
    moments: int = 3,
    mask: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Mean of CMD over the unordered pairs of ``shared`` ({modality: (B, H)}).

    With ``mask`` ({modality: (B,) bool}), each modality's moments use its present samples;
    a pair where either side has no sample is left out of the mean (all left out: 0).
    """
    names = list(shared)
    if len(names) < 2:
        raise ValueError(f"cmd_loss: needs at least 2 modalities, got {names}")
    b = shared[names[0]].shape[0]
    pres = presence(mask, names, b, shared[names[0]].device, "cmd_loss")
    terms, has = [], []
    for i, m in enumerate(names):
        for n in names[i + 1 :]:
            if mask is None:
                terms.append(cmd(shared[m], shared[n], moments))
            else:
                terms.append(cmd(shared[m], shared[n], moments, pres[m], pres[n]))
            has.append(pres[m].any() & pres[n].any())
    return weighted_mean(terms, has)
