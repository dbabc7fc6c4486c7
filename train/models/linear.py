"""``linear``: multinomial logistic regression on the pooled modalities, the baseline to beat.

features = [ x_1 | x_2 | … | x_M | present_1 … present_M ]      (ΣD + M)
logits   = W · (features − mean) / std + b

``x_m`` is modality m's standardised cache vector (the layer ``train.layer`` picks for an
all-layer cache), exactly zero where the sample lacks m; the presence flags let the model tell
"missing" from "average" (a flag that never varies in training is standardised to zero and gets
no weight). The weights are not learned by gradient descent: :mod:`mer.train.linear` fits
scikit-learn's ``LogisticRegression`` on the training split and chooses its C on validation,
then copies the fitted affine map into this module, so the run saves, reloads (``mer
evaluate``) and predicts like every other head.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mer.train.models.common import FusionHead, InputSpec
from mer.train.models.mpuc import LinearProbe


def select_layer(x: Tensor, layers: int, layer: str) -> Tensor:
    """(B, D) from (B, D) or an all-layer (B, L, D) input: ``last`` or a hidden-state position."""
    if not layers:
        return x
    return x[:, -1] if layer == "last" else x[:, int(layer)]


class Linear(FusionHead):
    name = "linear"

    def __init__(self, inputs: list[dict], num_classes: int, layer: str = "last"):
        super().__init__()
        specs = [InputSpec(**s) for s in inputs]
        self.modalities = [s.name for s in specs]
        self.check_modalities(self.modalities)
        self.layers = {s.name: s.layers for s in specs}
        self.layer = {s.name: s.layer or layer for s in specs}
        for s in specs:
            if s.layers and self.layer[s.name] == "weighted":
                raise ValueError(f"modality {s.name!r}: the linear model cannot learn train.layer=weighted "
                                 "(a learned mix of layers needs gradient training); pick one layer: "
                                 "train.layer=last or a layer index")
            if s.layers and self.layer[s.name] != "last" and not -s.layers <= int(self.layer[s.name]) < s.layers:
                raise ValueError(f"modality {s.name!r}: layer {self.layer[s.name]} out of range for a cache with "
                                 f"{s.layers} layers")
        self.in_dim = sum(s.dim for s in specs) + len(specs)
        self.probe = LinearProbe(self.in_dim, num_classes)

    @classmethod
    def from_config(cls, train, inputs: list[InputSpec], num_classes: int) -> dict[str, Any]:
        return {"inputs": [s.as_dict() for s in inputs], "num_classes": num_classes, "layer": str(train.layer)}

    def features(self, x: dict[str, Tensor], present: dict[str, Tensor]) -> Tensor:
        """(B, ΣD + M): the selected layer of every modality, then the presence flags."""
        parts = [select_layer(x[m], self.layers[m], self.layer[m]) for m in self.modalities]
        flags = torch.stack([present[m] for m in self.modalities], dim=1).to(parts[0].dtype)
        return torch.cat(parts + [flags], dim=1)

    def forward(self, x: dict[str, Tensor], present: dict[str, Tensor]) -> dict[str, Any]:
        return {"logits": self.probe(self.features(x, present))}


__all__ = ["Linear", "select_layer"]
