"""The original LMR-CL anchor rule, as an explicit, seedable state object.

The original code drew ONE anchor per batch for its contrastive losses: the anchor class
cycles 0 → C−1 across batches, a class with fewer than 2 samples in the batch is skipped
(it has no positive), and the anchor is a uniformly random sample of the chosen class.
When no class had 2 samples the original ``while`` loop never ended; here :meth:`pick`
checks each class at most once and returns ``None``, and the losses then return a zero
that is still connected to the graph.

Why a dataclass passed in rather than hidden module state: the cycle position is training
state (it must survive across batches, be reset per run, and be reproducible with a seeded
``torch.Generator``). Give each loss its own cycler if the losses should cycle independently;
sharing one makes the class advance once per loss call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class AnchorCycler:
    """State of the "single anchor per batch" rule (methods.md §1, ``anchors: single``).

    Attributes:
        num_classes: C; labels must lie in [0, C).
        generator: a CPU ``torch.Generator`` for the random choice inside the class
            (None = torch's global RNG).
        next_class: the class tried first on the next call (advances to chosen + 1).
        last_class / last_anchor: what the latest call chose (None if nothing qualified).
    """

    num_classes: int
    generator: torch.Generator | None = None
    next_class: int = 0
    last_class: int | None = None
    last_anchor: int | None = None

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"AnchorCycler: num_classes must be >= 1, got {self.num_classes}")

    def pick(self, labels: Tensor, eligible: Tensor | None = None) -> int | None:
        """Choose this batch's anchor index, or None when no class has >= 2 eligible samples.

        Args:
            labels: (B,) integer class labels in [0, C).
            eligible: optional (B,) bool; samples that may be anchors or be counted as
                class members (e.g. those present in every modality the loss needs).

        The position advances only when a class is chosen; a batch with no usable class
        leaves it where it was.
        """
        y = labels.detach().to("cpu", torch.long)
        if y.dim() != 1:
            raise ValueError(f"AnchorCycler.pick: labels must be 1-D, got shape {tuple(y.shape)}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(
                f"AnchorCycler.pick: labels must lie in [0, {self.num_classes}), "
                f"got min {int(y.min())}, max {int(y.max())}"
            )
        ok = (
            torch.ones_like(y, dtype=torch.bool)
            if eligible is None
            else eligible.detach().to("cpu", torch.bool)
        )
        counts = torch.bincount(y[ok], minlength=self.num_classes)
        for step in range(self.num_classes):  # each class at most once: no infinite loop
            c = (self.next_class + step) % self.num_classes
            if int(counts[c]) >= 2:
                members = torch.nonzero((y == c) & ok).flatten()
                k = int(torch.randint(len(members), (1,), generator=self.generator))
                self.next_class = (c + 1) % self.num_classes
                self.last_class, self.last_anchor = c, int(members[k])
                return self.last_anchor
        self.last_class = self.last_anchor = None
        return None
