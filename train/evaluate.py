"""``mer evaluate``: re-load a run's ``model.pt`` and score a split, bit-for-bit as training did.

The checkpoint carries everything the numbers depend on: the model class and init kwargs,
the weights, the class list, the standardisation statistics of the training split, the
modalities with the cache key and output each was read from, and the split settings.
Scoring the run's own manifest on the same device reproduces ``metrics.json`` exactly
(the same transforms and the same fixed evaluation batch shapes).

``--manifest`` scores another corpus with the same modalities: its features must have been
extracted by the SAME encoders (same cache keys) into the cache beside that manifest, i.e.
``<cache root>/<corpus>/manifest.csv`` next to ``<cache root>/<corpus>/<modality>/<key>/``,
which is where ``mer extract`` puts both. Its labels must use the run's class names.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mer.features.device import resolve_device
from mer.pipeline.config_schema import from_dict
from mer.pipeline.layout import corpus_of
from mer.pipeline.manifest import Manifest
from mer.train import registry
from mer.train.config import TrainConfig
from mer.train.criterion import Criterion
from mer.train.data import CacheError, DataError, Fitted, ModalitySource, TrainData, load_train_data
from mer.train.metrics import compute_metrics
from mer.train.trainer import predict_rows, true_labels

EVAL_SPLITS = ("test", "val", "train", "all")


def load_checkpoint(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        seeds = sorted(p.parent.name for p in Path(run_dir).glob("seed*/model.pt"))
        hint = (f"; it holds one run per seed ({', '.join(seeds)}): evaluate one of them, e.g. {Path(run_dir) / seeds[0]}"
                if seeds else " (is it a run folder written by mer train?)")
        raise DataError(f"{path}: no model.pt{hint}")
    return torch.load(path, map_location="cpu", weights_only=True)


def build_model(ckpt: dict, device: torch.device | str = "cpu") -> torch.nn.Module:
    """The trained model, in eval mode, from a checkpoint dict."""
    cls = registry.model_class(ckpt["model"])
    model = cls(**ckpt["init_kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    model.init_kwargs = ckpt["init_kwargs"]
    return model.to(device).eval()


def run_train_config(ckpt: dict, run_dir: Path) -> TrainConfig:
    """The ``train`` section a run was trained with (kept in its model.pt)."""
    return from_dict(TrainConfig, dict(ckpt["config"]["train"]), str(run_dir / "model.pt"), prefix="train")


def load_run_data(run_dir: str | Path, ckpt: dict, manifest_path: str | Path | None = None,
                  device: torch.device | str = "cpu", log=None) -> tuple[TrainData, bool]:
    """The features of the run's manifest (or ``manifest_path``), transformed as in training.

    Returns (data, is_the_run's_own_manifest).
    """
    run_dir = Path(run_dir)
    train_cfg = run_train_config(ckpt, run_dir)
    train_cfg.inputs = dict(ckpt["outputs"])
    own = manifest_path is None
    path = Path(ckpt["manifest"]["path"] if own else manifest_path)
    manifest = Manifest.load(path)
    if own and manifest.fingerprint != ckpt["manifest"]["fingerprint"]:
        raise DataError(f"{path}: the manifest changed since this run was trained (fingerprint "
                        f"{manifest.fingerprint}, the run used {ckpt['manifest']['fingerprint']}); "
                        "its metrics cannot be reproduced")
    layout = corpus_of(path)
    sources = {m: ModalitySource(m, ckpt["families"][m], ckpt["cache_keys"][m],
                                 layout.encoder_dir(m, ckpt["cache_keys"][m]))
               for m in ckpt["modalities"]}
    if not own:
        missing = [m for m, src in sources.items() if not src.dir.is_dir()]
        if missing:
            raise CacheError(
                f"cannot evaluate on {path}: no cache with the run's encoder key for modality(ies) {missing} "
                f"beside it ({', '.join(str(sources[m].dir) for m in missing)}); extract them with the run's "
                f"encoders: mer extract -c <that corpus's config with the same features> --modality <m>")
    data = load_train_data(train_cfg, manifest, sources, device=device,
                           fitted=Fitted(ckpt["stats"], list(ckpt["classes"])),
                           sequences=registry.entry(ckpt["model"]).sequences, carve_val=own, log=log)
    if own and data.val_groups != list(ckpt["splits"]["val_groups"]):
        raise DataError(f"{run_dir}: the carved validation split differs from training "
                        f"({data.val_groups} vs {ckpt['splits']['val_groups']})")
    return data, own


def evaluate_run(run_dir: str | Path, split: str = "test", manifest_path: str | Path | None = None,
                 device: str | None = None, log=None) -> dict:
    """Recompute the metrics of ``split`` (test | val | train | all) for a run folder."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    ckpt = load_checkpoint(run_dir)
    if ckpt.get("kind") == "finetune":  # a mer finetune run: re-run its encoder on raw inputs
        from mer.train.finetune import evaluate_finetune_run

        return evaluate_finetune_run(run_dir, ckpt, split, manifest_path, device, log)
    dev = resolve_device(device or ckpt["config"]["train"].get("device", "auto"))
    data, _ = load_run_data(run_dir, ckpt, manifest_path, dev, log)
    model = build_model(ckpt, dev)
    rows = data.rows(split)
    if len(rows) == 0:
        raise DataError(f"{data.manifest_source}: split {split!r} has no labelled sample"
                        + (" (try --split all)" if manifest_path else ""))
    criterion = Criterion(data.multilabel)
    _, pred = predict_rows(model, data, rows, criterion)
    return compute_metrics(true_labels(data, rows), pred, data.classes, data.multilabel, split)


def metrics_equal(a: dict, b: dict) -> bool:
    """Deep equality after a JSON round trip (what metrics.json stores)."""
    import json

    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


__all__ = ["EVAL_SPLITS", "build_model", "evaluate_run", "load_checkpoint", "load_run_data", "metrics_equal"]
