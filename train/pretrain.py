"""MPUC-MER training: contrastive pre-training of the encoders, then the probe (methods.md §2).

:func:`fit` is the ``fit`` of the ``mpuc`` registry entry (same signature as
:func:`mer.train.trainer.fit`); everything after it (metrics, predictions, model.pt,
``mer evaluate``) is the shared run code, because :class:`~mer.train.models.mpuc.MPUC`
is a normal FusionHead whose forward is encoders → features → probe.

Pre-training
  * rows: the TRAINING split only — its labelled and unlabelled rows for the
    ``unsupervised`` loss, its labelled rows for ``supervised`` (SupCon) or with
    ``mpuc.balanced_sampling``; rows with fewer than two present modalities are skipped
    (they are in no pair). Validation and test inputs are never trained on: the original
    trained transductively on CMU-MOSEI's test inputs, mer does not;
  * views (:func:`view_inputs`): per clip and view, ONE random time window of
    ``mpuc.crop_seconds``, cut from every sequence modality at its own frame rate
    (:func:`frame_rates`), as the original cut audio and landmarks at the same frames: view v
    of every modality shows the same moment, which is what makes (m, v) and (n, v) a positive
    pair. The window lies inside what every present modality covers; a clip shorter than the
    window gives, in every modality, the seconds they all cover (length-masked). A pooled
    vector covers the whole clip and is the same vector for both views (V = 1 to the loss),
    standing for both windows in the loss. The windows are drawn and gathered for the whole batch at
    once (index arithmetic, :mod:`mer.train.sequences`); landmarks are normalised per clip once,
    before cropping (:meth:`Branch.clip_frames`), exactly as evaluation's whole clips;
  * loss: :func:`~mer.train.losses.infonce.pairwise_infonce` (τ = ``mpuc.temperature``,
    ``original_quirks``) or :func:`~mer.train.losses.supcon.pairwise_supcon` with the
    class (multi-label: the label-set id) as positives; absent modalities are masked out;
  * optimiser: the original's SGD (lr 1e-3, momentum 0.9, weight decay 1e-3, batch 32:
    ``mpuc.*``) with its StepLR (× ``lr_gamma`` every ``lr_step`` epochs), gradient norm
    clipped to ``train.grad_clip``; class-balanced sampling off by default (it needs labels,
    and an unsupervised objective has no classes to balance);
  * progress: a bar, or with ``--quiet`` one line per ~tenth of the epochs and one per phase;
  * selection (``mpuc.select``): ``val_loss`` — after every epoch the same contrastive loss
    is scored on the VALIDATION split with fixed crops and fixed batches (no labels, no
    gradient: val inputs are only scored), the lowest epoch is kept and training stops after
    ``mpuc.patience`` epochs without improvement; ``none`` — all ``mpuc.pretrain_epochs``.
    The loss was chosen over the probe's validation F1 because it needs no labels (the
    method is unsupervised) and costs one forward pass instead of a probe fit per epoch.

Evaluation: the encoders are frozen, every row is embedded whole (:meth:`MPUC.features`),
and the probe is fitted on the training rows (:mod:`mer.train.probe`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mer.train.data import TrainData
from mer.train.losses.infonce import pairwise_infonce
from mer.train.losses.supcon import pairwise_supcon
from mer.train.models.mpuc import MLPProbe, MPUC
from mer.train.probe import fit_linear_probe, fit_mlp_probe
from mer.train.sequences import Padded, aligned_crops, draw_windows, pad_rows, row_lengths
from mer.train.trainer import (
    EVAL_CHUNK,
    FitResult,
    TrainingError,
    check_select_metric,
    deterministic,
    epoch_order,
    sampling_weights,
)

#: offset of the seed of the fixed validation crops (differs from the training crops' seed)
VAL_SEED_OFFSET = 7919


@dataclass
class PretrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("nan")
    stopped_early: bool = False


# --------------------------------------------------------------------------- batches


def batch_inputs(data: TrainData, idx: Tensor) -> dict[str, Tensor | Padded]:
    """Whole-clip inputs of rows ``idx``: :class:`Padded` for sequences, (B, D)/(B, L, D) for vectors."""
    out = {}
    for m, d in data.modalities.items():
        out[m] = pad_rows(d.values, d.offsets, idx) if d.x is None else d.x[idx]
    return out


def frame_rates(data: TrainData, configured: dict[str, float]) -> dict[str, float]:
    """Frames per second of every sequence modality: ``mpuc.frame_rates``, else the cache's record.

    The log-mel cache records ``hop_seconds``; a cache that records neither it nor ``fps``
    (OpenFace landmarks follow their video's rate) must be given one in ``mpuc.frame_rates``.
    """
    rates = {}  # names of modalities not trained are ignored: one config serves several modality sets
    for m, d in data.modalities.items():
        if d.x is not None:
            continue
        if m in configured:
            rates[m] = float(configured[m])
        elif float(d.attrs.get("hop_seconds", 0) or 0) > 0:
            rates[m] = 1.0 / float(d.attrs["hop_seconds"])
        elif float(d.attrs.get("fps", 0) or 0) > 0:
            rates[m] = float(d.attrs["fps"])
        else:
            raise TrainingError(f"modality {m!r}: its cache ({d.family} {d.cache_key}, output {d.output!r}) does not "
                                "record a frame rate, which MPUC-MER needs to cut every modality at the same "
                                f"seconds; set it: --set train.mpuc.frame_rates.{m}=<frames per second> "
                                "(e.g. 29.97 for OpenFace landmarks of RAVDESS videos)")
    return rates


@dataclass
class ViewSource:
    """What the view builder cuts from: per sequence modality, its frames and frame rate."""

    #: flat frames (F, D) per sequence modality (landmarks: already normalised per clip)
    values: dict[str, Tensor]
    rates: dict[str, float]


def view_source(model: MPUC, data: TrainData, rates: dict[str, float]) -> ViewSource:
    """The frames to crop views from, prepared ONCE per clip (:meth:`Branch.clip_frames`)."""
    values = {m: model.branches[m].clip_frames(d.values, d.offsets) for m, d in data.modalities.items()
              if d.x is None}
    return ViewSource(values, rates)


def clip_duration(data: TrainData, idx: Tensor, rates: dict[str, float]) -> Tensor:
    """(B,) seconds that every present sequence modality of each row covers (0 without any).

    A row with no present sequence gets 0: its windows start at 0 and span one frame, and the
    loss ignores it (absent modalities are masked out there).
    """
    duration = torch.full((len(idx),), float("inf"), device=data.device, dtype=torch.float64)
    for m, rate in rates.items():
        d = data.modalities[m]
        seconds = row_lengths(d.offsets, idx).double() / rate
        duration = torch.where(d.present[idx], torch.minimum(duration, seconds), duration)
    return torch.where(torch.isinf(duration), torch.zeros_like(duration), duration)


def view_inputs(data: TrainData, idx: Tensor, seconds: float, source: ViewSource,
                generator: torch.Generator) -> dict[str, Tensor | Padded]:
    """Two time-aligned views per row: one window of ``seconds`` per view, cut in every modality.

    Sequences give (B, 2, width_m, D) + lengths; vectors (pooled: they cover the whole clip)
    are returned once (B, D) and count as the same vector for both views.
    """
    duration = clip_duration(data, idx, source.rates)
    t0 = draw_windows(duration, seconds, 2, generator)
    span = duration.clamp(max=seconds)  # a clip shorter than the window: its common duration
    out = {}
    for m, d in data.modalities.items():
        if d.x is None:
            out[m] = aligned_crops(source.values[m], d.offsets, idx, t0, span, seconds, source.rates[m])
        else:
            out[m] = d.x[idx]
    return out


def contrastive_loss(model: MPUC, data: TrainData, idx: Tensor, mp, source: ViewSource,
                     generator: torch.Generator) -> Tensor:
    """The pairwise loss of one batch of rows ``idx`` (two fresh aligned views per clip)."""
    views = view_inputs(data, idx, mp.crop_seconds, source, generator)
    present = {m: d.present[idx] for m, d in data.modalities.items()}
    z = model.project_views(views, present, prepared=True)
    if mp.loss == "supervised":
        return pairwise_supcon(z, data.group_y[idx], mp.temperature, mask=present, quirks=mp.original_quirks)
    return pairwise_infonce(z, mp.temperature, quirks=mp.original_quirks, mask=present)


def pretrain_rows(data: TrainData, split: str, labeled_only: bool) -> np.ndarray:
    """Rows of ``split`` that take part in at least one modality pair."""
    rows = data.rows(split, labeled_only=labeled_only)
    if len(rows) == 0:
        return rows
    idx = torch.as_tensor(rows, dtype=torch.long, device=data.device)
    count = sum(d.present[idx].long() for d in data.modalities.values())
    return rows[(count >= 2).cpu().numpy()]


@torch.no_grad()
def validation_loss(model: MPUC, data: TrainData, rows: np.ndarray, mp, seed: int,
                    source: ViewSource | None = None) -> float:
    """Contrastive loss on ``rows`` with the same views and batches every call (eval mode)."""
    source = source or view_source(model, data, frame_rates(data, mp.frame_rates))
    was = model.training
    model.eval()
    gen = torch.Generator(device=data.device).manual_seed(seed + VAL_SEED_OFFSET)
    idx_all = torch.as_tensor(rows, dtype=torch.long, device=data.device)
    total, count = 0.0, 0
    for s in range(0, len(rows), mp.batch_size):
        idx = idx_all[s:s + mp.batch_size]
        if len(idx) < 2:
            continue
        total += float(contrastive_loss(model, data, idx, mp, source, gen)) * len(idx)
        count += len(idx)
    model.train(was)
    return total / max(count, 1)


def make_pretrain_optimizer(model: MPUC, mp) -> torch.optim.Optimizer:
    params = [p for p in model.encoder_parameters() if p.requires_grad]
    if mp.optimizer == "sgd":
        return torch.optim.SGD(params, lr=mp.lr, momentum=mp.momentum, weight_decay=mp.weight_decay)
    return torch.optim.Adam(params, lr=mp.lr, weight_decay=mp.weight_decay)


def make_pretrain_scheduler(optimizer: torch.optim.Optimizer, mp) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The original's StepLR (stepped once per epoch), or None for a constant lr (``lr_step: 0``)."""
    if mp.lr_step <= 0:
        return None
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=mp.lr_step, gamma=mp.lr_gamma)


def progress_block(epochs: int) -> int:
    """Epochs per progress line when there is no progress bar: about ten lines per run."""
    return max(1, math.ceil(epochs / 10))


def describe_views(mp, source: ViewSource) -> str:
    """One line: the window and what it is in each sequence modality's frames."""
    parts = [f"{m} {r:g} fps = {max(int(round(mp.crop_seconds * r)), 1)} frames" for m, r in source.rates.items()]
    return f"views: 2 time-aligned windows of {mp.crop_seconds:g} s" + (f" ({', '.join(parts)})" if parts else "")


def pretrain(model: MPUC, data: TrainData, train, seed: int, progress: bool = True,
             log: Callable[[str], None] | None = None) -> PretrainResult:
    """Contrastive pre-training of ``model``'s encoders on the training split (see module doc)."""
    say = log or (lambda line: None)
    mp = train.mpuc
    labeled_only = mp.loss == "supervised" or mp.balanced_sampling
    rows = pretrain_rows(data, "train", labeled_only)
    if len(rows) < 2:
        raise TrainingError(f"MPUC pre-training needs at least 2 training rows with two or more present "
                            f"modalities, got {len(rows)}")
    val_rows = pretrain_rows(data, "val", labeled_only) if mp.select == "val_loss" else np.zeros(0, np.int64)
    select = mp.select == "val_loss" and len(val_rows) >= 2
    if mp.select == "val_loss" and not select:
        say("MPUC pre-training: fewer than 2 validation rows with two modalities: no early stopping, "
            f"all {mp.pretrain_epochs} epochs run")
    order_gen = torch.Generator().manual_seed(seed)
    crop_gen = torch.Generator(device=data.device).manual_seed(seed)
    weights = sampling_weights(data, rows) if mp.balanced_sampling else None
    train_idx = torch.as_tensor(rows, dtype=torch.long, device=data.device)
    optimizer = make_pretrain_optimizer(model, mp)
    scheduler = make_pretrain_scheduler(optimizer, mp)
    source = view_source(model, data, frame_rates(data, mp.frame_rates))
    n = len(rows)
    block = progress_block(mp.pretrain_epochs)
    say(f"MPUC pre-training seed {seed}: {n} training rows"
        + (f", {len(val_rows)} validation rows (early stop on their contrastive loss)" if select else "")
        + f", {mp.pretrain_epochs} epochs max; {describe_views(mp, source)}")
    started = time.perf_counter()

    result = PretrainResult()
    best_state = None
    waited = 0
    bar = tqdm(range(1, mp.pretrain_epochs + 1), desc=f"pretrain mpuc seed {seed}", unit="epoch",
               disable=not progress, leave=False)
    with deterministic():
        for epoch in bar:
            model.train()
            order = epoch_order(n, order_gen, weights).to(data.device)
            total, batches = torch.zeros((), device=data.device), 0
            for s in range(0, n, mp.batch_size):
                idx = train_idx[order[s:s + mp.batch_size]]
                if len(idx) < 2:  # a lone sample has no negative
                    continue
                loss = contrastive_loss(model, data, idx, mp, source, crop_gen)
                if not torch.isfinite(loss):
                    raise TrainingError(f"MPUC pre-training: non-finite contrastive loss at epoch {epoch} "
                                        f"(lr {mp.lr}); lower mpuc.lr or check the training features")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if train.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.encoder_parameters(), train.grad_clip)
                optimizer.step()
                total += loss.detach()
                batches += 1
            row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "loss": float(total) / max(batches, 1)}
            if scheduler is not None:
                scheduler.step()
            if select:
                row["val_loss"] = validation_loss(model, data, val_rows, mp, seed, source)
                if not math.isfinite(row["val_loss"]):
                    raise TrainingError(f"MPUC pre-training: the validation contrastive loss is not finite at "
                                        f"epoch {epoch}; check the validation split's features "
                                        "(or set mpuc.select: none)")
            result.history.append(row)
            if not select:  # no selection: the last epoch is the result
                result.best_epoch, result.best_val_loss = epoch, float("nan")
            elif result.best_epoch == 0 or row["val_loss"] < result.best_val_loss:
                result.best_epoch, result.best_val_loss = epoch, row["val_loss"]
                best_state = copy.deepcopy(model.branches.state_dict())
                waited = 0
            else:
                waited += 1
            bar.set_postfix(loss=f"{row['loss']:.4f}", **({"val_loss": f"{row['val_loss']:.4f}"} if select else {}))
            if not progress and (epoch % block == 0 or epoch == mp.pretrain_epochs):
                say(f"MPUC pre-training seed {seed}: epoch {epoch}/{mp.pretrain_epochs}, loss {row['loss']:.4f}"
                    + (f", val_loss {row['val_loss']:.4f} (best {result.best_val_loss:.4f} at epoch "
                       f"{result.best_epoch})" if select else "")
                    + f", lr {row['lr']:.3g}, {time.perf_counter() - started:.0f} s")
            if select and waited >= mp.patience:
                result.stopped_early = True
                say(f"MPUC pre-training: early stop at epoch {epoch}: no validation-loss gain for {mp.patience} epochs")
                break
    bar.close()
    if select and best_state is not None:
        model.branches.load_state_dict(best_state)
        say(f"MPUC pre-training: best epoch {result.best_epoch}, validation contrastive loss {result.best_val_loss:.4f}")
    return result


# --------------------------------------------------------------------------- probe


@torch.no_grad()
def embed(model: MPUC, data: TrainData, rows: np.ndarray) -> np.ndarray:
    """(len(rows), M·dim + M) frozen features of host rows ``rows`` (float64, host)."""
    was = model.training
    model.eval()
    out = []
    for s in range(0, len(rows), EVAL_CHUNK):
        idx = torch.as_tensor(rows[s:s + EVAL_CHUNK], dtype=torch.long, device=data.device)
        present = {m: d.present[idx] for m, d in data.modalities.items()}
        out.append(model.features(batch_inputs(data, idx), present).double().cpu().numpy())
    model.train(was)
    width = len(model.modalities) * (model.dim + 1)
    return np.concatenate(out) if out else np.zeros((0, width))


def fit_probe(model: MPUC, data: TrainData, train, seed: int, device: torch.device):
    """Freeze the encoders, embed train/val, fit the probe on train (chosen on val)."""
    for p in model.branches.parameters():
        p.requires_grad_(False)
    tr, va = data.rows("train"), data.rows("val")
    f_train, f_val = embed(model, data, tr), embed(model, data, va)
    y_all = data.y.cpu().numpy()
    y_train, y_val = y_all[tr], y_all[va]
    if isinstance(model.probe, MLPProbe):
        return fit_mlp_probe(model.probe, f_train, y_train, f_val, y_val, data.classes, data.multilabel,
                             train, seed, device)
    return fit_linear_probe(model.probe, f_train, y_train, f_val, y_val, data.classes, data.multilabel,
                            list(train.mpuc.probe_c), train.select_metric,
                            balanced=train.class_weights == "inverse", seed=seed)


def fit_mpuc(model: MPUC, data: TrainData, train, seed: int, device: torch.device | None = None,
        progress: bool = True, log: Callable[[str], None] | None = None) -> FitResult:
    """The ``mpuc`` registry entry's fit: pre-train the encoders, then fit the probe."""
    say = log or (lambda line: None)
    check_select_metric(train.select_metric, data.multilabel)
    if not isinstance(model, MPUC):
        raise TypeError(f"mer.train.pretrain.fit_mpuc trains MPUC models, got {type(model).__name__}")
    for m, d in data.modalities.items():
        if "mean" in d.stats and "std" in d.stats and d.stats["mean"].size == model.branches[m].dim_in:
            model.branches[m].set_input_stats(torch.as_tensor(d.stats["mean"]), torch.as_tensor(d.stats["std"]))
    say("MPUC encoders: " + ", ".join(f"{m}: {k}" for m, k in model.kinds.items()))
    pre = pretrain(model, data, train, seed, progress, say)
    say(f"MPUC probe ({train.mpuc.probe}): embedding {len(data.rows('train'))} training and "
        f"{len(data.rows('val'))} validation rows with the frozen encoders")
    probe = fit_probe(model, data, train, seed, device or data.device)
    model.eval()
    if probe.kind == "linear":
        grid = ", ".join(f"C={c:g}: {s:.4f}" for c, s in probe.scores.items())
        say(f"MPUC linear probe: C = {probe.chosen:g} (val {train.select_metric} {probe.val_score:.4f}; {grid})")
    else:
        say(f"MPUC MLP probe: best epoch {int(probe.chosen)} (val {train.select_metric} {probe.val_score:.4f})")
    history = [dict(row) for row in pre.history]
    return FitResult(history=history, best_epoch=pre.best_epoch, best_score=probe.val_score,
                     stopped_early=pre.stopped_early)
