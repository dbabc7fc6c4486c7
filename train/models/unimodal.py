"""``unimodal``: an MLP on one modality (``train.modalities[0]``), the single-modality baseline.

x → ModalityInput (layer choice, missing embedding) → Linear(D → hidden) → ReLU → Dropout →
Linear(hidden → C), trained with the class-weighted CE. Samples without the modality are
kept and see the learned missing embedding (they can only learn the class prior).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from mer.train.models.common import FusionHead, InputSpec, ModalityInput, mlp


class Unimodal(FusionHead):
    name = "unimodal"
    min_modalities = 1
    max_modalities = 1

    def __init__(self, inputs: list[dict], num_classes: int, hidden: int = 256, dropout: float = 0.1,
                 layer: str = "last"):
        super().__init__()
        spec = InputSpec(**inputs[0])
        self.check_modalities([s["name"] for s in inputs])
        self.modalities = [spec.name]
        self.input = ModalityInput(spec.dim, spec.layers, spec.layer or layer)
        self.mlp = mlp([spec.dim, hidden, num_classes], dropout)

    @classmethod
    def use_modalities(cls, modalities: list[str]) -> list[str]:
        """Only ``train.modalities[0]`` (the others are not loaded)."""
        return list(modalities[:1])

    @classmethod
    def modality_error(cls, n: int) -> str:
        return f"unimodal takes exactly one modality (train.modalities[0]), got {n}"

    @classmethod
    def from_config(cls, train, inputs: list[InputSpec], num_classes: int) -> dict[str, Any]:
        return {"inputs": [inputs[0].as_dict()], "num_classes": num_classes, "hidden": train.hidden,
                "dropout": train.dropout, "layer": str(train.layer)}

    def forward(self, x: dict[str, Tensor], present: dict[str, Tensor]) -> dict[str, Any]:
        m = self.modalities[0]
        return {"logits": self.mlp(self.input(x[m], present[m]))}
