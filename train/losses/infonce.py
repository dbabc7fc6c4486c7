"""Modality-pairwise InfoNCE (MPUC-MER, methods.md §2): unsupervised, no labels.

Each modality m gives z^m ∈ R^{B×V×D}: V views of B clips, L2-normalised here. The views
are TIME-ALIGNED (:func:`mer.train.pretrain.view_inputs`): view v of every modality is the
same time window w_v of the clip; V = 1 is a pooled vector, which covers the whole clip and
stands for both windows. For an ORDERED pair (m → n):

    anchors     a = (i, v)  every (sample, view) of modality m
    candidates  c = (j, w)  every (sample, view) of modality n
    positive    p(a) = (i, v): the same clip at the same moment, seen by n
    ℓ(a)    = −[ s(a, p(a))/τ − log Σ_c exp(s(a, c)/τ) ],    s = cosine, τ = 0.07
    L_{m→n} = mean_a ℓ(a);     loss = mean over the M(M−1) ordered pairs.

The same clip's OTHER window in n, (i, 1 − v), is left out of the candidates: it shows the
same clip (the same emotion) a moment earlier or later, as good a match as the positive,
so counting it as a negative would put a floor of about log 2 under the loss and push
apart what the method means to pull together. Different view counts:
  * V_n = 1 (n pooled): p(a) = (i, 0), the clip's only vector in n; nothing is left out.
  * V_m = 1, V_n = 2 (m pooled): the pooled anchor stands for both windows, i.e. it is used
    as anchor (i, 0) and (i, 1), each with its own window's positive (a mean of two terms).

``quirks=True`` reproduces the original code's loss (its SupConLoss with no labels on the
two aligned views): the positive is the partner's OTHER window (i, 1 − v), the same window
(i, v) is removed from the candidates, and the loss is multiplied by 1/2 (its 1/(|P|+1)
with |P| = 1); with V_n = 1 the positive is (i, 0) and nothing is removed.

``mask`` ({modality: (B,) bool}): a sample missing m or n takes no part in the pair (m, n),
neither as anchor nor as candidate. Pairs without any such sample are left out of the mean
over pairs; if none is left the loss is a graph-connected zero. Everything is done with
masks on fixed shapes (no boolean indexing), so it never synchronises a GPU.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import batch_size, presence, views, weighted_mean


def positive_view(anchor_view: Tensor, v_n: int, quirks: bool = False) -> Tensor:
    """The view index in n of each anchor's positive (anchors of a pooled m are already expanded)."""
    if v_n == 1:
        return torch.zeros_like(anchor_view)
    return 1 - anchor_view if quirks else anchor_view


def anchor_views(zm: Tensor, v_n: int) -> Tensor:
    """A pooled modality (V = 1) facing a two-view partner stands for both windows: (B, 2, D)."""
    return zm.expand(-1, v_n, -1) if zm.shape[1] == 1 and v_n == 2 else zm


def pair_logits(
    zm: Tensor, zn: Tensor, valid: Tensor, temperature: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Cosine logits of anchors (i, v) of m against candidates (j, w) of n, flattened.

    Returns (logits (B·V_m, B·V_n), anchor sample, anchor view, candidate sample,
    anchor validity); candidates of absent samples are set to −inf in rows of valid anchors.
    Rows of absent anchors keep every candidate so that they stay finite (no 0·NaN in
    backward); the caller gives those rows zero weight.
    """
    b, v_m, d = zm.shape
    v_n = zn.shape[1]
    logits = zm.reshape(b * v_m, d) @ zn.reshape(b * v_n, d).t() / temperature
    dev = zm.device
    a_sample = torch.arange(b, device=dev).repeat_interleave(v_m)
    a_view = torch.arange(v_m, device=dev).repeat(b)
    c_sample = torch.arange(b, device=dev).repeat_interleave(v_n)
    a_valid = valid[a_sample]
    drop = a_valid.unsqueeze(1) & ~valid[c_sample].unsqueeze(0)
    return logits.masked_fill(drop, float("-inf")), a_sample, a_view, c_sample, a_valid


def pairwise_infonce(
    z: Mapping[str, Tensor],
    temperature: float = 0.07,
    quirks: bool = False,
    mask: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """MPUC-MER's loss over ``z`` ({modality: (B, V, D) or (B, D)}, ≥ 2 modalities)."""
    if not isinstance(z, Mapping) or len(z) < 2:
        raise ValueError("pairwise_infonce: z must be a dict of at least 2 modalities")
    if temperature <= 0:
        raise ValueError(f"pairwise_infonce: temperature must be > 0, got {temperature}")
    z = {m: F.normalize(t, dim=-1) for m, t in views(z, "pairwise_infonce").items()}
    b = batch_size(z, "pairwise_infonce", ndim=(3,))
    names = list(z)
    pres = presence(mask, names, b, z[names[0]].device, "pairwise_infonce")

    terms, has = [], []
    for m in names:
        for n in names:
            if m == n:
                continue
            v_n = z[n].shape[1]
            zm = anchor_views(z[m], v_n)
            logits, a_sample, a_view, _, a_valid = pair_logits(zm, z[n], pres[m] & pres[n], temperature)
            rows = torch.arange(logits.shape[0], device=logits.device)
            pos_col = a_sample * v_n + positive_view(a_view, v_n, quirks)
            if v_n == 2:  # the same clip's other entry in n: neither positive nor negative
                hide = torch.zeros_like(logits, dtype=torch.bool)
                hide[rows, a_sample * v_n + positive_view(a_view, v_n, not quirks)] = True
                logits = logits.masked_fill(hide, float("-inf"))
            loss = torch.logsumexp(logits, dim=1) - logits[rows, pos_col]
            w = a_valid.to(loss.dtype)
            terms.append((loss * w).sum() / w.sum().clamp(min=1.0))
            has.append(a_valid.any())
    total = weighted_mean(terms, has)
    return total * 0.5 if quirks else total
