"""Modality dropout: hide whole modalities of random training samples.

Why: a fusion head trained jointly on a few hundred samples tends to fit the easiest
modality and ignore the others ("modality laziness"; Neverova et al., 2016, ModDrop;
Wang et al., 2020, "What makes training multi-modal classification networks hard?").
On the demo corpus this shows as late fusion (each modality trained alone) beating early
fusion by 10+ macro-F1 points. Hiding a modality now and then forces the head to
use every modality, and it rehearses the missing-modality path that real corpora need
(KEMDy20 segments without IBI, MELD clips without video).

A hidden modality goes through exactly the path of a genuinely missing one: its vector is
zeroed, ``present`` is set False, the learned "missing" embedding stands in for it, and the
contrastive/auxiliary terms that need it skip the sample. At least one modality a sample
really has is always kept. Only pooled-vector modalities are dropped: sequence modalities
(padded clips) are left as they are. Evaluation never drops anything.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mer.train.models.common import Batch


def drop_modalities(batch: Batch, p: float, generator: torch.Generator) -> Batch:
    """Return ``batch`` with each (sample, pooled modality) hidden with probability ``p``.

    Draws come from ``generator`` (CPU), so a seeded run stays deterministic. A sample whose
    draws would hide every modality it has keeps one of them, chosen uniformly.
    """
    names = [m for m, v in batch.x.items() if isinstance(v, Tensor)]
    if p <= 0 or len(names) < 2:
        return batch
    present = torch.stack([batch.present[m].bool().cpu() for m in names], dim=1)  # (B, M)
    hide = (torch.rand(present.shape, generator=generator) < p) & present
    # a sample left with nothing: un-hide one of the modalities it really has
    empty = present.any(dim=1) & ~(present & ~hide).any(dim=1)
    if empty.any():
        scores = torch.rand(present.shape, generator=generator).masked_fill(~present, -1.0)
        keep = scores.argmax(dim=1)
        rows = empty.nonzero(as_tuple=True)[0]
        hide[rows, keep[rows]] = False
    x, pres = dict(batch.x), dict(batch.present)
    for j, m in enumerate(names):
        gone = hide[:, j].to(batch.present[m].device)
        if gone.any():
            pres[m] = batch.present[m] & ~gone
            shape = (-1,) + (1,) * (batch.x[m].dim() - 1)
            x[m] = batch.x[m] * (~gone).view(shape).to(batch.x[m].dtype)
    return Batch(x=x, present=pres, y=batch.y, group_y=batch.group_y)
