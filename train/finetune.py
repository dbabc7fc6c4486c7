"""``mer finetune``: train the top layers of one Hugging Face encoder end to end, resumably.

Frozen features are the fast path; LMR-CL's published numbers came from fine-tuned
encoders (KoELECTRA with a soft macro-F1 loss, the top two layers of the Korean XLS-R with
weighted CE). This stage does that inside the tool, on the same manifests:

1. the hf-text / hf-audio encoder of ``features.<modality>`` loads the model as extraction
   does; the top ``finetune.unfreeze_top`` layers become trainable
   (:mod:`mer.train.finetune_model` says exactly which modules, per architecture);
2. the head is a ``mer train unimodal`` head over the standardised pooled output (statistics
   fitted on the training split with the un-tuned encoder, or taken with the head from a
   ``warm_start`` run);
3. AdamW with separate encoder/head learning rates, warm-up + linear/cosine decay,
   gradient accumulation, gradient clipping, CUDA autocast (GradScaler for fp16) and
   gradient checkpointing on request; batches are length buckets (tokens or seconds),
   shuffled at the batch level each epoch by a seeded generator;
4. after every epoch the VALIDATION split is scored; the best epoch by
   ``finetune.select_metric`` is kept, ``patience`` epochs without gain stop the run;
5. ``<run>/checkpoint.pt`` is written atomically every ``checkpoint_every`` optimizer steps
   and after every epoch; it holds everything a step depends on (trainable weights,
   optimizer, scheduler, scaler, the torch/numpy/python RNGs and the batch-order
   generator, the epoch, the position inside it and that epoch's batch order, the running
   loss sums, the best state and the history), so killing the run and re-running the same
   command continues from it and ends in the same state as an uninterrupted run
   (bitwise on CPU);
6. outputs: the best encoder via ``save_pretrained`` (+ tokenizer / feature extractor) in
   ``<run>/encoder/``, a folder ``mer extract`` accepts as ``features.<modality>.model``,
   and the files of a ``mer train`` run (config.yaml, metrics.json, predictions.csv,
   history.csv, confusion.png, curves.png, model.pt, log.txt), so ``mer evaluate RUN_DIR``
   works on it (re-running the fine-tuned encoder on raw inputs).
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from mer import __version__
from mer.features.base import Encoder, stable_hash
from mer.features.batching import BatchPolicy
from mer.features.device import grad_scaler, resolve_device, rng_state, set_rng_state
from mer.features.registry import build_encoder, options_class
from mer.pipeline.adapters.base import Protocol
from mer.pipeline.config_schema import from_dict, to_dict
from mer.pipeline.manifest import Manifest
from mer.train.config import TrainConfig
from mer.train.criterion import Criterion
from mer.train.data import fit_stats
from mer.train.errors import DataError, TrainingError
from mer.train.finetune_config import FinetuneConfig
from mer.train.finetune_data import (
    Feeder,
    FinetuneData,
    batch_policy,
    encoder_options_for,
    hf_parts,
    load_finetune_data,
    make_row_batches,
)
from mer.train.finetune_model import FinetuneModel, enable_gradient_checkpointing, make_split
from mer.train.losses.soft_f1 import soft_macro_f1_loss
from mer.train.metrics import MetricWarning, compute_metrics, headline
from mer.train.models.common import InputSpec
from mer.train.models.unimodal import Unimodal
from mer.train.outputs import save_torch, write_json, write_yaml
from mer.train.plots import plot_curves, plot_run_confusion
from mer.train.predictions import predictions_table
from mer.train.protocol import check_card, format_card, manifest_card
from mer.train.trainer import deterministic, seed_everything

CHECKPOINT_FORMAT = 1
SPLITS = ("train", "val", "test")
#: finetune options that may change between a run and its resumption (they do not change results)
RESUME_FREE = ("device", "io_threads")
#: the train options a fine-tuning run depends on (classes, splits, head)
TRAIN_KEYS = ("target", "split_column", "val_fraction", "split_seed", "classes", "multilabel", "hidden", "dropout")


class Interrupted(RuntimeError):
    """Raised by a test hook to simulate a kill between two optimizer steps."""


@dataclass
class FinetuneJob:
    """One ``mer finetune``, assembled by the application layer (:mod:`mer.finetune`)."""

    #: the ``finetune`` section, with ``modality`` resolved
    finetune: FinetuneConfig
    #: the ``train`` section: classes, splits and the head's width and dropout
    train: TrainConfig
    #: ``features.<modality>``: the hf-text / hf-audio encoder to fine-tune
    encoder_options: Any
    manifest: Manifest
    manifest_path: Path
    #: where default run folders go (``<output>/<corpus>``)
    run_root: Path
    #: the resolved experiment config as plain data (the run's config.yaml, kept in model.pt)
    record: dict[str, Any]
    #: ``-c CONFIG --set ...``: what the printed next commands repeat
    command_args: str = "-c <config.yaml>"
    #: what the dataset section's split is, the adapter and the section's key (the protocol card)
    protocol: Protocol | None = None
    adapter: str = ""
    dataset_key: str = ""

    @property
    def modality(self) -> str:
        return self.finetune.modality


# --------------------------------------------------------------------------- setup


def run_fingerprint(job: FinetuneJob, manifest_fingerprint: str, base_key: str) -> str:
    """What a run's results depend on: the finetune options (minus device/threads), the train options
    that fix classes, splits and head, the manifest's content and the base encoder's key (options +
    weights). Other edits to the config (e.g. ``train.epochs`` for the later ``mer train``) leave it
    unchanged, so the same ``mer finetune`` command still finds its run."""
    data = {"finetune": to_dict(job.finetune), "train": to_dict(job.train)}
    finetune = {k: v for k, v in data["finetune"].items() if k not in RESUME_FREE}
    train = {k: data["train"][k] for k in TRAIN_KEYS}
    return stable_hash({"finetune": finetune, "train": train, "manifest": manifest_fingerprint, "base": base_key}, 16)


def finetune_run_dir(job: FinetuneJob, fingerprint: str) -> Path:
    """``<output>/<corpus>/finetune-<modality>-<fingerprint>``: the same command finds its own run again."""
    return job.run_root / f"finetune-{job.modality}-{fingerprint[:10]}"


def load_encoder(options, device: torch.device):
    """The hf encoder (loaded on ``device``), or a TrainingError naming the model."""
    encoder = build_encoder(options)
    try:
        encoder.load(device)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load {options.encoder} model {options.model!r}: {exc}") from None
    return encoder


def build_finetune_model(encoder, modality: str, finetune, head_kwargs: dict) -> FinetuneModel:
    model, _ = hf_parts(encoder)
    pooling = getattr(encoder.options, "pooling", "mean")
    try:
        split = make_split(model, finetune.unfreeze_top, pooling)
    except ValueError as exc:
        raise TrainingError(f"{encoder.options.model}: {exc}") from None
    head = Unimodal(**head_kwargs)
    dim = int(model.config.hidden_size)
    return FinetuneModel(model, split, head, modality, dim, finetune.autocast)


def head_kwargs_for(train_cfg: TrainConfig, modality: str, family: str, dim: int, num_classes: int) -> dict:
    spec = InputSpec(modality, dim, 0, family)
    kwargs = Unimodal.from_config(train_cfg, [spec], num_classes)
    kwargs["layer"] = "last"
    return kwargs


def read_warm_start(path: str | Path, modality: str, base_key: str, head_kwargs: dict, classes: list[str],
                    multilabel: bool) -> tuple[dict, dict]:
    """(head state_dict, stats) of a ``mer train`` unimodal run, after checking it fits this head."""
    run = Path(path)
    file = run / "model.pt"
    if not file.is_file():
        raise DataError(f"finetune.warm_start: {file} not found (expected a run folder written by mer train)")
    ckpt = torch.load(file, map_location="cpu", weights_only=True)
    where = f"finetune.warm_start {run}"
    if ckpt.get("kind") == "finetune" or ckpt.get("model") != "unimodal":
        raise DataError(f"{where}: is a {ckpt.get('kind') or ckpt.get('model')!r} run; warm start needs a "
                        "'mer train' run with train.model=unimodal")
    (name,) = ckpt["modalities"]
    if ckpt["cache_keys"][name] != base_key:
        raise DataError(f"{where}: its head was trained on features with encoder key {ckpt['cache_keys'][name]}, "
                        f"but features.{modality} gives {base_key}; train the head on this encoder's cache")
    theirs, ours = ckpt["init_kwargs"], head_kwargs
    spec = theirs["inputs"][0]
    if spec["dim"] != ours["inputs"][0]["dim"] or spec.get("layers", 0) != 0:
        raise DataError(f"{where}: head input is {spec['dim']}-d with {spec.get('layers', 0)} layers; "
                        f"fine-tuning feeds one {ours['inputs'][0]['dim']}-d pooled vector")
    if theirs["hidden"] != ours["hidden"]:
        raise DataError(f"{where}: head hidden size {theirs['hidden']} != train.hidden {ours['hidden']} "
                        f"(--set train.hidden={theirs['hidden']})")
    if list(ckpt["classes"]) != list(classes) or bool(ckpt["multilabel"]) != multilabel:
        raise DataError(f"{where}: classes {list(ckpt['classes'])} differ from this corpus's {list(classes)}")
    return ckpt["state_dict"], ckpt["stats"][name]


# --------------------------------------------------------------------------- prediction


@torch.no_grad()
def predict(model: FinetuneModel, feeder: Feeder, batches: list[np.ndarray], multilabel: bool,
            progress: bool = False, desc: str = "predict") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows, probabilities (n, C), predictions, present) over ``batches``, in eval mode."""
    was = model.training
    model.train(False)
    criterion = Criterion(multilabel)
    rows, probs, preds, present = [], [], [], []
    for batch_rows, prepared in tqdm(feeder.iterate(batches), total=len(batches), desc=desc, unit="batch",
                                     disable=not progress, leave=False):
        pooled, pres = feeder.pooled(model, prepared)
        logits = model.classify(pooled, pres)
        rows.append(batch_rows)
        probs.append(criterion.probabilities(logits).cpu().numpy())
        preds.append(criterion.predict(logits).cpu().numpy())
        present.append(pres.cpu().numpy())
    model.train(was)
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, bool)
    return np.concatenate(rows), np.concatenate(probs), np.concatenate(preds), np.concatenate(present)


def score(model: FinetuneModel, feeder: Feeder, data: FinetuneData, split: str, policy, quiet: bool = True,
          progress: bool = False) -> dict:
    """Metrics of the labelled rows of ``split`` (batched as every prediction of this split is)."""
    import warnings

    batches = make_row_batches(data, data.rows(split), policy)
    rows, _, pred, _ = predict(model, feeder, batches, data.multilabel, progress, f"score {split}")
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", MetricWarning)
        return compute_metrics(data.y[rows], pred, data.classes, data.multilabel, split)


# --------------------------------------------------------------------------- optimisation


def make_optimizer(model: FinetuneModel, ft) -> torch.optim.Optimizer:
    """AdamW, two learning rates; no weight decay on biases and norm weights (1-D tensors)."""
    groups = []
    for name, params, lr in (("encoder", [p for _, p in model.encoder_parameters()], ft.lr_encoder),
                             ("head", list(model.head.parameters()), ft.lr_head)):
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups.append({"params": decay, "lr": lr, "weight_decay": ft.weight_decay, "name": f"{name}"})
        groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{name}_no_decay"})
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=ft.lr_head)


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base lr at optimizer step ``step``: linear warm-up, then none/linear/cosine decay."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "none":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class LrSchedule:
    """Picklable-free schedule: LambdaLR's state holds only numbers (the lambda is rebuilt)."""

    def __init__(self, total: int, warmup: int, schedule: str):
        self.total, self.warmup, self.schedule = total, warmup, schedule

    def __call__(self, step: int) -> float:
        return lr_factor(step, self.total, self.warmup, self.schedule)


def make_loss(ft, data: FinetuneData, device: torch.device) -> Callable[[Tensor, Tensor], tuple[Tensor, str]]:
    """The training objective: weighted CE (Criterion, inverse class weights) or soft macro-F1."""
    train_rows = data.rows("train")
    if len(train_rows) == 0:
        raise TrainingError("the training split has no labelled sample")
    criterion = Criterion.from_training(data.y[train_rows], data.num_classes, data.multilabel, "inverse", device,
                                        data.classes)
    if ft.loss == "weighted_ce":
        return lambda logits, y: (criterion(logits, y), "ce")
    return lambda logits, y: (soft_macro_f1_loss(criterion.probabilities(logits), y), "soft_f1")


@dataclass
class Optimisation:
    """The objects a training step updates besides the weights, and what it needs to take one.

    A checkpoint saves the first four and restores them (:func:`checkpoint_payload`,
    :func:`restore_checkpoint`); the loss and the trainable parameters are rebuilt from the
    config on every start.
    """

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    #: CUDA fp16 GradScaler, or a disabled one (:func:`mer.features.device.grad_scaler`)
    scaler: Any
    #: shuffles the batch order of each epoch (seeded; saved in checkpoints)
    generator: torch.Generator
    loss_fn: Callable[[Tensor, Tensor], tuple[Tensor, str]]
    #: the parameters gradient clipping applies to
    trainable: list[nn.Parameter]


def make_optimisation(model: FinetuneModel, ft: FinetuneConfig, data: FinetuneData, device: torch.device,
                      steps_per_epoch: int) -> Optimisation:
    """AdamW with warm-up + decay over ``ft.epochs * steps_per_epoch`` steps, the scaler, the seeded
    batch-order generator and the objective."""
    total_steps = ft.epochs * steps_per_epoch
    optimizer = make_optimizer(model, ft)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, LrSchedule(total_steps, int(ft.warmup * total_steps),
                                                                        ft.schedule))
    return Optimisation(optimizer=optimizer, scheduler=scheduler, scaler=grad_scaler(device, ft.autocast),
                        generator=torch.Generator().manual_seed(ft.seed), loss_fn=make_loss(ft, data, device),
                        trainable=[p for p in model.parameters() if p.requires_grad])


# --------------------------------------------------------------------------- checkpoints


def host_rng_state() -> dict:
    """numpy and python RNG states as plain numbers (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"numpy": [kind, torch.as_tensor(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": list(random.getstate()[1]) + [random.getstate()[0]]}


def set_host_rng_state(state: dict) -> None:
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    *internal, version = state["python"]
    random.setstate((version, tuple(internal), None))


@dataclass
class Progress:
    """Where the loop is and what it has seen: everything besides weights a checkpoint holds."""

    epoch: int = 1
    #: next batch (position in ``order``) of ``epoch``
    batch: int = 0
    step: int = 0
    order: list[int] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=dict)
    batches_done: int = 0
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = float("nan")
    best_state: dict[str, Tensor] = field(default_factory=dict)
    waited: int = 0
    stopped_early: bool = False
    finished: bool = False
    failures: dict[str, str] = field(default_factory=dict)


def checkpoint_payload(model: FinetuneModel, opt: Optimisation, progress: Progress, fingerprint: str,
                       device: torch.device) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": "finetune-checkpoint",
        "fingerprint": fingerprint,
        "trainable": model.trainable_state(),
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "scaler": opt.scaler.state_dict(),
        "rng": {"torch": rng_state(device), "host": host_rng_state(), "order": opt.generator.get_state()},
        "progress": {k: copy.deepcopy(v) for k, v in progress.__dict__.items()},
    }


def restore_checkpoint(ckpt: dict, model: FinetuneModel, opt: Optimisation, device: torch.device) -> Progress:
    model.load_trainable_state(ckpt["trainable"])
    opt.optimizer.load_state_dict(ckpt["optimizer"])
    opt.scheduler.load_state_dict(ckpt["scheduler"])
    if ckpt["scaler"]:
        opt.scaler.load_state_dict(ckpt["scaler"])
    opt.generator.set_state(ckpt["rng"]["order"])
    set_host_rng_state(ckpt["rng"]["host"])
    set_rng_state(ckpt["rng"]["torch"], device)
    return Progress(**ckpt["progress"])


# --------------------------------------------------------------------------- outputs


@dataclass
class FinetuneResult:
    run_dir: Path
    metrics: dict
    history: list[dict]
    encoder_dir: Path
    next_commands: list[str]
    #: wall seconds of each epoch run in THIS process (training + validation scoring)
    epoch_seconds: list[float] = field(default_factory=list)
    resumed_from_step: int = 0
    already_complete: bool = False


def next_commands(job: FinetuneJob, encoder_dir: Path) -> list[str]:
    """The commands that use the fine-tuned encoder: re-extract (new cache key), then train."""
    model_set = f" --set features.{job.modality}.model={encoder_dir}"
    return [f"mer extract {job.command_args}{model_set} --modality {job.modality}",
            f"mer train {job.command_args}{model_set}"]


def finetune_predictions(data: FinetuneData, per_split: dict[str, tuple], modality: str) -> pd.DataFrame:
    """predictions.csv's table (:func:`mer.train.predictions.predictions_table`) from the per-split
    predictions of :func:`predict_all`, put back in manifest order."""
    n, c = len(data), data.num_classes
    probs = np.zeros((n, c), np.float32)
    pred = np.zeros((n, c) if data.multilabel else n, np.int64)
    present = np.zeros(n, bool)
    for rows, p, d, pres in per_split.values():
        if len(rows):
            probs[rows], pred[rows], present[rows] = p, d, pres
    return predictions_table(data.ids, data.split, data.classes, data.y, data.labeled, probs, pred,
                             ["" if p else modality for p in present])


def predict_all(model: FinetuneModel, feeder: Feeder, data: FinetuneData, policy, progress: bool) -> dict[str, tuple]:
    """Predictions of every row, batched per split (train/val/test/other) exactly as scoring batches them."""
    out = {}
    for split in SPLITS:
        rows = data.rows(split, labeled_only=True)
        out[split] = predict(model, feeder, make_row_batches(data, rows, policy), data.multilabel, progress, f"predict {split}")
    rest = np.setdiff1d(np.arange(len(data)), np.concatenate([data.rows(s) for s in SPLITS]))
    out["other"] = predict(model, feeder, make_row_batches(data, rest, policy), data.multilabel, progress, "predict other")
    return out


def plot_outputs(metrics: dict, data: FinetuneData, per_split: dict[str, tuple], state: Progress,
                 ft: FinetuneConfig, run_dir: Path) -> None:
    """confusion.png and curves.png, drawn as ``mer train`` draws them."""
    def labels_of(split: str) -> tuple[np.ndarray, np.ndarray]:
        rows, _, pred, _ = per_split[split]
        return data.y[rows], pred

    plot_run_confusion(metrics, data.classes, data.multilabel, labels_of, run_dir / "confusion.png",
                       f"finetune {ft.modality}")
    if state.history:
        plot_curves(state.history, ft.select_metric, run_dir / "curves.png", state.best_epoch)


# --------------------------------------------------------------------------- the run


def finetune_card(job: FinetuneJob, data: FinetuneData) -> dict:
    """The protocol card of a fine-tuning run's splits (:mod:`mer.train.protocol`)."""
    return manifest_card(job.protocol, adapter=job.adapter, dataset_key=job.dataset_key, manifest=job.manifest,
                         manifest_path=str(job.manifest_path), split_column=job.train.split_column,
                         target=job.train.target, split=data.split, labeled=np.asarray(data.labeled, dtype=bool),
                         classes=list(data.classes), val_carved=data.val_carved, val_groups=list(data.val_groups))


@dataclass
class RunContext:
    """What stays fixed during one fine-tuning run: built once by :func:`finetune`, read by the head
    initialisation, the training loop and the output writers."""

    job: FinetuneJob
    #: the loaded hf encoder; ``model`` trains its transformers model in place
    encoder: Encoder
    model: FinetuneModel
    feeder: Feeder
    data: FinetuneData
    #: length buckets of every prediction and of the training batches
    policy: BatchPolicy
    device: torch.device
    run_dir: Path
    #: :func:`run_fingerprint`: what a checkpoint and a finished run must match
    fingerprint: str
    #: the base encoder's cache key (options + weights)
    base_key: str
    #: the head's constructor arguments (saved in model.pt)
    head_kwargs: dict
    #: show progress bars
    progress: bool
    say: Callable[[str], None]

    @property
    def ft(self) -> FinetuneConfig:
        return self.job.finetune

    @property
    def encoder_dir(self) -> Path:
        return self.run_dir / "encoder"

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"


def finetune(job: FinetuneJob, run_dir: str | Path | None = None, *, progress: bool = True,
             log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None) -> FinetuneResult:
    """Fine-tune ``job.encoder_options``'s encoder (see the module docstring); resumes a killed run.

    Args:
        job: the sections and the manifest (:func:`mer.finetune.finetune_job` builds it).
        run_dir: the run folder; default ``<output>/<corpus>/finetune-<modality>-<fingerprint>``.
        on_step: called with the global optimizer step after each step (and its checkpoint);
            tests raise :class:`Interrupted` from it to simulate a kill.
    """
    ft = job.finetune
    modality = job.modality
    if job.train.multilabel and ft.select_metric not in ("macro_f1", "weighted_f1", "accuracy", "wa"):
        raise TrainingError(f"finetune.select_metric {ft.select_metric!r} is not defined for multi-label tasks")
    if not job.train.multilabel and ft.select_metric == "wa":
        raise TrainingError("finetune.select_metric 'wa' is the multi-label weighted accuracy; use accuracy")
    device = resolve_device(ft.device)
    manifest = job.manifest
    options = job.encoder_options
    base_key = build_encoder(options).key()
    fingerprint = run_fingerprint(job, manifest.fingerprint, base_key)
    run_dir = Path(run_dir) if run_dir else finetune_run_dir(job, fingerprint)
    run_dir.mkdir(parents=True, exist_ok=True)
    encoder_dir = run_dir / "encoder"
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        log(line)

    done = _completed(run_dir, fingerprint)
    if done is not None:
        say(f"{run_dir}: fine-tuning already complete (model.pt, encoder/); nothing to do")
        cmds = next_commands(job, encoder_dir)
        for c in cmds:
            say(f"  {c}")
        return FinetuneResult(run_dir, done, [], encoder_dir, cmds, already_complete=True)
    ckpt_path = run_dir / "checkpoint.pt"
    ckpt = None
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("fingerprint") != fingerprint:
            raise TrainingError(f"{ckpt_path}: a checkpoint of a different run (config, manifest or base model "
                                "changed); use another --run-dir or delete the checkpoint")

    seed_everything(ft.seed)
    encoder = load_encoder(options, device)
    data = load_finetune_data(job.train, manifest, encoder, log=say)
    card = finetune_card(job, data)
    check_card(card, str(job.manifest_path))
    for line in format_card(card).splitlines():
        say(line)
    if len(data.rows("val")) == 0:
        raise TrainingError("the validation split has no labelled sample: model selection needs one "
                            "(add 'val' rows or let mer carve them: leave 'val' out of the manifest)")
    hf_model, _ = hf_parts(encoder)
    dim = int(hf_model.config.hidden_size)
    head_kwargs = head_kwargs_for(job.train, modality, options.encoder, dim, data.num_classes)
    model = build_finetune_model(encoder, modality, ft, head_kwargs).to(device)
    model.head.init_kwargs = head_kwargs
    if ft.gradient_checkpointing:
        enable_gradient_checkpointing(hf_model)
    feeder = Feeder(encoder, data, device, ft.io_threads)
    sr = getattr(encoder, "sampling_rate", None) if encoder.family == "hf-audio" else None
    run = RunContext(job=job, encoder=encoder, model=model, feeder=feeder, data=data,
                     policy=batch_policy(encoder, ft, sr), device=device, run_dir=run_dir, fingerprint=fingerprint,
                     base_key=base_key, head_kwargs=head_kwargs, progress=progress, say=say)
    train_batches = make_row_batches(data, data.rows("train"), run.policy)
    steps_per_epoch = math.ceil(len(train_batches) / ft.grad_accum)
    opt = make_optimisation(model, ft, data, device, steps_per_epoch)
    n_enc = sum(p.numel() for _, p in model.encoder_parameters())
    n_head = sum(p.numel() for p in model.head.parameters())
    write_yaml(job.record, run_dir / "config.yaml")

    if ckpt is not None:
        state = restore_checkpoint(ckpt, model, opt, device)
        feeder.failures.update(state.failures)
        say(f"resuming {run_dir} from optimizer step {state.step} (epoch {state.epoch}, batch {state.batch} of "
            f"{len(train_batches)})")
        resumed_from = state.step
    else:
        state = Progress()
        resumed_from = 0
        _init_head(run)
    say(f"finetune {options.encoder} {options.model} on {modality}: top {ft.unfreeze_top} layer(s) "
        f"({', '.join(model.split.trainable_modules()) or 'none'}) + head; {n_enc:,} encoder + {n_head:,} head "
        f"trainable parameters; loss {ft.loss}; {len(train_batches)} batches/epoch, {steps_per_epoch} steps/epoch; "
        f"device {device} -> {run_dir}")

    epoch_seconds: list[float] = []
    if not state.finished:
        with deterministic():
            _train_loop(run, opt, train_batches, state, epoch_seconds, on_step)
    state.failures = dict(feeder.failures)
    if state.best_state:
        model.load_trainable_state(state.best_state)
    say(f"best epoch {state.best_epoch}: val {ft.select_metric} = {state.best_score:.4f}")
    metrics = _write_outputs(run, state)
    cmds = next_commands(job, encoder_dir)
    say("next: re-extract with the fine-tuned encoder (a new cache key), then train on it:")
    for c in cmds:
        say(f"  {c}")
    (run_dir / "log.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ckpt_path.unlink(missing_ok=True)
    return FinetuneResult(run_dir, metrics, state.history, encoder_dir, cmds, epoch_seconds, resumed_from)


def _completed(run_dir: Path, fingerprint: str) -> dict | None:
    """metrics.json of a finished run with this fingerprint; None if unfinished; error if another run."""
    file = run_dir / "model.pt"
    if not file.is_file() or (run_dir / "checkpoint.pt").is_file():
        return None
    ckpt = torch.load(file, map_location="cpu", weights_only=True)
    if ckpt.get("kind") != "finetune" or ckpt.get("fingerprint") != fingerprint:
        raise TrainingError(f"{run_dir} already holds another run (model.pt of {ckpt.get('kind') or ckpt.get('model')!r}, "
                            "different config or data); choose another --run-dir")
    metrics = run_dir / "metrics.json"
    return json.loads(metrics.read_text(encoding="utf-8")) if metrics.is_file() else {}


def _init_head(run: RunContext) -> None:
    """Warm start (head + statistics of a mer train run), or statistics of the un-tuned encoder's train split."""
    model, data, ft = run.model, run.data, run.ft
    if ft.warm_start:
        state, stats = read_warm_start(ft.warm_start, ft.modality, run.base_key, run.head_kwargs, data.classes,
                                       data.multilabel)
        model.head.load_state_dict(state)
        with torch.no_grad():
            model.mean.copy_(torch.as_tensor(stats["mean"]))
            model.std.copy_(torch.as_tensor(stats["std"]))
        run.say(f"warm start: head and standardisation statistics from {ft.warm_start}")
        return
    rows = data.rows("train", labeled_only=False)
    batches = make_row_batches(data, rows, run.policy)
    pooled, present = [], []
    model.train(False)
    with torch.no_grad():
        for _, prepared in tqdm(run.feeder.iterate(batches), total=len(batches), desc="standardisation statistics",
                                unit="batch", disable=not run.progress, leave=False):
            x, pres = run.feeder.pooled(model, prepared)
            pooled.append(x.cpu().numpy())
            present.append(pres.cpu().numpy())
    x = np.concatenate(pooled) if pooled else np.zeros((0, model.mean.shape[0]), np.float32)
    keep = np.concatenate(present) if present else np.zeros(0, bool)
    if not keep.any():
        raise DataError(f"modality {ft.modality!r}: no training sample has a usable input; cannot standardise")
    stats = fit_stats(x, np.flatnonzero(keep))
    with torch.no_grad():
        model.mean.copy_(torch.as_tensor(stats["mean"]))
        model.std.copy_(torch.as_tensor(stats["std"]))
    run.say(f"standardisation statistics from {int(keep.sum())} training samples (un-tuned encoder)")


def _save_checkpoint(run: RunContext, opt: Optimisation, state: Progress, epoch: int, batch: int) -> None:
    """checkpoint.pt at position (``epoch``, next ``batch``): re-running the command continues from there."""
    state.epoch, state.batch = epoch, batch
    state.failures = dict(run.feeder.failures)
    save_torch(checkpoint_payload(run.model, opt, state, run.fingerprint, run.device), run.ckpt_path)


def _train_loop(run: RunContext, opt: Optimisation, train_batches: list[np.ndarray], state: Progress,
                epoch_seconds: list[float], on_step: Callable[[int], None] | None) -> None:
    """Epochs from ``state``'s position until ``ft.epochs`` or an early stop; a checkpoint after each."""
    ft = run.ft
    while state.epoch <= ft.epochs:
        epoch = state.epoch
        started = time.perf_counter()
        _train_epoch(run, opt, train_batches, state, on_step)
        loss, value = _end_epoch(run, opt, state)
        seconds = time.perf_counter() - started
        epoch_seconds.append(seconds)
        run.say(f"epoch {epoch}: loss {loss:.4f}, val {ft.select_metric} {value:.4f} ({seconds:.1f} s)")
        if state.waited >= ft.patience:
            state.stopped_early = True
            run.say(f"early stop at epoch {epoch}: no {ft.select_metric} gain for {ft.patience} epochs")
        last = state.stopped_early or epoch == ft.epochs
        state.finished = last
        _save_checkpoint(run, opt, state, epoch + 1, 0)
        if last:
            break


def _train_epoch(run: RunContext, opt: Optimisation, train_batches: list[np.ndarray], state: Progress,
                 on_step: Callable[[int], None] | None) -> None:
    """The rest of ``state.epoch`` from ``state.batch`` on: gradient accumulation over groups of
    ``grad_accum`` batches, one optimizer step per group, a checkpoint every ``checkpoint_every`` steps."""
    ft, model, feeder = run.ft, run.model, run.feeder
    n = len(train_batches)
    epoch = state.epoch
    if state.batch == 0:
        state.order = torch.randperm(n, generator=opt.generator).tolist()
        state.sums, state.batches_done = {}, 0
    model.train(True)
    opt.optimizer.zero_grad(set_to_none=True)
    todo = [train_batches[state.order[b]] for b in range(state.batch, n)]
    bar = tqdm(feeder.iterate(todo), total=len(todo), desc=f"finetune epoch {epoch}/{ft.epochs}", unit="batch",
               disable=not run.progress, leave=False)
    for b, (rows, prepared) in enumerate(bar, start=state.batch):
        group_start = (b // ft.grad_accum) * ft.grad_accum
        group_size = min(ft.grad_accum, n - group_start)
        pooled, present = feeder.pooled(model, prepared)
        logits = model.classify(pooled, present)
        loss, name = opt.loss_fn(logits, run.data.targets(rows, run.device))
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss at epoch {epoch}, batch {b}: {float(loss)} "
                                f"(lr_encoder {ft.lr_encoder}, lr_head {ft.lr_head}); lower the learning rates")
        opt.scaler.scale(loss / group_size).backward()
        value = float(loss.detach())
        state.sums["loss"] = state.sums.get("loss", 0.0) + value
        state.sums[f"loss_{name}"] = state.sums.get(f"loss_{name}", 0.0) + value
        state.batches_done += 1
        if b + 1 == group_start + group_size:
            if ft.grad_clip > 0:
                opt.scaler.unscale_(opt.optimizer)
                nn.utils.clip_grad_norm_(opt.trainable, ft.grad_clip)
            opt.scaler.step(opt.optimizer)
            opt.scaler.update()
            opt.optimizer.zero_grad(set_to_none=True)
            opt.scheduler.step()
            state.step += 1
            bar.set_postfix(loss=f"{value:.4f}")
            if ft.checkpoint_every and state.step % ft.checkpoint_every == 0 and b + 1 < n:
                _save_checkpoint(run, opt, state, epoch, b + 1)
            if on_step is not None:
                on_step(state.step)
    bar.close()


def _end_epoch(run: RunContext, opt: Optimisation, state: Progress) -> tuple[float, float]:
    """The epoch's history row (learning rates, mean losses, validation metrics) and model selection:
    the best epoch so far by ``select_metric`` keeps its trainable state. Returns (mean loss, val metric)."""
    ft = run.ft
    row: dict[str, float] = {"epoch": state.epoch}
    for group in opt.optimizer.param_groups:
        row.setdefault(f"lr_{group['name'].removesuffix('_no_decay')}", group["lr"])
    row.update({k: v / max(state.batches_done, 1) for k, v in state.sums.items()})
    val = score(run.model, run.feeder, run.data, "val", run.policy)
    row.update({f"val_{k}": v for k, v in val.items() if isinstance(v, float)})
    state.history.append(row)
    value = val[ft.select_metric]
    if state.best_epoch == 0 or (math.isfinite(value) and value > state.best_score):
        state.best_epoch, state.best_score, state.waited = state.epoch, value, 0
        state.best_state = run.model.trainable_state()
    else:
        state.waited += 1
    return row["loss"], value


def _save_encoder(run: RunContext) -> str:
    """``<run>/encoder/``: the tuned model and its tokenizer / feature extractor (``save_pretrained``,
    written beside and renamed into place). Returns the cache key ``mer extract`` gives it."""
    hf_model, pre = hf_parts(run.encoder)
    encoder_dir = run.encoder_dir
    tmp = encoder_dir.with_name(encoder_dir.name + ".tmp")
    hf_model.save_pretrained(tmp)
    pre.save_pretrained(tmp)
    if encoder_dir.exists():
        import shutil

        shutil.rmtree(encoder_dir)
    os.replace(tmp, encoder_dir)
    tuned_options = encoder_options_for(run.job.encoder_options, str(encoder_dir))
    return build_encoder(tuned_options).key()


def _write_outputs(run: RunContext, state: Progress) -> dict:
    """encoder/ (save_pretrained), model.pt, metrics.json, predictions.csv, history.csv, plots."""
    job, model, data, ft = run.job, run.model, run.data, run.ft
    modality = ft.modality
    tuned_key = _save_encoder(run)

    per_split = predict_all(model, run.feeder, data, run.policy, run.progress)
    import warnings

    metrics: dict = {}
    for s in SPLITS:
        rows, _, pred, _ = per_split[s]
        if len(rows):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MetricWarning)
                metrics[s] = compute_metrics(data.y[rows], pred, data.classes, data.multilabel, s)
    failures = dict(run.feeder.failures)
    metrics["run"] = {
        "kind": "finetune", "model": "unimodal", "modalities": [modality], "seed": ft.seed,
        "best_epoch": state.best_epoch, "epochs_run": len(state.history), "stopped_early": state.stopped_early,
        "select_metric": ft.select_metric, "best_val": state.best_score, "loss": ft.loss,
        "unfreeze_top": ft.unfreeze_top, "trainable_modules": list(model.split.trainable_modules()),
        "base_model": job.encoder_options.model, "base_key": run.base_key,
        "encoder_dir": str(run.encoder_dir), "cache_keys": {modality: tuned_key},
        "val_carved": data.val_carved, "val_groups": list(data.val_groups),
        "samples": {s: int(((data.split == s) & data.labeled).sum()) for s in SPLITS},
        "missing": {modality: int(len(data) - sum(int(p[3].sum()) for p in per_split.values()))},
        "failures": failures,
        "manifest": {"path": str(job.manifest_path), "fingerprint": data.manifest_fingerprint},
        "notes": list(data.notes),
    }
    metrics["protocol"] = finetune_card(job, data)
    write_json(metrics, run.run_dir / "metrics.json")
    finetune_predictions(data, per_split, modality).to_csv(run.run_dir / "predictions.csv", index=False)
    pd.DataFrame(state.history).to_csv(run.run_dir / "history.csv", index=False)
    plot_outputs(metrics, data, per_split, state, ft, run.run_dir)
    save_torch(model_checkpoint(run, state, tuned_key), run.run_dir / "model.pt")
    for s in SPLITS:
        if s in metrics:
            line = ", ".join(f"{k} {v:.4f}" for k, v in headline(metrics[s], data.multilabel).items())
            run.say(f"{s}: {line}")
    if failures:
        run.say(f"{len(failures)} sample(s) could not be prepared and count as missing (metrics.json run.failures)")
    return metrics


def model_checkpoint(run: RunContext, state: Progress, tuned_key: str) -> dict:
    """model.pt of a fine-tuning run: the head (as mer train stores it) + where the encoder is."""
    job, model, data, ft = run.job, run.model, run.data, run.ft
    m = ft.modality
    return {
        "format": CHECKPOINT_FORMAT,
        "kind": "finetune",
        "mer_version": __version__,
        "model": "unimodal",
        "model_class": "mer.train.models.unimodal:Unimodal",
        "init_kwargs": copy.deepcopy(run.head_kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in model.head.state_dict().items()},
        "classes": list(data.classes),
        "multilabel": data.multilabel,
        "modality": m,
        "modalities": [m],
        "encoder": {"dir": "encoder", "options": to_dict(job.encoder_options), "base_key": run.base_key,
                    "tuned_key": tuned_key, "unfreeze_top": ft.unfreeze_top},
        "cache_keys": {m: tuned_key},
        "families": {m: job.encoder_options.encoder},
        "stats": {m: {"mean": model.mean.detach().cpu(), "std": model.std.detach().cpu()}},
        "manifest": {"path": str(job.manifest_path), "fingerprint": data.manifest_fingerprint},
        "splits": {"column": job.train.split_column, "val_carved": data.val_carved,
                   "val_groups": list(data.val_groups), "split_seed": job.train.split_seed,
                   "val_fraction": job.train.val_fraction},
        "seed": ft.seed,
        "best_epoch": state.best_epoch,
        "fingerprint": run.fingerprint,
        "config": job.record,
        "protocol": finetune_card(job, data),
    }


# --------------------------------------------------------------------------- evaluation


def evaluate_finetune_run(run_dir: str | Path, ckpt: dict, split: str = "test", manifest_path: str | Path | None = None,
                          device: str | None = None, log=None) -> dict:
    """``mer evaluate`` on a fine-tuning run: re-run ``<run>/encoder`` + the head on raw inputs.

    On the run's own manifest and device this reproduces metrics.json exactly: the same
    weights, the same per-split length buckets, eval mode.
    """
    run_dir = Path(run_dir)
    where = str(run_dir / "model.pt")
    record = ckpt["config"]
    ft = from_dict(FinetuneConfig, dict(record["finetune"]), where, prefix="finetune")
    train_cfg = from_dict(TrainConfig, dict(record["train"]), where, prefix="train")
    m = ckpt["modality"]
    options = from_dict(options_class(ckpt["encoder"]["options"]["encoder"]), dict(ckpt["encoder"]["options"]), where,
                        prefix=f"features.{m}")
    dev = resolve_device(device or ft.device)
    own = manifest_path is None
    path = Path(ckpt["manifest"]["path"] if own else manifest_path)
    manifest = Manifest.load(path)
    if own and manifest.fingerprint != ckpt["manifest"]["fingerprint"]:
        raise DataError(f"{path}: the manifest changed since this run was trained (fingerprint {manifest.fingerprint}, "
                        f"the run used {ckpt['manifest']['fingerprint']}); its metrics cannot be reproduced")
    encoder_dir = run_dir / ckpt["encoder"]["dir"]
    if not encoder_dir.is_dir():
        raise DataError(f"{encoder_dir}: the fine-tuned encoder folder is missing")
    encoder = load_encoder(encoder_options_for(options, str(encoder_dir)), dev)
    data = load_finetune_data(train_cfg, manifest, encoder, classes=list(ckpt["classes"]), carve_val=own, log=log)
    if own and data.val_groups != list(ckpt["splits"]["val_groups"]):
        raise DataError(f"{run_dir}: the carved validation split differs from training "
                        f"({data.val_groups} vs {ckpt['splits']['val_groups']})")
    model = build_finetune_model(encoder, m, ft, ckpt["init_kwargs"]).to(dev)
    model.head.load_state_dict(ckpt["state_dict"])
    with torch.no_grad():
        model.mean.copy_(ckpt["stats"][m]["mean"])
        model.std.copy_(ckpt["stats"][m]["std"])
    rows = data.rows(split)
    if len(rows) == 0:
        raise DataError(f"{data.manifest_source}: split {split!r} has no labelled sample"
                        + (" (try --split all)" if manifest_path else ""))
    feeder = Feeder(encoder, data, dev, ft.io_threads)
    sr = getattr(encoder, "sampling_rate", None) if encoder.family == "hf-audio" else None
    policy = batch_policy(encoder, ft, sr)
    got, _, pred, _ = predict(model, feeder, make_row_batches(data, rows, policy), data.multilabel)
    return compute_metrics(data.y[got], pred, data.classes, data.multilabel, split)


__all__ = ["FinetuneJob", "FinetuneResult", "Interrupted", "evaluate_finetune_run", "finetune", "soft_macro_f1_loss"]
