"""Difference loss: soft orthogonality between representations (LMR-CL, methods.md §1).

As in DSN (Bousmalis et al., 2016) and MISA (Hazarika et al., 2020), private and shared
representations are pushed to encode different things by penalising the squared
cross-correlation of their (batch-centred, row-normalised) features:

    X̃ = rownorm(X − 1·mean_batch(X)),   rownorm(x)_i = x_i / (‖x_i‖₂ + 1e-6)   (norm DETACHED)
    D(X1, X2) = mean_{k,l} ((X̃1ᵀ X̃2)_{kl})²                 (mean over the d1 × d2 entries)

The norm is detached, as in MISA, so the gradient only moves the direction-free, centred
features and a row of zeros (e.g. a batch of one sample, which centres to zero) gives a
finite (zero) gradient instead of 0/0.

For modalities M (in dict order), the LMR-CL total is

    Diff = Σ_m D(p_m, s_m) + Σ_{m<n} D(p_m, p_n)

which is the 6 terms of the paper for 3 modalities (D is symmetric, so the pair order does
not matter) and 2 + 1 terms for 2 modalities.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ._common import presence

EPS = 1e-6


def diff_loss(x1: Tensor, x2: Tensor, mask: Tensor | None = None) -> Tensor:
    """D(X1, X2) for X1 (B, d1), X2 (B, d2); ``mask`` (B,) bool keeps only those rows.

    With no kept row the result is 0 (still connected to the graph).
    """
    if x1.dim() != 2 or x2.dim() != 2 or x1.shape[0] != x2.shape[0]:
        raise ValueError(f"diff_loss: expected (B, d1) and (B, d2), got {tuple(x1.shape)} and {tuple(x2.shape)}")
    if mask is not None:
        # Zero-weighting instead of boolean indexing keeps shapes static (no GPU sync):
        # absent rows are excluded from the batch mean and contribute a zero row to X̃1ᵀX̃2.
        w = mask.to(x1.dtype).unsqueeze(1)
        n = w.sum().clamp(min=1.0)
        x1 = (x1 - (x1 * w).sum(0, keepdim=True) / n) * w
        x2 = (x2 - (x2 * w).sum(0, keepdim=True) / n) * w
    else:
        x1 = x1 - x1.mean(dim=0, keepdim=True)
        x2 = x2 - x2.mean(dim=0, keepdim=True)
    x1 = x1 / (x1.norm(p=2, dim=1, keepdim=True).detach() + EPS)
    x2 = x2 / (x2.norm(p=2, dim=1, keepdim=True).detach() + EPS)
    return (x1.t() @ x2).pow(2).mean()


def diff_total(
    private: Mapping[str, Tensor],
    shared: Mapping[str, Tensor],
    mask: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Σ_m D(p_m, s_m) + Σ_{m<n} D(p_m, p_n) over the modalities of ``private``.

    Args:
        private, shared: ``{modality: (B, H)}`` with the same keys.
        mask: optional ``{modality: (B,) bool}`` presence; D(p_m, s_m) uses the samples
            that have m, D(p_m, p_n) those that have both. A term with no sample is 0.
    """
    names = list(private)
    if set(names) != set(shared):
        raise ValueError(f"diff_total: private has {sorted(private)}, shared has {sorted(shared)}")
    if not names:
        raise ValueError("diff_total: no modalities given")
    b = private[names[0]].shape[0]
    pres = presence(mask, names, b, private[names[0]].device, "diff_total")
    pairs = [(private[m], shared[m], pres[m]) for m in names]
    pairs += [
        (private[m], private[n], pres[m] & pres[n])
        for i, m in enumerate(names)
        for n in names[i + 1 :]
    ]
    # A term with no kept row is exactly 0 (its centred rows are zeroed), so a plain sum is right.
    return torch.stack([diff_loss(x1, x2, None if mask is None else keep) for x1, x2, keep in pairs]).sum()
