"""The supervised objective: class-weighted cross-entropy (or weighted BCE for multi-label).

Class weights (``train.class_weights: inverse``) follow scikit-learn's ``"balanced"`` rule,
computed on the TRAINING split only:

    w_c = N / (C · n_c)

N = labelled training samples, C = number of classes, n_c = training samples of class c.
A class absent from training gets w_c = 0 (and a warning): it has nothing to learn from,
and an infinite weight would be meaningless. For multi-label tasks each target is a binary
problem with the same rule over its two outcomes: w_pos = N / (2·P_c), w_neg = N / (2·(N−P_c)).

A masked loss (LMR's auxiliary heads over the samples that have a modality) is the weighted
mean over the kept samples, exactly as ``F.cross_entropy(weight=...)`` averages:
Σ w_{y_i}·ℓ_i / Σ w_{y_i}.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def inverse_class_weights(y: np.ndarray, num_classes: int, classes: list[str] | None = None) -> np.ndarray:
    """w_c = N / (C · n_c) over integer labels ``y``; absent classes get 0 with a warning."""
    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weights = np.zeros(num_classes, dtype=np.float64)
    seen = counts > 0
    weights[seen] = len(y) / (num_classes * counts[seen])
    if not seen.all():
        names = [classes[c] if classes else str(c) for c in np.flatnonzero(~seen)]
        warnings.warn(f"class(es) {names} have no training sample: class weight 0", UserWarning, stacklevel=2)
    return weights


def binary_balanced_weights(y: np.ndarray, classes: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(w_pos, w_neg), each (C,), for an (N, C) multi-hot ``y``: N / (2·P_c), N / (2·(N − P_c))."""
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    pos = y.sum(axis=0)
    neg = n - pos
    w_pos = np.where(pos > 0, n / (2 * np.maximum(pos, 1)), 0.0)
    w_neg = np.where(neg > 0, n / (2 * np.maximum(neg, 1)), 0.0)
    bad = np.flatnonzero((pos == 0) | (neg == 0))
    if len(bad):
        names = [classes[c] if classes else str(c) for c in bad]
        warnings.warn(f"target(s) {names} have only one outcome in training: its weight is 0", UserWarning, stacklevel=2)
    return w_pos, w_neg


class Criterion:
    """Callable loss ``criterion(logits, y, mask=None)`` plus the matching prediction rule."""

    def __init__(self, multilabel: bool, weights: Tensor | None = None,
                 pos_weights: Tensor | None = None, neg_weights: Tensor | None = None):
        self.multilabel = multilabel
        self.weights = weights
        self.pos_weights = pos_weights
        self.neg_weights = neg_weights

    @classmethod
    def from_training(cls, y: np.ndarray, num_classes: int, multilabel: bool, mode: str,
                      device: torch.device, classes: list[str] | None = None) -> "Criterion":
        """Weights from the training labels ``y`` (``mode``: inverse | none)."""
        if multilabel:
            if mode == "none":
                return cls(True)
            w_pos, w_neg = binary_balanced_weights(y, classes)
            return cls(True, pos_weights=torch.tensor(w_pos, dtype=torch.float32, device=device),
                       neg_weights=torch.tensor(w_neg, dtype=torch.float32, device=device))
        if mode == "none":
            return cls(False)
        w = inverse_class_weights(y, num_classes, classes)
        return cls(False, weights=torch.tensor(w, dtype=torch.float32, device=device))

    def __call__(self, logits: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
        if self.multilabel:
            per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")  # (B, C)
            if self.pos_weights is not None:
                per = per * (y * self.pos_weights + (1 - y) * self.neg_weights)
            per = per.mean(dim=1)
            w = torch.ones_like(per)
        else:
            per = F.cross_entropy(logits, y, reduction="none")  # (B,)
            w = self.weights[y] if self.weights is not None else torch.ones_like(per)
        if mask is not None:
            w = w * mask.to(w.dtype)
        return (per * w).sum() / w.sum().clamp(min=1e-12)

    def probabilities(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)

    def predict(self, logits: Tensor) -> Tensor:
        """Class indices (B,), or a (B, C) 0/1 matrix (sigmoid > 0.5) for multi-label."""
        if self.multilabel:
            return (logits > 0).to(torch.int64)
        return logits.argmax(dim=-1)
