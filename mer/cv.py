"""``mer train --folds``: every fold of the corpus's protocol × seeds, in one command.

Each fold is the config with the adapter's fold field set (``dataset.protocol=fold3`` for
RAVDESS and CREMA-D, ``dataset.fold=3`` for KEMDy20's ``kfold`` and generic ``fold_<k>``
columns): its own manifest (``manifest-<dataset key>.csv``, see :func:`mer.experiment.manifest_for`)
over the SAME caches, which are keyed by encoder and sample id, so nothing is re-extracted.
The CV folder holds one ordinary run folder per fold (``<fold>/``, with ``seed<k>/`` inside
for several seeds), ``cv.json`` and ``cv.md`` (:mod:`mer.train.cv`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from mer.config import ExperimentConfig, load_config
from mer.experiment import default_run_dir, manifest_for, train_experiment, trained_modalities
from mer.pipeline.adapters import folds_of
from mer.pipeline.config_schema import ConfigError
from mer.train.cv import FoldRun, cv_markdown, cv_summary
from mer.train.outputs import write_json


def select_folds(available: list[tuple[str, Any]], spec: str, where: str = "--folds") -> list[tuple[str, Any]]:
    """``all``, or comma-separated fold names or numbers (``1,3`` = fold1 and fold3; ``loao-7``)."""
    spec = spec.strip()
    if spec == "all":
        return list(available)
    chosen = []
    names = [name for name, _ in available]
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        match = [f for f in available if f[0] == item or (item.isdigit() and _number(f[0]) == int(item))]
        if len(match) != 1:
            raise ConfigError(f"{where}: no fold {item!r}; the folds are {', '.join(names)} (or 'all')")
        if match[0] not in chosen:
            chosen.append(match[0])
    if not chosen:
        raise ConfigError(f"{where}: no fold given; the folds are {', '.join(names)} (or 'all')")
    return chosen


def _number(name: str) -> int | None:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else None


def fold_folds(config: ExperimentConfig, spec: str, overrides: list[str],
               log: Callable[[str], None] | None = None) -> tuple[str, list[tuple[str, Any]]]:
    """(the dataset field that selects a fold, the chosen (name, value) pairs)."""
    manifest, _ = manifest_for(config, overrides, log)
    field, available = folds_of(config.dataset, manifest)
    return field, select_folds(available, spec)


def fold_override(field: str, value: Any) -> str:
    return f"dataset.{field}={json.dumps(value)}"


def cross_validate(config_path: str | Path, folds: str, overrides: list[str] | tuple[str, ...] = (),
                   out: str | Path | None = None, seeds: list[int] | None = None, progress: bool = True,
                   log: Callable[[str], None] = print) -> tuple[Path, dict]:
    """Train every chosen fold × seed; write ``cv.json`` and ``cv.md``. Returns (folder, summary)."""
    overrides = list(overrides)
    config = load_config(config_path, overrides)
    field, chosen = fold_folds(config, folds, overrides, log)
    out_dir = Path(out) if out else default_run_dir(config, trained_modalities(config), prefix="cv-")
    log(f"cross-validation over {len(chosen)} fold(s) ({', '.join(n for n, _ in chosen)}) -> {out_dir}")
    runs: list[FoldRun] = []
    multilabel = config.train.multilabel
    for name, value in chosen:
        fold_sets = overrides + [fold_override(field, value)]
        fold_config = load_config(config_path, fold_sets)
        log(f"== fold {name} ({fold_override(field, value)})")
        _, _, results = train_experiment(fold_config, out_dir / name, seeds, fold_sets, progress, log)
        for r in results:
            table = pd.read_csv(Path(r.run_dir) / "predictions.csv", dtype=str, keep_default_na=False)
            runs.append(FoldRun(name, r.metrics["run"]["seed"], str(r.run_dir), r.metrics, table))
    summary = cv_summary(runs, multilabel)
    summary.update({"fold_field": f"dataset.{field}", "fold_values": {n: v for n, v in chosen},
                    "config": str(config_path), "overrides": overrides})
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(summary, out_dir / "cv.json")
    title = f"Cross-validation: {config.train.model} on {'+'.join(trained_modalities(config))}, {config.corpus}"
    (out_dir / "cv.md").write_text(cv_markdown(summary, title), encoding="utf-8")
    return out_dir, summary


__all__ = ["cross_validate", "fold_folds", "fold_override", "select_folds"]
