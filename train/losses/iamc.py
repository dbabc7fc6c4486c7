"""Intra-modal contrastive loss, IAMC (LMR-CL, methods.md §1).

Within one representation r (LMR-CL uses the 6 of them: private and shared, per modality),
an anchor i of class a is pulled towards the other samples of its class and pushed away
from the samples of other classes, by plain cosines (no temperature, no margin):

    pos_i = mean_{j ≠ i, y_j = a} cos(r_i, r_j)
    neg_i = mean_{j : y_j ≠ a}    cos(r_i, r_j)          (:= 0 when the batch has no other class)
    L_r(i) = 2 − pos_i + neg_i                              (in [0, 4])

    IAMC = mean_r  mean_{anchors i} L_r(i)

Anchors (``anchors=``):
  * ``"all"`` (mer's default): every sample whose class has ≥ 2 members in the batch (so
    pos_i is defined); vectorised over the batch as a B × B cosine matrix with masks.
  * ``"single"``: the original rule, one anchor per batch chosen by an
    :class:`~mer.train.losses.anchors.AnchorCycler` (class cycles 0 → C−1 across batches,
    classes with < 2 samples skipped), shared by every representation.

neg_i := 0 when there are no negatives is a choice the formula leaves open (0/0): the
anchor then only has its pull term, which is what "no push" means.

Presence masks (``mask=``): the trainer keeps samples that miss a modality; a sample absent
from r is neither an anchor nor a partner in r, and class sizes are counted among present
samples. The mean over r runs over the representations that have ≥ 1 anchor. With
``"single"``, the anchor and class counts use the samples present in EVERY representation.
When nothing qualifies the loss is a zero still connected to the graph (backward works).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import as_named, batch_size, check_labels, presence, reduce_over_anchors
from .anchors import AnchorCycler


def iamc_per_anchor(r: Tensor, labels: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
    """L_r(i) for every i (B,), and which i qualify as anchors (B,) bool."""
    z = F.normalize(r, dim=1)
    cos = z @ z.t()
    b = r.shape[0]
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    both = present.unsqueeze(0) & present.unsqueeze(1)
    eye = torch.eye(b, dtype=torch.bool, device=r.device)
    pos_mask = same & both & ~eye
    neg_mask = ~same & both
    n_pos = pos_mask.sum(dim=1)
    n_neg = neg_mask.sum(dim=1)
    pos = torch.where(pos_mask, cos, 0.0).sum(dim=1) / n_pos.clamp(min=1)
    neg = torch.where(neg_mask, cos, 0.0).sum(dim=1) / n_neg.clamp(min=1)  # 0 without negatives
    return 2.0 - pos + neg, present & (n_pos > 0)


def iamc_loss(
    reps: Sequence[Tensor] | Mapping[str, Tensor],
    labels: Tensor,
    anchors: Literal["all", "single"] = "all",
    anchor_state: AnchorCycler | None = None,
    mask: Tensor | Sequence[Tensor] | Mapping[str, Tensor] | None = None,
) -> Tensor:
    """IAMC over the representations ``reps`` (each (B, d)) with integer ``labels`` (B,).

    Args:
        anchors: ``"all"`` or ``"single"`` (see the module docstring).
        anchor_state: the :class:`AnchorCycler` carried across batches; required for ``"single"``.
        mask: presence per representation: one (B,) bool for all, a list aligned with
            ``reps``, or a dict with ``reps``' keys (absent keys = all present).
    """
    if anchors not in ("all", "single"):
        raise ValueError(f"iamc_loss: anchors must be 'all' or 'single', got {anchors!r}")
    named = as_named(reps, "iamc_loss")
    b = batch_size(named, "iamc_loss")
    labels = check_labels(labels, b, "iamc_loss")
    device = next(iter(named.values())).device
    labels = labels.to(device)
    pres = presence(mask, list(named), b, device, "iamc_loss")
    per = {k: iamc_per_anchor(r, labels, pres[k]) for k, r in named.items()}

    return reduce_over_anchors(per, labels, pres, anchors, anchor_state, list(named.values()), "iamc_loss")
