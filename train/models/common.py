"""Pieces every fusion head shares: the model contract, the per-modality input path, MLPs.

The contract (what the trainer, ``mer evaluate`` and ``mer ablate`` rely on)
---------------------------------------------------------------------------
A model is a :class:`FusionHead`:

* ``__init__(**init_kwargs)`` with JSON-able kwargs only; :meth:`FusionHead.from_config`
  derives them from the TrainConfig and the data (``inputs``: one :class:`InputSpec` dict per
  modality, ``num_classes``), and the checkpoint stores them, so a run re-loads as
  ``cls(**init_kwargs).load_state_dict(state_dict)``;
* ``forward(x, present) -> dict`` with at least ``"logits"`` (B, C); ``x[m]`` is the
  standardised input of modality m ((B, D), or (B, L, D) for all-layer caches), zero where
  ``present[m]`` (B,) is False;
* ``losses(out, batch, criterion) -> (total, parts)``: the scalar to minimise and the
  unweighted loss terms by name (logged in history.csv).

The input path (:class:`ModalityInput`) selects or mixes encoder layers and replaces an
absent modality by a learned "missing" embedding, so samples that lack a modality are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclass
class Batch:
    """One mini-batch, sliced from the on-device tensors of :class:`~mer.train.data.TrainData`."""

    x: dict[str, Tensor]
    present: dict[str, Tensor]
    #: (B,) class indices, or (B, C) multi-hot floats for multi-label tasks
    y: Tensor
    #: (B,) integer ids for the contrastive losses (= y for single-label; label-set id otherwise)
    group_y: Tensor


class ModalityInput(nn.Module):
    """Layer selection/mixing and the learned missing-modality embedding for one modality.

    ``layers = 0``: the cache holds one vector per sample (B, D).
    ``layers = L > 0``: an all-layer cache (B, L, D); ``layer`` is ``last``, an index ``k``
    (negative counts from the end) or ``weighted``: a learned softmax over the layers, as in
    SUPERB (Yang et al., 2021), initialised uniform.

    Absent samples arrive as zeros; ``missing`` (D,) is ADDED where ``present`` is False, so
    the model sees a learned constant for "this modality is missing" instead of a fake
    all-zero observation (which, after standardisation, would read as "exactly average").
    """

    def __init__(self, dim: int, layers: int = 0, layer: str = "last"):
        super().__init__()
        self.dim, self.layers, self.layer = dim, layers, layer
        if layers:
            if layer == "weighted":
                self.layer_logits = nn.Parameter(torch.zeros(layers))
            elif layer != "last":
                k = int(layer)
                if not -layers <= k < layers:
                    raise ValueError(f"layer {layer} out of range for a cache with {layers} layers")
        self.missing = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.missing, std=0.02)

    def forward(self, x: Tensor, present: Tensor) -> Tensor:
        if self.layers:
            if self.layer == "weighted":
                w = torch.softmax(self.layer_logits, dim=0)
                x = torch.einsum("bld,l->bd", x, w)
            elif self.layer == "last":
                x = x[:, -1]
            else:
                x = x[:, int(self.layer)]
        absent = (~present).to(x.dtype).unsqueeze(-1)
        return x + absent * self.missing


def mlp(sizes: list[int], dropout: float = 0.0, final_activation: bool = False) -> nn.Sequential:
    """Linear layers with ReLU (and dropout) between them."""
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(nn.Linear(a, b))
        last = i == len(sizes) - 2
        if not last or final_activation:
            mods.append(nn.ReLU())
            if dropout > 0 and not last:
                mods.append(nn.Dropout(dropout))
    return nn.Sequential(*mods)


@dataclass
class InputSpec:
    """What the model needs to know about one modality's cached input (stored in init_kwargs)."""

    name: str
    dim: int
    #: 0 = one vector per sample; L = an all-layer cache (L, D)
    layers: int = 0
    #: encoder family (hf-text, e4, hf-audio, ...): picks LMR's default branch
    family: str = ""
    #: a ragged sequence input (T_i, dim) per sample (models registered with ``sequences=True``)
    ragged: bool = False
    #: all-layer caches: ``train.layer`` resolved for this cache (last | weighted | position);
    #: '' = use the model's ``layer`` argument
    layer: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dim": self.dim, "layers": self.layers, "family": self.family,
                "ragged": self.ragged, "layer": self.layer}


class FusionHead(nn.Module):
    """Base class of the supervised heads; see the module docstring for the contract."""

    name: ClassVar[str]
    #: smallest / largest number of modalities the model accepts
    min_modalities: ClassVar[int] = 1
    max_modalities: ClassVar[int | None] = None

    @classmethod
    def from_config(cls, train, inputs: list[InputSpec], num_classes: int) -> dict[str, Any]:
        """The init kwargs for ``train`` (a TrainConfig), the data's inputs and C."""
        raise NotImplementedError

    @classmethod
    def use_modalities(cls, modalities: list[str]) -> list[str]:
        """The modalities the model trains on, from ``train.modalities`` (default: all of them)."""
        return list(modalities)

    @classmethod
    def check_modalities(cls, modalities: list[str]) -> None:
        """Raise ValueError when the model cannot use this many modalities."""
        n = len(modalities)
        if n < cls.min_modalities or (cls.max_modalities is not None and n > cls.max_modalities):
            raise ValueError(cls.modality_error(n))

    @classmethod
    def modality_error(cls, n: int) -> str:
        return f"model {cls.name} takes {cls.min_modalities}..{cls.max_modalities or 'any'} modalities, got {n}"

    def prepare_training(self, num_groups: int, generator: torch.Generator) -> None:
        """Reset per-run training state (e.g. anchor cyclers); default: nothing."""

    def losses(self, out: dict, batch: Batch, criterion) -> tuple[Tensor, dict[str, Tensor]]:
        ce = criterion(out["logits"], batch.y)
        return ce, {"ce": ce}
