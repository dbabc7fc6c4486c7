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
    #: per-modality branch MLP before the aux head and the projection: identity | bio | audio.
    #: Unset modalities follow their encoder family (mer.train.models.lmr.default_branch):
    #: hf-text → identity (as the original text branch), e4 → bio (D→150→200→304),
    #: everything else (hf-audio, egemaps, logmel, landmarks, ...) → audio (D→512→1024).
    branch: dict[str, str] = field(default_factory=dict)
    #: the Attn block of the private/shared encoders (methods.md §1); the defaults are the paper's
    tokens: int = 32
    layers: int = 3
    heads: int = 4
    ffn: int = 1024
    #: a LayerNorm after the Attn block's Transformer layers, as the original code has; methods.md
    #: (the paper's description) has none, so mer's default follows the spec
    attn_final_norm: bool = False


#: encoders MPUC-MER can train per modality (mpuc.encoders values)
MPUC_ENCODERS = ("tcn", "stgcn", "transformer", "mlp")


@dataclass
class MpucConfig:
    """MPUC-MER (../shared/docs/methods.md §2)."""

    dim: int = 512
    temperature: float = 0.07
    loss: Literal["unsupervised", "supervised"] = "unsupervised"
    #: reproduce the original code's loss: its positive is the partner modality's OTHER time
    #: window, the same window is masked out, and the loss is × 1/2 (supervised: its labelled
    #: loss, same-window entry masked, 1/(|P|+1)); see mer.train.losses.infonce / .supcon
    original_quirks: bool = False
    #: length in SECONDS of each view's time window; one window per view is drawn per clip and
    #: cut from every sequence modality at its own frame rate (the original: 90 frames of
    #: 30 fps = 3.0 s on RAVDESS, 30 frames = 1.0 s on CMU-MOSEI)
    crop_seconds: float = 3.0
    #: frames per second of sequence modalities whose cache does not record it (the log-mel
    #: cache records its hop; OpenFace landmarks follow the video, e.g. {face: 29.97})
    frame_rates: dict[str, float] = field(default_factory=dict)
    pretrain_epochs: int = 100
    #: linear: logistic-regression probe (the paper's protocol); mlp: the original 2-layer MLP
    probe: Literal["linear", "mlp"] = "linear"
    #: per-modality encoder override (tcn | stgcn | transformer | mlp); unset modalities follow
    #: the cache's output shape (mer.train.models.mpuc.choose_encoder): ragged (128,) → tcn,
    #: ragged (51, 2) or (68, 2) → stgcn, other ragged (D,) → transformer, fixed (D,) → mlp
    encoders: dict[str, str] = field(default_factory=dict)
    #: pre-training optimiser; the defaults are the original's (SGD, lr 1e-3, momentum 0.9,
    #: weight decay 1e-3, batch 32). ``train.lr`` etc. apply to the supervised heads only.
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-3
    batch_size: int = 32
    #: the original's StepLR schedule of the pre-training lr: × lr_gamma every lr_step epochs
    #: (0 = constant lr); the original: step 100 on RAVDESS, 5 on CMU-MOSEI, gamma 0.9
    lr_step: int = 100
    lr_gamma: float = 0.9
    #: class-balanced pre-training batches (uses training labels; the original did this)
    balanced_sampling: bool = False
    #: early stopping of pre-training: val_loss = the validation split's contrastive loss on
    #: fixed random crops (no labels; val inputs are only scored, never trained on); none = all epochs
    select: Literal["val_loss", "none"] = "val_loss"
    patience: int = 20
    #: inverse regularisation strengths tried for the linear probe (chosen on validation)
    probe_c: list[float] = field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0])
    #: hidden width of the ``mlp`` probe (trained with train.lr/epochs/patience/dropout)
    probe_hidden: int = 256
    #: encoder widths: TCN bottleneck/hidden channels, ST-GCN block channels, Transformer d_model
    tcn_channels: int = 64
    tcn_hidden: int = 128
    stgcn_channels: list[int] = field(default_factory=lambda: [64, 128])
    #: ST-GCN adjacency normalisation: paper = D^-1/2 (A + I) D^-1/2 (methods.md); original =
    #: the original code's A + 2I (its adjacency file already held the self loops and
    #: get_normalized_adj added I again)
    stgcn_adjacency: Literal["paper", "original"] = "paper"
    transformer_dim: int = 128
    transformer_layers: int = 2
    dropout: float = 0.1

    #: keys of older configs, with what replaced them (config_schema.from_dict raises this)
    RETIRED_KEYS = {"crop": "mpuc.crop counted frames of each modality separately; views are now one time "
                            "window in seconds for every modality: set mpuc.crop_seconds = frames / frame rate "
                            "(90 frames at 30 fps = 3.0)"}

    def __post_init__(self) -> None:
        bad = {m: e for m, e in self.encoders.items() if e not in MPUC_ENCODERS}
        if bad:
            raise ValueError(f"mpuc.encoders: unknown encoder(s) {bad}; choose from {list(MPUC_ENCODERS)}")
        if not self.crop_seconds > 0:
            raise ValueError(f"mpuc.crop_seconds must be > 0, got {self.crop_seconds}")
        bad_rates = {m: r for m, r in self.frame_rates.items() if not r > 0}
        if bad_rates:
            raise ValueError(f"mpuc.frame_rates must be > 0 frames per second, got {bad_rates}")
        if self.lr_step < 0 or not 0 < self.lr_gamma <= 1:
            raise ValueError(f"mpuc.lr_step must be >= 0 and mpuc.lr_gamma in (0, 1], got {self.lr_step}, {self.lr_gamma}")
        if self.batch_size < 2:
            raise ValueError(f"mpuc.batch_size must be >= 2 (a contrastive batch needs negatives), got {self.batch_size}")
        if not self.probe_c or any(c <= 0 for c in self.probe_c):
            raise ValueError(f"mpuc.probe_c must be a non-empty list of positive numbers, got {self.probe_c}")


#: inverse regularisation strengths of the ``linear`` model: 13 log-spaced values, 1e-4 .. 1e2
LINEAR_C = [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]


@dataclass
class LinearConfig:
    """The ``linear`` model (mer.train.linear): logistic regression, C chosen on validation."""

    #: C values tried (each fitted on train, scored on val by ``train.select_metric``); the grid
    #: spans 6 decades because the best C scales with the feature count: a few thousand
    #: ComParE functionals want far stronger regularisation than 88 eGeMAPS values
    c: list[float] = field(default_factory=lambda: list(LINEAR_C))

    def __post_init__(self) -> None:
        if not self.c or any(not c > 0 for c in self.c) or len(set(self.c)) != len(self.c):
            raise ValueError(f"train.linear.c must be a non-empty list of distinct positive numbers, got {self.c}")


@dataclass
class TrainConfig:
    #: lmr | mpuc | unimodal | concat | late | linear
    model: Literal["lmr", "mpuc", "unimodal", "concat", "late", "linear"] = "lmr"
    #: modality names (keys of ``features``); empty = all of them
    modalities: list[str] = field(default_factory=list)
    #: target column: ``label`` or a multi-label encoding (``label`` with ``;``-joined classes)
    target: str = "label"
    #: manifest column holding train/val/test (``split`` or an alternative protocol ``fold_<k>``)
    split_column: str = "split"
    #: when the corpus has no ``val`` split: the fraction of TRAINING groups carved off as val
    val_fraction: float = 0.15
    #: seed of that carving (fixed across training seeds, so every seed sees the same val split)
    split_seed: int = 0
    #: per-modality cache output to train on (e.g. ``{audio: layers}``); unset = the encoder's
    #: first fixed-size float output, else its first sequence output (mean-pooled over time)
    inputs: dict[str, str] = field(default_factory=dict)
    #: class names in order; empty = sorted labels found in the training split
    classes: list[str] = field(default_factory=list)
    multilabel: bool = False
    #: for all-layer caches: last | <k> | weighted (learned softmax over layers, as SUPERB);
    #: k = a hidden-state index among the cache's ``layers`` attribute (e.g. 8 of [4, 8, 12]),
    #: a negative k counts from the end (mer.train.data.resolve_layer)
    layer: str | int = "last"
    #: epochs, batch_size, lr and patience: chosen on VALIDATION for corpora of a few hundred to a
    #: few thousand samples (README "Baselines"; bench/ravdess_cv.py --study defaults): at
    #: lr 1e-4 with batch 256 a small corpus gets a couple of steps per epoch and stops under-trained
    epochs: int = 300
    batch_size: int = 32
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: Literal["none", "cosine", "step"] = "none"
    #: ``step`` schedule: multiply the lr by ``step_gamma`` every ``step_size`` epochs
    step_size: int = 30
    step_gamma: float = 0.1
    grad_clip: float = 5.0
    #: inverse: w_c = N / (C · n_c) ("balanced", as scikit-learn); none: all 1
    class_weights: Literal["inverse", "none"] = "inverse"
    balanced_sampling: bool = False
    #: early stopping on this validation metric (never on test)
    select_metric: str = "macro_f1"
    patience: int = 30
    hidden: int = 256
    dropout: float = 0.1
    #: probability of hiding each pooled modality of each training sample (ModDrop; see
    #: mer.train.modality_dropout); 0 = off. Evaluation never hides anything.
    modality_dropout: float = 0.0
    seeds: list[int] = field(default_factory=lambda: [0])
    #: write confusion.png and curves.png into each run folder (drawing costs a noticeable share of a
    #: small head's run, bench/README.md; off for big ablations)
    plots: bool = True
    device: str = "auto"
    lmr: LmrConfig = field(default_factory=LmrConfig)
    mpuc: MpucConfig = field(default_factory=MpucConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)

    def __post_init__(self) -> None:
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"train.modality_dropout must be in [0, 1), got {self.modality_dropout}")
