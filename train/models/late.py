"""``late``: late fusion, the mean of per-modality unimodal logits, trained jointly.

Each modality m has its own MLP (Linear(D_m → hidden) → ReLU → Dropout → Linear(hidden → C))
giving logits_m. The loss is Σ_m CE_w(logits_m), each over the samples that HAVE m (an absent
modality has nothing to learn from); the prediction is the mean of logits_m over the
modalities a sample has (all of them, if it has none).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mer.train.models.common import Batch, FusionHead, InputSpec, ModalityInput, mlp


class Late(FusionHead):
    name = "late"

    def __init__(self, inputs: list[dict], num_classes: int, hidden: int = 256, dropout: float = 0.1,
                 layer: str = "last"):
        super().__init__()
        specs = [InputSpec(**s) for s in inputs]
        self.modalities = [s.name for s in specs]
        self.check_modalities(self.modalities)
        self.inputs = nn.ModuleDict({s.name: ModalityInput(s.dim, s.layers, s.layer or layer) for s in specs})
        self.heads = nn.ModuleDict({s.name: mlp([s.dim, hidden, num_classes], dropout) for s in specs})

    @classmethod
    def from_config(cls, train, inputs: list[InputSpec], num_classes: int) -> dict[str, Any]:
        return {"inputs": [s.as_dict() for s in inputs], "num_classes": num_classes, "hidden": train.hidden,
                "dropout": train.dropout, "layer": str(train.layer)}

    def forward(self, x: dict[str, Tensor], present: dict[str, Tensor]) -> dict[str, Any]:
        per = {m: self.heads[m](self.inputs[m](x[m], present[m])) for m in self.modalities}
        stacked = torch.stack([per[m] for m in self.modalities])  # (M, B, C)
        have = torch.stack([present[m] for m in self.modalities]).to(stacked.dtype)  # (M, B)
        have = torch.where(have.sum(0, keepdim=True) > 0, have, torch.ones_like(have))
        logits = (stacked * have.unsqueeze(-1)).sum(0) / have.sum(0).unsqueeze(-1)
        return {"logits": logits, "per_modality": per}

    def losses(self, out: dict, batch: Batch, criterion) -> tuple[Tensor, dict[str, Tensor]]:
        parts = {f"ce_{m}": criterion(out["per_modality"][m], batch.y, mask=batch.present[m]) for m in self.modalities}
        return sum(parts.values()), parts
