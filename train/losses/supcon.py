"""Modality-pairwise supervised contrastive loss (Khosla et al., 2020; MPUC-MER ``supervised``).

The shipped RAVDESS configuration of MPUC-MER trained with labels (methods.md §2); mer
offers it as ``loss: supervised``. The layout is that of :func:`pairwise_infonce`: for an
ordered modality pair (m → n), anchors a = (i, v) are all (sample, view) entries of m and
candidates c = (j, w) all entries of n, z L2-normalised, s = cosine, τ = 0.07. The positives
are every candidate of the anchor's class, P(a) = {(j, w) : y_j = y_i} — the same sample's
views in n included, since they are other vectors than the anchor (m ≠ n always, so the
anchor itself is never a candidate and nothing else is excluded):

    ℓ(a)    = −(1/|P(a)|) Σ_{p ∈ P(a)} [ s(a, p)/τ − log Σ_c exp(s(a, c)/τ) ]
    L_{m→n} = mean over anchors with |P(a)| ≥ 1;    loss = mean over the M(M−1) ordered pairs.

This is SupCon's L_out (mean over positives outside the log). Khosla et al.'s extra factor
τ/τ_base is 1 at the default τ = τ_base = 0.07 and is not applied.

Views are time-aligned and a pooled V = 1 anchor facing two views stands for both
windows, as in :func:`pairwise_infonce`.

``quirks=True`` reproduces the original code's labelled loss (its SupConLoss with labels on
the two aligned views): the anchor's same-window entry (i, v) in n is removed from the
candidates AND from the positives (only where n has two views), the mean over positives
divides by |P(a)| + 1 instead of |P(a)|, and every anchor counts in the mean, an anchor
without positives with a zero loss. By default mer keeps (i, v) — the same clip at the same
moment is the surest positive — and divides by |P(a)|; on the same inputs the two differ by
about +0.6 to +2.2 (the default is the larger: it averages log-probabilities without the
diluting + 1). With multi-hot labels the original weighted positives by a softmax over label
overlaps; ``quirks`` keeps mer's identical-set positives.

Labels: integers (B,), or multi-hot (B, K) rows, where "same class" means an identical row
(e.g. a CMU-MOSEI emotion set). ``mask`` ({modality: (B,) bool}) works as in
:func:`pairwise_infonce`: a sample missing m or n is neither anchor nor candidate for
(m, n); empty pairs are left out of the mean; nothing left gives a graph-connected zero.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import batch_size, check_labels, presence, views, weighted_mean
from .infonce import anchor_views, pair_logits


def pairwise_supcon(
    z: Mapping[str, Tensor],
    labels: Tensor,
    temperature: float = 0.07,
    mask: Mapping[str, Tensor] | None = None,
    quirks: bool = False,
) -> Tensor:
    """Supervised pairwise loss over ``z`` ({modality: (B, V, D) or (B, D)}, ≥ 2 modalities)."""
    if not isinstance(z, Mapping) or len(z) < 2:
        raise ValueError("pairwise_supcon: z must be a dict of at least 2 modalities")
    if temperature <= 0:
        raise ValueError(f"pairwise_supcon: temperature must be > 0, got {temperature}")
    z = {m: F.normalize(t, dim=-1) for m, t in views(z, "pairwise_supcon").items()}
    b = batch_size(z, "pairwise_supcon", ndim=(3,))
    names = list(z)
    device = z[names[0]].device
    labels = check_labels(labels, b, "pairwise_supcon", allow_multihot=True).to(device)
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    if same.dim() == 3:  # multi-hot rows: same class = identical rows
        same = same.all(dim=-1)
    pres = presence(mask, names, b, device, "pairwise_supcon")

    terms, has = [], []
    for m in names:
        for n in names:
            if m == n:
                continue
            valid = pres[m] & pres[n]
            v_n = z[n].shape[1]
            logits, a_sample, a_view, c_sample, a_valid = pair_logits(anchor_views(z[m], v_n), z[n], valid, temperature)
            pos = same[a_sample][:, c_sample] & valid[c_sample].unsqueeze(0)
            if quirks and v_n == 2:  # the original's "self-contrast" mask: the same (sample, window)
                rows = torch.arange(logits.shape[0], device=logits.device)
                hide = torch.zeros_like(pos)
                hide[rows, a_sample * v_n + a_view] = True
                logits = logits.masked_fill(hide, float("-inf"))
                pos = pos & ~hide
            log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
            n_pos = pos.sum(dim=1)
            # where(), not pos * log_prob: dropped candidates hold −inf and 0·(−inf) is NaN
            loss = -torch.where(pos, log_prob, 0.0).sum(dim=1) / (n_pos + 1 if quirks else n_pos.clamp(min=1))
            anchor = a_valid if quirks else a_valid & (n_pos > 0)
            w = anchor.to(loss.dtype)
            terms.append((loss * w).sum() / w.sum().clamp(min=1.0))
            has.append(anchor.any())
    return weighted_mean(terms, has)
