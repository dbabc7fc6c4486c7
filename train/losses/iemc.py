"""Inter-modal contrastive loss, IEMC (LMR-CL, methods.md §1).

On the shared outputs s^m only. An anchor i of class a in anchor modality m is pulled
towards the OTHER samples of its class in every partner modality n ≠ m and pushed away from
the other classes there, by plain cosines (no temperature):

    P = #{j : y_j = a}   (the anchor itself INCLUDED),   N = B − P
    pos_m(i) = (1/P) Σ_{n ≠ m} Σ_{j ≠ i, y_j = a} cos(s^m_i, s^n_j)
    neg_m(i) = (1/N) Σ_{n ≠ m} Σ_{j : y_j ≠ a}    cos(s^m_i, s^n_j)   (:= 0 when N = 0)
    L_m(i)   = 2 − pos_m(i) + neg_m(i)

    IEMC = mean_m  mean_{anchors i} L_m(i)

The same utterance's cross-modal pair (j = i) is never a positive, yet P counts the anchor:
this is the paper's normalisation (so pos < 1 per partner even when all cosines are 1), kept
exactly. With 3 modalities each anchor modality has the paper's 2 partners; the code takes
"partners = all other modalities", so 2 modalities give one partner and the sums have one
term (and M > 3 works the same way).

Anchors (``anchors=``): ``"all"`` (default) — every sample whose class has ≥ 2 members;
``"single"`` — one anchor per batch from an :class:`~mer.train.losses.anchors.AnchorCycler`,
used in every anchor modality.

Presence masks (``mask=``, {modality: (B,) bool}): cos(s^m_i, s^n_j) needs i to have m and j
to have n. With masks the counts become, per partner n, P_n = 1 + #{j ≠ i with n, y_j = a}
and N_n = #{j with n, y_j ≠ a}, and each partner's sums are divided by its own P_n / N_n;
without masks P_n = P and N_n = N, i.e. exactly the formula above. An anchor in m must have
m and at least one positive in some partner; the mean over m runs over anchor modalities
with ≥ 1 anchor. With ``"single"`` the cycler only considers samples present in every
modality. When nothing qualifies the loss is a zero still connected to the graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import batch_size, check_labels, presence, reduce_over_anchors
from .anchors import AnchorCycler


def iemc_per_anchor(
    shared: Mapping[str, Tensor], labels: Tensor, pres: Mapping[str, Tensor]
) -> dict[str, tuple[Tensor, Tensor]]:
    """{m: (L_m(i) for every i (B,), which i are anchors in m (B,) bool)}."""
    names = list(shared)
    z = {m: F.normalize(shared[m], dim=1) for m in names}
    any_r = z[names[0]]
    b = any_r.shape[0]
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(b, dtype=torch.bool, device=any_r.device)
    out = {}
    for m in names:
        pos = torch.zeros(b, dtype=any_r.dtype, device=any_r.device)
        neg = torch.zeros_like(pos)
        has_pos = torch.zeros(b, dtype=torch.bool, device=any_r.device)
        for n in names:
            if n == m:
                continue
            cos = z[m] @ z[n].t()
            valid = pres[m].unsqueeze(1) & pres[n].unsqueeze(0)
            pos_mask = same & ~eye & valid
            neg_mask = ~same & valid
            p = pos_mask.sum(dim=1) + 1  # the anchor counts in P
            nn = neg_mask.sum(dim=1)
            pos = pos + torch.where(pos_mask, cos, 0.0).sum(dim=1) / p
            neg = neg + torch.where(neg_mask, cos, 0.0).sum(dim=1) / nn.clamp(min=1)
            has_pos = has_pos | pos_mask.any(dim=1)
        out[m] = (2.0 - pos + neg, pres[m] & has_pos)
    return out


def iemc_loss(
    shared: Mapping[str, Tensor],
    labels: Tensor,
    anchors: Literal["all", "single"] = "all",
    anchor_state: AnchorCycler | None = None,
    mask: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """IEMC over ``shared`` ({modality: (B, H)}, ≥ 2 modalities) with integer ``labels`` (B,).

    Args:
        anchors: ``"all"`` or ``"single"`` (see the module docstring).
        anchor_state: the :class:`AnchorCycler` carried across batches; required for ``"single"``.
        mask: optional {modality: (B,) bool} presence (absent keys = all present).
    """
    if anchors not in ("all", "single"):
        raise ValueError(f"iemc_loss: anchors must be 'all' or 'single', got {anchors!r}")
    if not isinstance(shared, Mapping) or len(shared) < 2:
        raise ValueError("iemc_loss: shared must be a dict of at least 2 modalities")
    b = batch_size(shared, "iemc_loss")
    device = next(iter(shared.values())).device
    labels = check_labels(labels, b, "iemc_loss").to(device)
    pres = presence(mask, list(shared), b, device, "iemc_loss")
    per = iemc_per_anchor(shared, labels, pres)

    return reduce_over_anchors(per, labels, pres, anchors, anchor_state, list(shared.values()), "iemc_loss")
