"""``mer ablate``: train a grid of configurations × seeds over the cached features.

GRID.yaml lists axes; the cells are their Cartesian product::

    modalities: [[text], [audio], [text, audio], [text, audio, bio]]   # or: modalities: subsets
    model: [lmr, concat]
    seeds: [0, 1, 2]                         # default: train.seeds of the config
    train.lmr.lambda_iamc: [0.0, 0.1]        # any train.* field, as a list of values
    folds: all                               # or [1, 3]: folds of the dataset's protocol

``modalities: subsets`` means every non-empty subset of the config's modalities
(``train.modalities``, else every ``features`` key), smallest first. ``folds`` (``all`` or a
list of fold names/numbers, as ``mer train --folds``) becomes the axis of the adapter's fold
field (``dataset.protocol`` for RAVDESS: cells named ``protocol=fold3``): each fold has its own
manifest over the same caches.

Invalid cells are SKIPPED, not replaced: a model that cannot take a cell's modalities
(``lmr`` with one modality, ``unimodal`` with several) is listed in ablation.csv with
``status = skipped`` and the model's own reason. Substituting another model would silently
duplicate the rows of that other model and blur what the grid compares.

Nothing is extracted: every needed cache is verified first, and the command refuses with
the extract command for any that is missing. Each cell+seed trains in its own run folder
``<out>/cells/<cell>/seed<k>/`` (the normal run outputs) and then writes ``result.json``
atomically (temporary file + rename), with what the result depends on: the fully resolved config,
the cache key of each modality and the manifest fingerprint. A re-run skips every cell+seed whose
result has the same; one whose settings changed (``--set train.epochs=2`` on a re-run into the same
folder) runs again, and the log names what changed. So an interrupted ablation resumes where it
stopped, and never returns results of other settings. Cells run sequentially in-process, or in
parallel on Dask workers (``--workers N`` starts a LocalCluster, ``--scheduler ADDR`` joins
a running one); in both cases each process reads each modality's cache once and reuses it
across the cells it trains.

Outputs: ``ablation.csv`` (one row per cell+seed) and ``ablation.md`` (per cell, mean ± std
over seeds; sorted by the VALIDATION value of ``train.select_metric``, because ordering
configurations by a test score is itself a selection on test; test columns are shown).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mer.config import load_config
from mer.cv import fold_folds
from mer.experiment import experiment_modalities, manifest_for, modality_sources, train_job, trained_modalities
from mer.pipeline.corpus import dataset_key
from mer.pipeline.config_schema import ConfigError, load_yaml
from mer.pipeline.layout import plain_json
from mer.pipeline.manifest import Manifest
from mer.train import registry
from mer.train.data import verify_caches
from mer.train.metrics import headline
from mer.train.stats import t_interval

RESULT = "result.json"

#: relative cost of one run by model, for longest-first scheduling on Dask workers; other
#: models count 1. On the demo corpus an LMR-CL run costs about ten times a unimodal, concat or
#: late run (bench/README.md, "Decisions and the measurements behind them"); mpuc pre-trains
#: encoders and is as heavy as lmr.
MODEL_COST = {"lmr": 10.0, "mpuc": 10.0}
AXIS_ALIASES = {"modalities": "train.modalities", "model": "train.model"}


@dataclass(frozen=True)
class Cell:
    """One grid point: its ``--set`` overrides (besides the seed) and a stable folder name."""

    overrides: tuple[tuple[str, Any], ...]

    @property
    def values(self) -> dict[str, Any]:
        return dict(self.overrides)

    @property
    def name(self) -> str:
        v = self.values
        parts = [str(v.get("train.model", "")), "+".join(v.get("train.modalities", []) or [])]
        for key, value in self.overrides:
            if key not in ("train.model", "train.modalities"):
                parts.append(f"{key.split('.')[-1]}={_short(value)}")
        digest = hashlib.sha256(json.dumps(self.overrides, default=str).encode()).hexdigest()[:6]
        return "-".join(p for p in parts if p) + f"-{digest}"

    def set_strings(self) -> list[str]:
        return [f"{k}={json.dumps(v)}" for k, v in self.overrides]


def _short(value: Any) -> str:
    text = "+".join(map(str, value)) if isinstance(value, list) else str(value)
    return "".join(ch if ch.isalnum() or ch in "._+" else "_" for ch in text)


@dataclass
class Grid:
    axes: dict[str, list[Any]]
    seeds: list[int]

    def cells(self) -> list[Cell]:
        keys = list(self.axes)
        return [Cell(tuple(zip(keys, combo))) for combo in itertools.product(*(self.axes[k] for k in keys))]


def all_subsets(modalities: list[str]) -> list[list[str]]:
    return [list(c) for r in range(1, len(modalities) + 1) for c in itertools.combinations(modalities, r)]


def parse_grid(path: str | Path, config, overrides: list[str] | tuple[str, ...] = ()) -> Grid:
    """Read GRID.yaml; axes are ``modalities``, ``model``, ``seeds`` and ``train.*`` keys."""
    source = str(path)
    raw = load_yaml(path)
    seeds = raw.pop("seeds", None)
    if seeds is None:
        seeds = list(config.train.seeds) or [0]
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError(f"{source}: 'seeds' must be a list of integers, got {seeds!r}")
    axes: dict[str, list[Any]] = {}
    for key, values in raw.items():
        if key == "folds":
            if isinstance(values, list):
                values = ",".join(str(v) for v in values)
            if not isinstance(values, (str, int)):
                raise ConfigError(f"{source}: 'folds' must be 'all' or a list of folds, got {values!r}")
            field, chosen = fold_folds(config, str(values), list(overrides))
            axes[f"dataset.{field}"] = [value for _, value in chosen]
            continue
        full = AXIS_ALIASES.get(key, key)
        if not full.startswith("train."):
            raise ConfigError(f"{source}: axis {key!r}: only modalities, model, seeds, folds and train.* fields can "
                              "vary (features and caches are fixed by the config; ablate extracts nothing)")
        if full == "train.modalities" and values == "subsets":
            base = list(config.train.modalities or list(config.features))
            values = all_subsets(base)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: axis {key!r} must be a non-empty list of values, got {values!r}")
        if full == "train.modalities":
            values = [[v] if isinstance(v, str) else v for v in values]
            for v in values:
                if not isinstance(v, list) or not v or not all(isinstance(m, str) for m in v):
                    raise ConfigError(f"{source}: 'modalities' entries must be non-empty lists of names, got {v!r}")
                unknown = [m for m in v if m not in config.features]
                if unknown:
                    raise ConfigError(f"{source}: modalities {unknown} are not keys of the config's 'features' "
                                      f"({', '.join(config.features)})")
        axes[full] = values
    # validate every value against the config schema once, so a typo fails before any training
    for cell in Grid(axes, seeds).cells():
        load_config(config.source, list(overrides) + cell.set_strings())
    return Grid(axes, seeds)


def cell_config(config_path: str, base_overrides: list[str], cell: Cell, seed: int):
    return load_config(config_path, list(base_overrides) + cell.set_strings() + [f"train.seeds=[{seed}]"])


def invalid_reason(config) -> str:
    """Why a cell cannot run ('' when it can).

    Besides the model's own check (lmr needs 2-3 modalities), a ``unimodal`` cell that lists
    several modalities is skipped: unimodal would train on the first one only, duplicating
    that modality's own cell under another name.
    """
    cls = registry.model_class(config.train.model)
    listed = experiment_modalities(config)
    used = cls.use_modalities(listed)
    try:
        cls.check_modalities(used)
    except ValueError as exc:
        return str(exc)
    if used != listed:
        return (f"{config.train.model} trains on one modality; this cell lists {listed} "
                f"(use modalities: [[{listed[0]}]] for it)")
    return ""


def run_cell(config_path: str, base_overrides: list[str], cell: Cell, seed: int, run_dir: str,
             threads: int = 0, progress: bool = False) -> dict:
    """Train one cell+seed (in this process or on a Dask worker) and write ``result.json``."""
    import torch

    from mer.features.device import resolve_device
    from mer.train.run import load_job_data, train_one

    if threads:
        torch.set_num_threads(threads)
    config = cell_config(config_path, base_overrides, cell, seed)
    job = train_job(config, trained_modalities(config), base_overrides, log=lambda line: None)
    data = load_job_data(job, resolve_device(config.train.device), reuse=True)
    result = train_one(job, data, Path(run_dir), seed, progress=progress, log=lambda line: None)
    record = {"cell": cell.name, "overrides": [list(o) for o in cell.overrides], "seed": seed,
              "identity": cell_identity(config, job.manifest, base_overrides),
              "run_dir": str(run_dir), "metrics": {s: headline(result.metrics[s], data.multilabel)
                                                   for s in ("train", "val", "test") if s in result.metrics},
              "run": result.metrics["run"]}
    path = Path(run_dir) / RESULT
    tmp = path.with_name(RESULT + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return record


def cell_identity(config, manifest: Manifest, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """What a cell's result depends on: the fully resolved config (where outputs go aside), the
    cache key of each modality it reads, and the manifest's fingerprint."""
    record = config.to_dict()
    record.pop("output", None)
    sources = modality_sources(config, trained_modalities(config), overrides)
    return plain_json({"config": record, "cache_keys": {m: s.key for m, s in sources.items()},
                       "manifest": manifest.fingerprint})


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: obj}


def identity_changes(old: dict | None, new: dict) -> list[str]:
    """``key: old -> new`` for every setting that differs (all of them when none was recorded)."""
    if not old:
        return ["its result records no settings (written by an older mer)"]
    # config keys as the user writes them (train.epochs), the rest under their own names
    a, b = ({**_flat(d.get("config", {})), **_flat({k: v for k, v in d.items() if k != "config"})} for d in (old, new))
    return [f"{k}: {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def finished(run_dir: Path, cell: Cell, seed: int, identity: dict) -> tuple[dict | None, list[str]]:
    """(the stored result of a cell+seed, what changed since): a result counts only when it is the
    same cell with the same resolved settings, caches and manifest; else the changes are named."""
    path = run_dir / RESULT
    if not path.is_file():
        return None, []
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("overrides") != [list(o) for o in cell.overrides] or record.get("seed") != seed:
        return None, ["another cell ran in this folder"]
    changes = identity_changes(record.get("identity"), identity)
    return (None, changes) if changes else (record, [])


def ablate(config_path: str, grid_path: str, overrides: list[str] | tuple[str, ...] = (), out: str | None = None,
           scheduler: str = "", workers: int = 0, progress: bool = True,
           log: Callable[[str], None] = print) -> tuple[Path, pd.DataFrame]:
    """Run the grid; returns (output folder, the ablation.csv table)."""
    overrides = list(overrides)
    config = load_config(config_path, overrides)
    grid = parse_grid(grid_path, config, overrides)
    out_dir = Path(out) if out else Path(config.output) / config.corpus / f"ablate-{Path(grid_path).stem}"
    out_dir.mkdir(parents=True, exist_ok=True)

    tasks, rows = [], []
    needed: set[str] = set()
    # one config per dataset section (a folds axis gives several): each one's manifest is built
    # here, once, before any cell runs (cells on Dask workers then only read it)
    sections: dict[str, Any] = {}
    described: dict[str, tuple[str, str]] = {}
    for cell in grid.cells():
        first = cell_config(config_path, overrides, cell, grid.seeds[0])
        reason = invalid_reason(first)
        described[cell.name] = (first.train.model, "+".join(experiment_modalities(first)))
        for seed in grid.seeds:
            run_dir = out_dir / "cells" / cell.name / f"seed{seed}"
            if reason:
                rows.append(_row(cell, seed, described[cell.name], "skipped", reason=reason))
                continue
            needed.update(experiment_modalities(first))
            sections.setdefault(dataset_key(first.dataset),
                                (first, overrides + [s for s in cell.set_strings() if s.startswith("dataset.")]))
            tasks.append((cell, seed, run_dir))
    for section_config, section_sets in sections.values():
        manifest, _ = manifest_for(section_config, section_sets, log)
        verify_caches(manifest, modality_sources(section_config, sorted(needed), section_sets))

    done = {}
    todo = []
    rerun = 0
    for cell, seed, run_dir in tasks:
        identity = cell_identity(cell_config(config_path, overrides, cell, seed), manifest, overrides)
        record, changes = finished(run_dir, cell, seed, identity)
        if record is not None:
            done[(cell.name, seed)] = record
            continue
        if changes:
            rerun += 1
            shown = "; ".join(changes[:4]) + (f"; and {len(changes) - 4} more" if len(changes) > 4 else "")
            log(f"{cell.name} seed {seed}: settings changed since it ran ({shown}); running it again")
        todo.append((cell, seed, run_dir))
    log(f"ablation {out_dir}: {len(grid.cells())} cells × {len(grid.seeds)} seeds; "
        f"{len(done)} finished before, {len(todo)} to run ({rerun} of them again: changed settings), "
        f"{len(rows)} skipped (invalid)")

    if scheduler or workers > 0:
        todo = longest_first(todo, described)
    for record in _execute(config_path, overrides, todo, scheduler, workers, progress):
        done[(record["cell"], record["seed"])] = record
    for cell, seed, run_dir in tasks:
        record = done[(cell.name, seed)]
        rows.append(_row(cell, seed, described[cell.name], "done", record=record))
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / "ablation.csv", index=False)
    (out_dir / "ablation.md").write_text(markdown(table, config.train.select_metric, grid), encoding="utf-8")
    return out_dir, table


def longest_first(todo: list, described: dict[str, tuple[str, str]]) -> list:
    """``todo`` (cell, seed, run_dir) ordered by decreasing expected cost (:data:`MODEL_COST` of
    the model times the modality count), grid order within ties.

    Why: with N workers the ablation ends when the last run ends. In grid order (smallest
    modality subsets first) the biggest LMR-CL runs come last and one worker finishes the
    grid alone while the others idle; longest-processing-time-first is the classic remedy
    (the measured single-worker tail is in bench/README.md).
    """
    def cost(task) -> float:
        model, modalities = described[task[0].name]
        return MODEL_COST.get(model, 1.0) * len(modalities.split("+"))
    return sorted(todo, key=cost, reverse=True)  # sorted() is stable: ties keep grid order


def _execute(config_path: str, overrides: list[str], todo: list, scheduler: str, workers: int, progress: bool):
    """Yield result records as cells finish: in-process, or through Dask."""
    if not todo:
        return
    if not scheduler and workers <= 0:
        for cell, seed, run_dir in tqdm(todo, desc="ablate", unit="run", disable=None if progress else True):
            yield run_cell(config_path, overrides, cell, seed, str(run_dir))
        return
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
        threads = 0
    else:
        from mer.features.device import usable_cpus
        from mer.pipeline.cluster_env import torch_friendly_workers

        with torch_friendly_workers():  # without Dask's MALLOC_TRIM_THRESHOLD_ (see cluster_env)
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        threads = max(1, usable_cpus() // workers)
    try:
        # Feed the cluster ourselves, one run per worker thread, in ``todo`` order. Submitting
        # everything at once lets the scheduler hand small task groups (3 unimodal seeds) to
        # workers eagerly, whatever their priority, and the longest-first order is lost.
        waiting = iter(enumerate(todo))
        running = as_completed()

        def top_up() -> None:
            slots = max(1, sum(client.nthreads().values()))
            while running.count() < slots:
                nxt = next(waiting, None)
                if nxt is None:
                    return
                i, (cell, seed, run_dir) = nxt
                running.add(client.submit(run_cell, config_path, overrides, cell, seed, str(run_dir), threads,
                                          pure=False, key=f"ablate-{i:04d}-{cell.name}-seed{seed}"))

        top_up()
        with tqdm(total=len(todo), desc="ablate", unit="run", disable=None if progress else True) as bar:
            for future in running:
                record = future.result()
                top_up()
                bar.update()
                yield record
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _row(cell: Cell, seed: int, described: tuple[str, str], status: str, reason: str = "",
         record: dict | None = None) -> dict:
    row: dict[str, Any] = {"cell": cell.name, "seed": seed, "status": status, "reason": reason,
                           "model": described[0], "modalities": described[1]}
    for key, value in cell.overrides:
        if key not in ("train.model", "train.modalities"):
            row[key] = json.dumps(value) if isinstance(value, (list, dict)) else value
    if record:
        for split, metrics in record["metrics"].items():
            for k, val in metrics.items():
                row[f"{split}_{k}"] = val
        row["best_epoch"] = record["run"]["best_epoch"]
        row["run_dir"] = record["run_dir"]
    return row


def _interval_text(values: np.ndarray) -> str:
    """``[low, high]`` of the t interval over seeds (mer.train.stats), ``n/a`` for one value."""
    iv = t_interval(values)
    return "n/a" if iv.n < 2 else f"[{iv.low:.4f}, {iv.high:.4f}]"


def markdown(table: pd.DataFrame, metric: str, grid: Grid) -> str:
    """Per cell: mean ± std over seeds of val/test metrics, sorted by val ``metric``."""
    lines = [f"# Ablation ({len(grid.seeds)} seed(s): {grid.seeds})", "",
             f"Sorted by validation {metric} (mean over seeds); mean ± std (population) over seeds; "
             f"95% CI: Student-t interval of the mean test {metric} over the seeds (n/a with one seed; "
             "`mer compare CELL_A CELL_B` tests a difference between two cells).", ""]
    done = table[table["status"] == "done"] if "status" in table else table.iloc[0:0]
    metric_cols = [c for c in done.columns if c.startswith(("val_", "test_"))]
    if len(done):
        # train_* metrics stay in ablation.csv only: as key columns they showed one seed's raw value
        key_cols = [c for c in done.columns if c not in metric_cols + ["seed", "status", "reason", "best_epoch", "run_dir"]
                    and not c.startswith("train_")]
        groups = []
        for _, g in done.groupby("cell", sort=False):
            first = g.iloc[0]
            entry = {c: first[c] for c in key_cols if c != "cell"}
            entry["seeds"] = len(g)
            for c in metric_cols:
                vals = g[c].astype(float).to_numpy()
                entry[c] = f"{np.mean(vals):.4f} ± {np.std(vals):.4f}"
            if f"test_{metric}" in g:
                entry[f"95% CI test_{metric}"] = _interval_text(g[f"test_{metric}"].astype(float).to_numpy())
            entry["_sort"] = float(g[f"val_{metric}"].astype(float).mean()) if f"val_{metric}" in g else float("nan")
            groups.append(entry)
        groups.sort(key=lambda e: -e["_sort"] if e["_sort"] == e["_sort"] else float("inf"))
        cols = [c for c in groups[0] if c != "_sort"]
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "---|" * len(cols))
        for e in groups:
            lines.append("| " + " | ".join(str(e[c]) for c in cols) + " |")
    skipped = table[table["status"] == "skipped"] if "status" in table else table.iloc[0:0]
    if len(skipped):
        lines += ["", "## Skipped cells", ""]
        for _, g in skipped.groupby("cell", sort=False):
            lines.append(f"- {g.iloc[0]['cell']}: {g.iloc[0]['reason']}")
    return "\n".join(lines) + "\n"


__all__ = ["Cell", "Grid", "ablate", "all_subsets", "markdown", "parse_grid", "run_cell"]
