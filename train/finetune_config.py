"""The ``finetune`` section of a config: end-to-end fine-tuning of one Hugging Face encoder.

``mer finetune`` trains the top ``unfreeze_top`` transformer layers of the encoder named by
``features.<modality>`` together with a ``mer train unimodal`` head, on raw inputs (text or
waveforms), then writes the fine-tuned encoder as a folder ``mer extract`` accepts as
``features.<modality>.model``. The head's width and dropout are ``train.hidden`` /
``train.dropout`` (the same head a ``mer train`` unimodal run builds, so ``warm_start`` can
load one), the classes and splits follow ``train.classes`` / ``train.split_column``.

This module only declares the options (no torch import: config parsing imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: metrics fine-tuning may select on (validation split only)
FINETUNE_SELECTABLE = ("accuracy", "uar", "macro_f1", "weighted_f1", "wa")


@dataclass
class FinetuneConfig:
    #: key of ``features`` to fine-tune (an hf-text or hf-audio encoder); empty = the only such key
    modality: str = ""
    #: top transformer layers trained (0 = head only); see mer.train.finetune_model for what else
    unfreeze_top: int = 2
    #: weighted_ce: class-weighted CE (weights N / (C·n_c) from the training split);
    #: soft_f1: 1 − soft macro-F1 over the batch (the LMR-CL text recipe)
    loss: Literal["weighted_ce", "soft_f1"] = "weighted_ce"
    lr_encoder: float = 2e-5
    lr_head: float = 1e-3
    #: AdamW decoupled weight decay (not applied to biases and norm weights)
    weight_decay: float = 0.01
    #: lr schedule over all optimizer steps, after ``warmup`` (a fraction of them) of linear warm-up
    schedule: Literal["none", "linear", "cosine"] = "linear"
    warmup: float = 0.1
    epochs: int = 10
    #: samples per batch (at most; length bucketing may make batches smaller)
    batch_size: int = 16
    #: batches whose gradients are summed before one optimizer step
    grad_accum: int = 1
    #: gradient-norm clip over the trainable parameters (0 = off)
    grad_clip: float = 1.0
    #: write <run>/checkpoint.pt every N optimizer steps (and after every epoch); 0 = epochs only
    checkpoint_every: int = 100
    #: mixed precision on CUDA (fp16 uses a GradScaler); ignored on CPU
    autocast: Literal["none", "bf16", "fp16"] = "none"
    #: recompute the trainable layers' activations in the backward pass (less memory, ~30 % slower)
    gradient_checkpointing: bool = False
    #: a ``mer train`` run folder (unimodal on the same modality/encoder) whose head and
    #: standardisation statistics initialise the head; empty = a fresh head
    warm_start: str = ""
    #: early stopping / model selection on this VALIDATION metric (never test)
    select_metric: str = "macro_f1"
    #: epochs without improvement before stopping
    patience: int = 3
    #: text: padded tokens per batch (items × longest), the length-bucketing budget
    max_tokens: int = 4096
    #: speech: padded seconds per batch (items × longest clip)
    max_seconds: float = 160.0
    seed: int = 0
    #: auto | cpu | cuda | cuda:1
    device: str = "auto"
    #: threads that decode/preprocess the next batch while the model works (0 = inline)
    io_threads: int = 2

    def __post_init__(self) -> None:
        if self.unfreeze_top < 0:
            raise ValueError(f"unfreeze_top must be >= 0, got {self.unfreeze_top}")
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("epochs, batch_size and grad_accum must be >= 1")
        if self.checkpoint_every < 0 or self.patience < 1:
            raise ValueError("checkpoint_every must be >= 0 and patience >= 1")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup is a fraction of the optimizer steps in [0, 1), got {self.warmup}")
        if self.lr_encoder < 0 or self.lr_head <= 0:
            raise ValueError("lr_encoder must be >= 0 and lr_head > 0")
        if self.max_tokens < 1 or self.max_seconds <= 0:
            raise ValueError("max_tokens must be >= 1 and max_seconds > 0")
        if self.select_metric not in FINETUNE_SELECTABLE:
            raise ValueError(f"select_metric {self.select_metric!r} is not one of {list(FINETUNE_SELECTABLE)}")
        if self.io_threads < 0:
            raise ValueError("io_threads must be >= 0")
