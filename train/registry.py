"""Models by name: the one dispatch point of ``train.model``.

An entry names the module and class of the model (imported lazily) and the function that
trains it. Supervised heads (:class:`~mer.train.models.common.FusionHead`) use the shared
loop :func:`mer.train.trainer.fit`; a model with its own procedure (MPUC-MER: contrastive
pre-training, then a probe) registers its own ``fit`` with the same signature::

    fit(model, data: TrainData, train: TrainConfig, seed: int, device: torch.device,
        progress: bool = True) -> FitResult

and everything after training (predictions, metrics, plots, model.pt, ``mer evaluate``)
is shared, as long as the model follows the FusionHead contract: JSON-able init kwargs
from ``from_config(train, inputs, num_classes)`` and ``forward(x, present) -> {"logits": ...}``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ModelEntry:
    #: "package.module:Class"
    model: str
    #: "package.module:function" that trains it
    fit: str = "mer.train.trainer:fit"
    #: the model reads sequence caches (Ragged) rather than vectors
    sequences: bool = False


MODELS: dict[str, ModelEntry] = {
    "lmr": ModelEntry("mer.train.models.lmr:LMR"),
    "unimodal": ModelEntry("mer.train.models.unimodal:Unimodal"),
    "concat": ModelEntry("mer.train.models.concat:Concat"),
    "late": ModelEntry("mer.train.models.late:Late"),
    # logistic regression on the pooled modalities, fitted by scikit-learn, C chosen on validation
    "linear": ModelEntry("mer.train.models.linear:Linear", fit="mer.train.linear:fit"),
    # MPUC-MER: contrastive pre-training of per-modality encoders over sequences, then a probe
    "mpuc": ModelEntry("mer.train.models.mpuc:MPUC", fit="mer.train.pretrain:fit_mpuc", sequences=True),
}


def _resolve(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def model_class(name: str) -> type:
    return _resolve(entry(name).model)


def fit_function(name: str) -> Callable:
    return _resolve(entry(name).fit)


def register(name: str, model: str, fit: str = "mer.train.trainer:fit", sequences: bool = False) -> None:
    """Add a model (e.g. from a plug-in); same form as the built-in entries."""
    MODELS[name] = ModelEntry(model, fit, sequences)
