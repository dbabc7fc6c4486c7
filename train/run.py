"""One training run end to end, and several seeds of it: what ``mer train`` does.

A run folder holds:

============== =========================================================================
config.yaml    the resolved config (``ExperimentConfig.dump``; ``train.seeds`` = this seed)
metrics.json   ``{"train": {...}, "val": {...}, "test": {...}, "run": {...}, "protocol": {...}}``:
               per split the metrics of :mod:`mer.train.metrics`; ``run`` says how the run was
               made (seed, best epoch, whether val was carved and how, notes such as NaN
               samples); ``protocol`` is the protocol card (:mod:`mer.train.protocol`)
predictions.csv id, split, label, prediction, missing (';'-joined absent modalities),
               prob_<class> for every class; every manifest row (unlabeled rows too)
history.csv    epoch, lr, loss and each loss part, val_<metric>
confusion.png  row-normalised test confusion; curves.png: losses and validation metrics
               (both skipped with ``train.plots: false``)
model.pt       everything to re-load: model name/class + init kwargs, state_dict, classes,
               standardisation stats, modalities and their cache keys/outputs, the manifest
               path and fingerprint, the split settings, the resolved config
log.txt        the lines printed during the run
============== =========================================================================

Several seeds: one ``seed<k>/`` subfolder each and ``summary.json`` (mean ± std per split
and metric, population std over seeds).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from mer import __version__
from mer.features.device import resolve_device
from mer.train import registry
from mer.train.criterion import Criterion
from mer.pipeline.config_schema import to_dict
from mer.train.config import TrainConfig
from mer.train.data import DataError, TrainData, load_train_data
from mer.train.job import TrainJob
from mer.train.outputs import save_torch, write_json, write_yaml
from mer.train.metrics import compute_metrics, headline
from mer.train.plots import plot_curves, plot_run_confusion
from mer.train.predictions import predictions_table
from mer.train.protocol import check_card, format_card, manifest_card
from mer.train.trainer import FitResult, predict_rows, seed_everything, true_labels

SPLITS = ("train", "val", "test")
CHECKPOINT_FORMAT = 1


def resolve_modalities(train_cfg: TrainConfig, available: list[str], where: str = "config") -> list[str]:
    """``train.modalities``, or every available modality (the keys of ``features``) when empty."""
    mods = list(train_cfg.modalities or available)
    if not mods:
        raise ValueError(f"{where}: no modality: 'features' is empty")
    return mods


def model_modalities(train_cfg: TrainConfig, available: list[str], where: str = "config") -> list[str]:
    """The modalities the configured model trains on; DataError when it cannot take them.

    ``train.modalities`` (default: every available modality), narrowed by the model
    (``unimodal`` uses only the first).
    """
    cls = registry.model_class(train_cfg.model)
    modalities = cls.use_modalities(resolve_modalities(train_cfg, available, where))
    try:
        cls.check_modalities(modalities)
    except ValueError as exc:
        raise DataError(f"{where}: {exc}") from None
    return modalities


def load_job_data(job: TrainJob, device: torch.device, reuse: bool = False, log=None) -> TrainData:
    """The job's features on ``device``, in the order of ``job.sources``."""
    return load_train_data(job.train, job.manifest, job.sources, device=device,
                           sequences=registry.entry(job.train.model).sequences, reuse=reuse, log=log)


# --------------------------------------------------------------------------- outputs


def split_metrics(model, data: TrainData, criterion: Criterion) -> dict[str, dict]:
    """Metrics of every split with labelled rows (train/val/test)."""
    return {s: compute_metrics(true_labels(data, data.rows(s)), predict_rows(model, data, data.rows(s), criterion)[1],
                               data.classes, data.multilabel, s)
            for s in SPLITS if len(data.rows(s))}


def write_predictions(model, data: TrainData, criterion: Criterion, path: Path) -> None:
    """predictions.csv (:func:`mer.train.predictions.predictions_table`) of every manifest row."""
    probs, pred = predict_rows(model, data, np.arange(len(data)), criterion)
    table = predictions_table(data.ids, data.split, data.classes, data.y.cpu().numpy(), data.labeled.cpu().numpy(),
                              probs, pred, data.missing_text())
    table.to_csv(path, index=False)


def job_card(job: TrainJob, data: TrainData) -> dict:
    """The protocol card of ``job``'s splits as loaded in ``data`` (val carved included)."""
    if list(job.manifest.df["id"]) != list(data.ids):
        raise DataError(f"{job.manifest_path}: the loaded data's rows are not the manifest's")
    return manifest_card(job.protocol, adapter=job.adapter, dataset_key=job.dataset_key, manifest=job.manifest,
                         manifest_path=str(job.manifest_path), split_column=job.train.split_column,
                         target=job.train.target, split=data.split, labeled=data.labeled.cpu().numpy(),
                         classes=list(data.classes), val_carved=data.val_carved, val_groups=list(data.val_groups))


def checkpoint(model, job: TrainJob, record: dict, data: TrainData, seed: int, fit: FitResult,
               card: dict | None = None) -> dict:
    """The content of model.pt (loadable with ``torch.load(weights_only=True)``)."""
    train_cfg = job.train
    ent = registry.entry(train_cfg.model)
    return {
        "format": CHECKPOINT_FORMAT,
        "mer_version": __version__,
        "model": train_cfg.model,
        "model_class": ent.model,
        "init_kwargs": copy.deepcopy(model.init_kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": list(data.classes),
        "multilabel": data.multilabel,
        "modalities": list(data.modalities),
        "cache_keys": {m: d.cache_key for m, d in data.modalities.items()},
        "families": {m: d.family for m, d in data.modalities.items()},
        "outputs": {m: d.output for m, d in data.modalities.items()},
        "stats": data.stats(),
        "manifest": {"path": str(job.manifest_path), "fingerprint": data.manifest_fingerprint},
        "splits": {"column": train_cfg.split_column, "val_carved": data.val_carved,
                   "val_groups": list(data.val_groups), "split_seed": train_cfg.split_seed,
                   "val_fraction": train_cfg.val_fraction},
        "seed": seed,
        "best_epoch": fit.best_epoch,
        "config": record,
        "protocol": card if card is not None else job_card(job, data),
    }


def plot_test_confusion(metrics: dict, model, data: TrainData, criterion: Criterion, run_dir: Path,
                        model_name: str) -> None:
    """confusion.png of the test split (else val, else train: the first that has labels)."""
    def labels_of(split: str) -> tuple[np.ndarray, np.ndarray]:
        rows = data.rows(split)
        return true_labels(data, rows), predict_rows(model, data, rows, criterion)[1]

    plot_run_confusion(metrics, data.classes, data.multilabel, labels_of, run_dir / "confusion.png",
                       f"{model_name} {'+'.join(data.modalities)}")


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict


def train_one(job: TrainJob, data: TrainData, run_dir: Path, seed: int, progress: bool = True,
              log: Callable[[str], None] = print) -> RunResult:
    """Train one seed on loaded ``data`` and write the run folder."""
    card = job_card(job, data)
    check_card(card, str(job.manifest_path))
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        log(line)

    train_cfg = copy.deepcopy(job.train)
    train_cfg.modalities = list(data.modalities)
    train_cfg.seeds = [seed]
    record = {**job.record, "train": to_dict(train_cfg)}
    write_yaml(record, run_dir / "config.yaml")
    device = data.device
    seed_everything(seed)
    cls = registry.model_class(train_cfg.model)
    kwargs = cls.from_config(train_cfg, data.inputs(), data.num_classes)
    model = cls(**kwargs).to(device)
    model.init_kwargs = kwargs
    for note in job.notes + data.notes:
        lines.append(note)
    for line in format_card(card).splitlines():
        say(line)
    say(f"{train_cfg.model} on {'+'.join(data.modalities)}, seed {seed}, device {device}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters -> {run_dir}")
    fit = registry.fit_function(train_cfg.model)(model, data, train_cfg, seed, device, progress=progress, log=say)

    criterion = Criterion(data.multilabel)
    metrics = split_metrics(model, data, criterion)
    labeled = data.labeled.cpu().numpy()
    metrics["run"] = {
        "model": train_cfg.model, "modalities": list(data.modalities), "seed": seed,
        "best_epoch": fit.best_epoch, "epochs_run": len(fit.history), "stopped_early": fit.stopped_early,
        "select_metric": train_cfg.select_metric, "best_val": fit.best_score,
        "val_carved": data.val_carved, "val_groups": list(data.val_groups),
        "samples": {s: int(((data.split == s) & labeled).sum()) for s in SPLITS},
        "missing": {m: int((~d.present).sum()) for m, d in data.modalities.items()},
        "cache_keys": {m: d.cache_key for m, d in data.modalities.items()},
        "manifest": {"path": str(job.manifest_path), "fingerprint": data.manifest_fingerprint},
        "notes": list(job.notes) + list(data.notes),
    }
    metrics["protocol"] = card
    # model.pt first: a run folder with metrics.json always has a complete model.pt beside it
    save_torch(checkpoint(model, job, record, data, seed, fit, card), run_dir / "model.pt")
    write_json(metrics, run_dir / "metrics.json")
    write_predictions(model, data, criterion, run_dir / "predictions.csv")
    pd.DataFrame(fit.history).to_csv(run_dir / "history.csv", index=False)
    if train_cfg.plots:
        plot_test_confusion(metrics, model, data, criterion, run_dir, train_cfg.model)
    if train_cfg.plots and fit.history:
        plot_curves(fit.history, train_cfg.select_metric, run_dir / "curves.png", fit.best_epoch)
    (run_dir / "log.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return RunResult(run_dir, metrics)


def summarise(results: list[RunResult], multilabel: bool) -> dict:
    """Mean and (population) std over seeds of every headline metric of every split."""
    out: dict = {"seeds": [r.metrics["run"]["seed"] for r in results], "runs": [str(r.run_dir) for r in results],
                 "mean": {}, "std": {}}
    for s in SPLITS:
        vals = [headline(r.metrics[s], multilabel) for r in results if s in r.metrics]
        if not vals:
            continue
        out["mean"][s] = {k: float(np.mean([v[k] for v in vals])) for k in vals[0]}
        out["std"][s] = {k: float(np.std([v[k] for v in vals])) for k in vals[0]}
    return out


def train_seeds(job: TrainJob, run_dir: Path, seeds: list[int], progress: bool = True,
                log: Callable[[str], None] = print) -> tuple[dict, list[RunResult]]:
    """``mer train``'s stage: load the features once, train every seed.

    Returns (summary, per-seed results); the summary is written as ``summary.json`` when there
    are several seeds (one ``seed<k>/`` folder each).
    """
    data = load_job_data(job, resolve_device(job.train.device), log=log)
    seeds = list(seeds) or [0]
    results = []
    for seed in seeds:
        folder = run_dir if len(seeds) == 1 else run_dir / f"seed{seed}"
        results.append(train_one(job, data, folder, seed, progress, log))
    summary = summarise(results, data.multilabel)
    if len(seeds) > 1:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(summary, run_dir / "summary.json")
    return summary, results


def format_table(summary: dict, multilabel: bool) -> str:
    """Splits × headline metrics; mean ± std when there are several seeds."""
    several = len(summary["seeds"]) > 1
    rows = []
    for s, means in summary["mean"].items():
        cells = {k: (f"{v:.4f} ± {summary['std'][s][k]:.4f}" if several else f"{v:.4f}") for k, v in means.items()}
        rows.append(pd.Series(cells, name=s))
    if not rows:
        return "(no labelled split)"
    title = f"seeds {summary['seeds']}" if several else f"seed {summary['seeds'][0]}"
    return f"{title}\n{pd.DataFrame(rows).to_string()}"
