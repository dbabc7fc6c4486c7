"""Soft macro-F1 loss: 1 − the batch's macro-F1 with probabilities in place of hard decisions.

LMR-CL fine-tuned its text encoder with this loss: macro-F1 is the corpus's primary metric
and KEMDy20 is ~87 % neutral, so a loss that scores every class equally fights the
imbalance directly. Over the B samples of a batch, for class c with probabilities p_ic
(softmax, or sigmoid for multi-label) and one-hot (or multi-hot) targets y_ic:

    TP_c = Σ_i p_ic · y_ic      FP_c = Σ_i p_ic · (1 − y_ic)      FN_c = Σ_i (1 − p_ic) · y_ic
    F1_c = 2·TP_c / (2·TP_c + FP_c + FN_c + ε)
    loss = 1 − mean_c F1_c

The mean runs over the classes that OCCUR in the batch's targets. A class without a
positive in the batch has TP_c = 0 for any prediction, so its soft F1 is identically 0 and
carries no gradient: including it would only add a constant that keeps the loss of a
perfect prediction above 0 (its false positives are still penalised, through the lower TP
of the classes they are taken from). A batch with no positive at all gives a
graph-connected 0.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import graph_zero

#: keeps 0/0 finite; small enough that a perfect prediction scores 1 − O(ε)
EPS = 1e-8


def soft_f1_per_class(probs: Tensor, targets: Tensor, eps: float = EPS) -> Tensor:
    """(C,) soft F1 of each class for (B, C) probabilities and (B, C) 0/1 targets."""
    y = targets.to(probs.dtype)
    tp = (probs * y).sum(dim=0)
    fp = (probs * (1 - y)).sum(dim=0)
    fn = ((1 - probs) * y).sum(dim=0)
    return 2 * tp / (2 * tp + fp + fn + eps)


def soft_macro_f1_loss(probs: Tensor, targets: Tensor, eps: float = EPS) -> Tensor:
    """1 − mean soft F1 over the classes present in ``targets``.

    Args:
        probs: (B, C) class probabilities (softmax for single-label, sigmoid for multi-label).
        targets: (B,) integer class indices, or (B, C) one-/multi-hot 0/1 values.
    """
    if probs.dim() != 2:
        raise ValueError(f"soft_macro_f1_loss: probs must be (B, C), got {tuple(probs.shape)}")
    if targets.dim() == 1:
        if targets.shape[0] != probs.shape[0]:
            raise ValueError(f"soft_macro_f1_loss: {targets.shape[0]} labels for {probs.shape[0]} rows")
        targets = torch.nn.functional.one_hot(targets.long(), probs.shape[1])
    if targets.shape != probs.shape:
        raise ValueError(f"soft_macro_f1_loss: targets {tuple(targets.shape)} do not match probs {tuple(probs.shape)}")
    f1 = soft_f1_per_class(probs, targets, eps)
    occurs = (targets > 0).any(dim=0)
    if not bool(occurs.any()):
        return graph_zero([probs])
    return 1 - f1[occurs].mean()
