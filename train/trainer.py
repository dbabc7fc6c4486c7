"""The supervised training loop shared by every FusionHead (LMR-CL and the baselines).

* batches are index slices of a seeded ``torch.randperm`` over the on-device training rows
  (or, with ``balanced_sampling``, a seeded ``torch.multinomial`` draw with inverse-frequency
  weights, N draws with replacement per epoch);
* Adam or SGD with momentum; lr schedule none | cosine (over ``epochs``) | step; the gradient
  norm is clipped to ``grad_clip`` (0 = off);
* class-weighted loss (:mod:`mer.train.criterion`; weights from the training split);
* after every epoch the validation split is scored; the best epoch by ``select_metric``
  (strictly better, so the earliest of equal scores wins) is kept, training stops after
  ``patience`` epochs without improvement, and the best weights are restored. The test
  split is never looked at here;
* determinism: :func:`seed_everything` seeds python, numpy and torch, and the loop runs with
  ``torch.use_deterministic_algorithms(True, warn_only=True)``, so on CPU the same seed and
  data give bit-identical weights and metrics.
"""

from __future__ import annotations

import contextlib
import copy
import math
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mer.train.criterion import Criterion
from mer.train.data import TrainData
from mer.train.errors import TrainingError
from mer.train.metrics import SELECTABLE, compute_metrics, fast_metrics
from mer.train.modality_dropout import drop_modalities

#: rows per forward pass when scoring a split (fixed, so that training-time and
#: ``mer evaluate`` predictions go through identical batch shapes: bit-identical outputs)
EVAL_CHUNK = 1024


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = float("nan")
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` for the block, then restore."""
    before = torch.are_deterministic_algorithms_enabled()
    before_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def make_criterion(data: TrainData, mode: str) -> Criterion:
    rows = data.rows("train")
    if len(rows) == 0:
        raise TrainingError("the training split has no labelled sample")
    y = data.y[torch.as_tensor(rows, device=data.device)].cpu().numpy()
    return Criterion.from_training(y, data.num_classes, data.multilabel, mode, data.device, data.classes)


def make_optimizer(model: nn.Module, train) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if train.optimizer == "sgd":
        return torch.optim.SGD(params, lr=train.lr, momentum=train.momentum, weight_decay=train.weight_decay)
    return torch.optim.Adam(params, lr=train.lr, weight_decay=train.weight_decay, fused=True)


def make_scheduler(optimizer: torch.optim.Optimizer, train):
    if train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(train.epochs, 1))
    if train.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(train.step_size, 1), gamma=train.step_gamma)
    return None


def sampling_weights(data: TrainData, rows: np.ndarray) -> torch.Tensor:
    """Per training row 1 / n(its class) (multi-label: of its exact label set), on the CPU."""
    groups = data.group_y[torch.as_tensor(rows, device=data.device)].cpu()
    counts = torch.bincount(groups, minlength=max(data.num_groups, 1)).to(torch.float64)
    return 1.0 / counts[groups]


def epoch_order(n: int, generator: torch.Generator, weights: torch.Tensor | None) -> torch.Tensor:
    """Positions into the training rows for one epoch (CPU, seeded)."""
    if weights is None:
        return torch.randperm(n, generator=generator)
    return torch.multinomial(weights, n, replacement=True, generator=generator)


@torch.no_grad()
def predict_rows(model: nn.Module, data: TrainData, rows: np.ndarray,
                 criterion: Criterion) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, C), predictions (n,) or (n, C)) for host row indices ``rows``."""
    was_training = model.training
    model.eval()
    probs, preds = [], []
    for start in range(0, len(rows), EVAL_CHUNK):
        idx = torch.as_tensor(rows[start:start + EVAL_CHUNK], dtype=torch.long, device=data.device)
        batch = data.batch(idx)
        logits = model(batch.x, batch.present)["logits"].float()
        probs.append(criterion.probabilities(logits).cpu().numpy())
        preds.append(criterion.predict(logits).cpu().numpy())
    model.train(was_training)
    c = data.num_classes
    if not probs:
        return np.zeros((0, c), np.float32), np.zeros((0, c) if data.multilabel else (0,), np.int64)
    return np.concatenate(probs), np.concatenate(preds)


def true_labels(data: TrainData, rows: np.ndarray) -> np.ndarray:
    return data.y[torch.as_tensor(rows, dtype=torch.long, device=data.device)].cpu().numpy()


def score_split(model: nn.Module, data: TrainData, split: str, criterion: Criterion, fast: bool = False) -> dict:
    """Metrics of ``split`` (its labelled rows); ``fast``: the scalar metrics only, with numpy
    (every epoch), else the full scikit-learn metrics (reports, confusion)."""
    rows = data.rows(split)
    _, pred = predict_rows(model, data, rows, criterion)
    if fast:
        return fast_metrics(true_labels(data, rows), pred, data.num_classes, data.multilabel)
    return compute_metrics(true_labels(data, rows), pred, data.classes, data.multilabel, split)


#: without a progress bar, one line per this many epochs: a sign of life, not a flood
EPOCH_BLOCK = 10


def check_select_metric(name: str, multilabel: bool) -> None:
    allowed = [m for m in SELECTABLE if multilabel or m != "wa"]
    if name not in allowed:
        raise TrainingError(f"train.select_metric {name!r} is not one of {allowed}")


def fit(model: nn.Module, data: TrainData, train, seed: int, device: torch.device | None = None,
        progress: bool = True, log: Callable[[str], None] | None = None) -> FitResult:
    """Train ``model`` on ``data``'s training rows; keep the best validation epoch (see module doc)."""
    say = log or (lambda line: None)
    check_select_metric(train.select_metric, data.multilabel)
    train_rows = data.rows("train")
    if len(data.rows("val")) == 0:
        raise TrainingError("the validation split has no labelled sample: early stopping needs one "
                            "(add 'val' rows or let mer carve them: leave 'val' out of the manifest)")
    criterion = make_criterion(data, train.class_weights)
    generator = torch.Generator().manual_seed(seed)
    # a separate stream, so that turning modality dropout on leaves the batch order unchanged
    hiding = torch.Generator().manual_seed(seed + 7919)
    model.prepare_training(data.num_groups, generator)
    optimizer = make_optimizer(model, train)
    scheduler = make_scheduler(optimizer, train)
    weights = sampling_weights(data, train_rows) if train.balanced_sampling else None
    train_idx = torch.as_tensor(train_rows, dtype=torch.long, device=data.device)
    n = len(train_rows)

    result = FitResult()
    best_state = copy.deepcopy(model.state_dict())
    waited = 0
    bar = tqdm(range(1, train.epochs + 1), desc=f"train {type(model).__name__} seed {seed}", unit="epoch",
               disable=None if progress else True, leave=False)  # None: shown on a terminal only
    with deterministic():
        for epoch in bar:
            model.train()
            order = epoch_order(n, generator, weights).to(data.device)
            sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), device=data.device))
            batches = 0
            for start in range(0, n, train.batch_size):
                batch = data.batch(train_idx[order[start:start + train.batch_size]])
                if train.modality_dropout > 0:
                    batch = drop_modalities(batch, train.modality_dropout, hiding)
                out = model(batch.x, batch.present)
                total, parts = model.losses(out, batch, criterion)
                if not torch.isfinite(total):
                    shown = {k: float(v) for k, v in parts.items()}
                    raise TrainingError(f"non-finite loss at epoch {epoch}: {shown} (lr {train.lr}); "
                                        "lower train.lr or check the features")
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if train.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
                optimizer.step()
                sums["loss"] += total.detach()
                for k, v in parts.items():
                    sums[f"loss_{k}"] += v.detach()
                batches += 1
            row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
            row.update({k: float(v) / max(batches, 1) for k, v in sums.items()})
            if scheduler is not None:
                scheduler.step()
            val = score_split(model, data, "val", criterion, fast=True)
            row.update({f"val_{k}": v for k, v in val.items() if isinstance(v, float)})
            result.history.append(row)
            score = val[train.select_metric]
            if result.best_epoch == 0 or (math.isfinite(score) and score > result.best_score):
                result.best_epoch, result.best_score = epoch, score
                best_state = copy.deepcopy(model.state_dict())
                waited = 0
            else:
                waited += 1
            bar.set_postfix(loss=f"{row['loss']:.4f}", **{train.select_metric: f"{score:.4f}"})
            if bar.disable and epoch % EPOCH_BLOCK == 0:  # no bar on screen (--quiet, or not a terminal)
                say(f"epoch {epoch}/{train.epochs}: loss {row['loss']:.4f}, val {train.select_metric} {score:.4f} "
                    f"(best {result.best_score:.4f} at epoch {result.best_epoch})")
            if waited >= train.patience:
                result.stopped_early = True
                say(f"early stop at epoch {epoch}: no {train.select_metric} gain for {train.patience} epochs")
                break
    bar.close()
    model.load_state_dict(best_state)
    say(f"best epoch {result.best_epoch}: val {train.select_metric} = {result.best_score:.4f}")
    return result
