"""``concat``: early fusion, an MLP on the concatenated standardised vectors of all modalities.

x_m → ModalityInput_m (layer choice, missing embedding); concat_m → Linear(ΣD → hidden) → ReLU →
Dropout → Linear(hidden → C). A sample missing modality m carries m's learned missing
embedding in m's slot, so every sample is kept.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mer.train.models.common import FusionHead, InputSpec, ModalityInput, mlp


class Concat(FusionHead):
    name = "concat"

    def __init__(self, inputs: list[dict], num_classes: int, hidden: int = 256, dropout: float = 0.1,
                 layer: str = "last"):
        super().__init__()
        specs = [InputSpec(**s) for s in inputs]
        self.modalities = [s.name for s in specs]
        self.check_modalities(self.modalities)
        self.inputs = nn.ModuleDict({s.name: ModalityInput(s.dim, s.layers, s.layer or layer) for s in specs})
        self.mlp = mlp([sum(s.dim for s in specs), hidden, num_classes], dropout)

    @classmethod
    def from_config(cls, train, inputs: list[InputSpec], num_classes: int) -> dict[str, Any]:
        return {"inputs": [s.as_dict() for s in inputs], "num_classes": num_classes, "hidden": train.hidden,
                "dropout": train.dropout, "layer": str(train.layer)}

    def forward(self, x: dict[str, Tensor], present: dict[str, Tensor]) -> dict[str, Any]:
        z = torch.cat([self.inputs[m](x[m], present[m]) for m in self.modalities], dim=-1)
        return {"logits": self.mlp(z)}
