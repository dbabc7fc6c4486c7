"""The ``train`` section of a config: what to train over the cached features, and how."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class LmrConfig:
    """LMR-CL (../shared/docs/methods.md §1). Every loss weight may be 0 (term disabled)."""

    hidden: int = 256
    lambda_diff: float = 0.1
    lambda_cmd: float = 0.1
    lambda_iamc: float = 0.1
    lambda_iemc: float = 0.1
    #: weight of the auxiliary per-modality CE terms (1.0 in the original)
    lambda_aux: float = 1.0
    #: all: every sample with a same-class partner is an anchor (vectorised); single: the original rule
    anchors: Literal["all", "single"] = "all"
    dropout: float = 0.1


@dataclass
class MpucConfig:
    """MPUC-MER (../shared/docs/methods.md §2)."""

    dim: int = 512
    temperature: float = 0.07
    loss: Literal["unsupervised", "supervised"] = "unsupervised"
    #: reproduce the original code's quirks (masked same-view entry, loss × 1/2)
    original_quirks: bool = False
    #: temporal crop length (frames) of each of the two views of a sequence
    crop: int = 90
    pretrain_epochs: int = 100
    #: linear: logistic-regression probe (the paper's protocol); mlp: the original 2-layer MLP
    probe: Literal["linear", "mlp"] = "linear"


@dataclass
class TrainConfig:
    #: lmr | mpuc | unimodal | concat | late
    model: Literal["lmr", "mpuc", "unimodal", "concat", "late"] = "lmr"
    #: modality names (keys of ``features``); empty = all of them
    modalities: list[str] = field(default_factory=list)
    #: target column: ``label`` or a multi-label encoding (``label`` with ``;``-joined classes)
    target: str = "label"
    #: class names in order; empty = sorted labels found in the training split
    classes: list[str] = field(default_factory=list)
    multilabel: bool = False
    #: for all-layer caches: last | <k> | weighted (learned softmax over layers, as SUPERB)
    layer: str = "last"
    epochs: int = 100
    batch_size: int = 256
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: Literal["none", "cosine", "step"] = "none"
    grad_clip: float = 5.0
    #: inverse: w_c = N / (C · n_c) ("balanced", as scikit-learn); none: all 1
    class_weights: Literal["inverse", "none"] = "inverse"
    balanced_sampling: bool = False
    #: early stopping on this validation metric (never on test)
    select_metric: str = "macro_f1"
    patience: int = 20
    hidden: int = 256
    dropout: float = 0.1
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    lmr: LmrConfig = field(default_factory=LmrConfig)
    mpuc: MpucConfig = field(default_factory=MpucConfig)
