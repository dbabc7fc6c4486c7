#!/usr/bin/env python
"""Benchmark of training over the feature cache: ``mer``'s trainer vs the loop people write,
``mer ablate`` vs re-extracting per run, torch threads, and cache bytes per hour of audio.

    python bench/train.py              # default: 5 reps (grid once); ~80 min on a shared 2-core CPU
    python bench/train.py --quick      # smoke run: 1 rep, 2,000 samples, seed 0 only (~15 min)
    python bench/train.py --reps 7 --only epoch

Sections (``--only``; every figure is the median [min-max] of ``--reps`` repetitions, the
variants of one comparison interleaved in a rotating order):

1. ``epoch``: seconds per training epoch over a float16 cache of 10,000 samples with three
   modalities (768-d text, 1024-d audio, 19-d bio: BERT-base / Wav2Vec2-large sized), written
   by the real ``extract()`` through a synthetic encoder (``bench/benchkit/synth.py``).
   ``mer``: the trainer's data path (every modality one on-device tensor, batches = index
   slices of a seeded ``torch.randperm``; :meth:`mer.train.data.TrainData.batch`). ``DataLoader``:
   a ``torch.utils.data.Dataset`` whose ``__getitem__`` reads one sample per modality from the
   HDF5 shards with h5py (files opened lazily, once per worker process) and standardises it,
   ``DataLoader(batch_size, shuffle=True, num_workers=0|2)`` with the default collate, in the
   common form (``f["pooled"][row]``) and with the h5py Dataset objects kept. Both sides feed
   the SAME model class and the same optimiser step (``concat``, and ``lmr`` at the demo size
   of ``configs/demo.yaml``). Timed: the epoch loop only, after one warm-up epoch per
   variant. Also: one ``fit()`` epoch (mer's trainer itself, with validation scoring).
   ``--threads`` (default 1) sets torch's threads for all variants.
2. ``threads``: one ``mer train`` run (LMR text+audio, 1 epoch, a fresh process) with torch's
   default threads vs ``OMP_NUM_THREADS=1``.
3. ``ablate``: wall time of ``mer ablate`` (the CLI, a fresh process) over the 7 modality
   subsets of text/audio/bio × 3 seeds on the demo corpus (1,200 utterances,
   ``configs/demo.yaml`` as it is; grid ``model: [unimodal, lmr]``, whose invalid cells
   ablate skips, so single modalities train ``unimodal`` and the others ``lmr``), with the
   seconds of every run, versus the same grid if every run re-extracted its features
   (COMPUTED: grid time + Σ_runs Σ_modalities(run) the modality's extraction time, each
   modality's extraction timed once in the same benchmark run). The grid runs
   ``--ablate-reps`` times (default 1) with ``OMP_NUM_THREADS=--ablate-threads`` (default 1).
   The demo corpus and its caches are generated once into ``bench/.work/`` (gitignored) and
   reused while the generator and the config's dataset/cache/features sections are unchanged.
4. ``bytes``: cache bytes per hour of audio for the demo corpus's audio encoders (eGeMAPS,
   log-mel), float16 vs float32. Wav2Vec2 float16/float32 and all layers vs last layer are
   measured by ``bench/extract.py`` (section 5); its JSON is quoted when present.

Results: printed tables and ``bench/results/train.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))
from common import (RESULTS, Stat, dir_bytes, human_bytes, loadavg, machine_info, ratio, table,  # noqa: E402
                    timed, usable_cpus, write_json)

WORK = BENCH / ".work"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"
SECTIONS = ("epoch", "threads", "ablate", "bytes")
CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
#: section 1: modality -> (dimension, encoder family the cache records; LMR's branch follows it)
EPOCH_MODALITIES = {"text": (768, "hf-text"), "audio": (1024, "hf-audio"), "bio": (19, "e4")}
LMR_SIZES = ("hidden", "tokens", "layers", "heads", "ffn")


def demo_lmr() -> dict:
    """Section 1's LMR: the demo-sized one of configs/demo.yaml (the paper's is hidden 256,
    32 tokens, 3 layers, FFN 1024: ~1 GFLOP per sample per forward)."""
    from mer.config import load_config

    lmr = load_config(DEMO_CONFIG, ["dataset.root=."]).train.lmr
    return {k: getattr(lmr, k) for k in LMR_SIZES}
#: modalities of the demo grid and the encoders whose caches section 3 measures
DEMO_TRAIN_MODALITIES = ["text", "audio", "bio"]
DEMO_AUDIO_MODALITIES = ["audio", "mel"]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_yaml(path: Path, data: dict) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


# =============================================================================================
# 1. per-epoch time: mer's on-device batches vs Dataset + DataLoader over the HDF5 shards
# =============================================================================================

def epoch_corpus(root: Path, n: int, batch_size: int) -> Path:
    """A generic manifest of ``n`` samples (100 speakers; 80 % train, 10 % val, 10 % test) and a
    config whose three modalities are ``benchkit.synth`` vectors; returns the config path."""
    import pandas as pd

    groups = 100
    rng = np.random.default_rng(0)
    labels = rng.choice(CLASSES, size=n, p=[0.1, 0.05, 0.08, 0.2, 0.3, 0.17, 0.1])
    g = np.arange(n) % groups
    split = np.where(g < 80, "train", np.where(g < 90, "val", "test"))
    table_ = pd.DataFrame({"id": [f"s{i:05d}" for i in range(n)], "label": labels, "group": [f"spk{k:03d}" for k in g],
                           "split": split})
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "corpus.csv"
    if not manifest.is_file() or manifest.read_text(encoding="utf-8") != table_.to_csv(index=False):
        table_.to_csv(manifest, index=False)
    features = {m: {"encoder": "benchkit.synth", "column": "label", "dim": d, "family": fam, "classes": CLASSES,
                    "spread": 0.35, "noise": 1.0, "seed": k} for k, (m, (d, fam)) in enumerate(EPOCH_MODALITIES.items())}
    config = {
        "dataset": {"name": "generic", "manifest": str(manifest), "corpus": f"epoch{n}"},
        "cache": {"root": str(root / "cache"), "dtype": "float16", "shard_size": 256},
        "features": features,
        "extract": {"device": "cpu"},
        "train": {"model": "concat", "modalities": list(EPOCH_MODALITIES), "epochs": 2, "batch_size": batch_size,
                  "lr": 1e-3, "hidden": 256, "dropout": 0.1, "device": "cpu", "classes": CLASSES, "plots": False,
                  "lmr": demo_lmr()},
        "output": str(root / "runs"),
    }
    return write_yaml(root / "config.yaml", config)


class H5FeatureDataset:
    """The conventional loader: one sample per ``__getitem__``, read from the HDF5 shards.

    As people write it: an id -> (shard file, row) index built once; files opened lazily on
    first use in each process (h5py handles must not cross a fork, so the DataLoader workers
    open their own); each item reads one row per modality, standardises it with the training
    split's mean/std and returns tensors for the default collate.

    ``handles=False`` is the common form ``f["pooled"][row]``: every access looks the dataset
    up by name, and h5py builds a new Dataset object (metadata reads) each time, which costs
    ~20x the row read itself. ``handles=True`` keeps the Dataset objects per process (the
    careful form).
    """

    def __init__(self, dirs: dict[str, Path], ids: list[str], labels: np.ndarray, stats: dict[str, dict],
                 handles: bool = False):
        import h5py

        self.ids = list(ids)
        self.labels = labels
        self.handles = handles
        self.stats = {m: (np.asarray(s["mean"], np.float32), np.asarray(s["std"], np.float32)) for m, s in stats.items()}
        self.where: dict[str, list[tuple[str, int]]] = {}
        for m, folder in dirs.items():
            index: dict[str, tuple[str, int]] = {}
            for path in sorted(folder.glob("shard-*.h5")):
                with h5py.File(path, "r") as f:
                    for row, sample_id in enumerate(f["ids"].asstr()[:]):
                        index[sample_id] = (str(path), row)
            self.where[m] = [index[i] for i in self.ids]
        self._files: dict[str, Any] = {}
        self._datasets: dict[tuple[str, str], Any] = {}
        self._pid = -1

    def __len__(self) -> int:
        return len(self.ids)

    def _file(self, path: str):
        import h5py

        if self._pid != os.getpid():  # a new worker process: its own handles
            self._files, self._datasets, self._pid = {}, {}, os.getpid()
        if path not in self._files:
            self._files[path] = h5py.File(path, "r")
        return self._files[path]

    def _dataset(self, path: str, name: str):
        f = self._file(path)
        if not self.handles:
            return f[name]
        key = (path, name)
        if key not in self._datasets:
            self._datasets[key] = f[name]
        return self._datasets[key]

    def __getitem__(self, i: int) -> dict:
        import torch

        x, present = {}, {}
        for m, where in self.where.items():
            path, row = where[i]
            ok = bool(self._dataset(path, "ok")[row])
            mean, std = self.stats[m]
            value = (self._dataset(path, "pooled")[row].astype(np.float32) - mean) / std if ok else np.zeros_like(mean)
            x[m] = torch.from_numpy(value)
            present[m] = torch.tensor(ok)
        return {"x": x, "present": present, "y": int(self.labels[i])}


def make_loader(dataset, batch_size: int, workers: int, seed: int):
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                      generator=torch.Generator().manual_seed(seed))


def train_step(model, batch, criterion, optimizer, grad_clip: float) -> None:
    """The trainer's optimiser step (mer.train.trainer.fit), shared by both sides."""
    import torch

    out = model(batch.x, batch.present)
    total, _ = model.losses(out, batch, criterion)
    if not torch.isfinite(total):
        raise RuntimeError("non-finite loss in the benchmark")
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()


@dataclass
class EpochVariant:
    """One (model, data path) pair: its own model, optimiser and data iterator."""

    name: str
    model_name: str
    run: Callable[[], int]


def build_model(cfg, data, model_name: str, seed: int = 0):
    import torch

    from mer.train import registry
    from mer.train.trainer import make_criterion, make_optimizer

    torch.manual_seed(seed)
    cls = registry.model_class(model_name)
    model = cls(**cls.from_config(cfg.train, data.inputs(), data.num_classes)).to(data.device)
    model.prepare_training(data.num_groups, torch.Generator().manual_seed(seed))
    return model, make_criterion(data, cfg.train.class_weights), make_optimizer(model, cfg.train)


def mer_variant(cfg, data, model_name: str) -> EpochVariant:
    import torch

    from mer.train.trainer import epoch_order

    model, criterion, optimizer = build_model(cfg, data, model_name)
    train_idx = data.index("train")
    n = len(train_idx)
    generator = torch.Generator().manual_seed(0)
    bs, clip = cfg.train.batch_size, cfg.train.grad_clip

    def run() -> int:
        model.train()
        order = epoch_order(n, generator, None).to(data.device)
        for start in range(0, n, bs):
            train_step(model, data.batch(train_idx[order[start:start + bs]]), criterion, optimizer, clip)
        return n

    return EpochVariant("mer", model_name, run)


def loader_variant(cfg, data, model_name: str, dataset: H5FeatureDataset, workers: int) -> EpochVariant:
    from mer.train.models.common import Batch

    model, criterion, optimizer = build_model(cfg, data, model_name)
    loader = make_loader(dataset, cfg.train.batch_size, workers, seed=0)
    clip = cfg.train.grad_clip

    def run() -> int:
        model.train()
        n = 0
        for item in loader:
            batch = Batch(x=item["x"], present=item["present"], y=item["y"], group_y=item["y"])
            train_step(model, batch, criterion, optimizer, clip)
            n += len(item["y"])
        return n

    style = "handles kept" if dataset.handles else "f[name][row]"
    return EpochVariant(f"DataLoader {style}, workers={workers}", model_name, run)


def fit_variant(cfg, data, model_name: str) -> EpochVariant:
    """mer's ``fit()`` itself for one epoch (a fresh optimiser each call; validation scored)."""
    import copy

    from mer.train.trainer import fit

    model, _, _ = build_model(cfg, data, model_name)
    train = copy.deepcopy(cfg.train)
    train.epochs, train.patience = 1, 10
    calls = [0]

    def run() -> int:
        calls[0] += 1
        fit(model, data, train, seed=calls[0], progress=False)
        return len(data.rows("train"))

    return EpochVariant("mer fit() (+ val scoring)", model_name, run)


def check_agreement(data, dataset: H5FeatureDataset) -> dict:
    """The DataLoader side reads the same standardised values mer keeps on the device
    (``dataset`` holds the training rows: its item k is TrainData row ``rows("train")[k]``)."""
    train_rows = data.rows("train")
    positions = np.linspace(0, len(dataset) - 1, 50).astype(int)
    diff = 0.0
    for k in positions:
        item = dataset[int(k)]
        if item["y"] != int(data.y[int(train_rows[k])]):
            raise RuntimeError(f"DataLoader item {k} has label {item['y']}, mer row {train_rows[k]} another")
        for m, d in data.modalities.items():
            diff = max(diff, float((item["x"][m] - d.x[int(train_rows[k])]).abs().max()))
    return {"items_checked": len(positions), "max_abs_diff": diff}


def section_epoch(record: dict, tables: list[str], reps: int, n: int, batch_size: int, threads: int) -> None:
    import torch

    from mer.config import load_config
    from mer.pipeline.extract import extract
    from mer.experiment import load_experiment_data
    from mer.experiment import manifest_for

    root = WORK / f"epoch-{n}"
    config_path = epoch_corpus(root, n, batch_size)
    cfg = load_config(config_path)
    lmr_sizes = {k: getattr(cfg.train.lmr, k) for k in LMR_SIZES}
    log(f"epoch: cache of {n} samples ({', '.join(f'{m} {d}-d' for m, (d, _) in EPOCH_MODALITIES.items())}, float16) "
        f"in {root}")
    seconds, report = timed(lambda: extract(cfg, progress=False))
    log(f"epoch: extract() {seconds:.1f} s (" + ", ".join(f"{m}: {r.samples_extracted} new, {r.shards_skipped} shards kept"
                                                         for m, r in report.modalities.items()) + ")")
    manifest, _ = manifest_for(cfg)
    load_s, data = timed(lambda: load_experiment_data(cfg, manifest, list(EPOCH_MODALITIES), device="cpu"))
    dirs = {m: Path(report.modalities[m].dir) for m in EPOCH_MODALITIES}
    cache_bytes = {m: dir_bytes(d, "*.h5") for m, d in dirs.items()}
    train_ids = [data.ids[i] for i in data.rows("train")]
    labels = data.y[data.index("train")].numpy()
    stats_ = {m: d.stats for m, d in data.modalities.items()}
    index_s, naive = timed(lambda: H5FeatureDataset(dirs, train_ids, labels, stats_, handles=False))
    kept = H5FeatureDataset(dirs, train_ids, labels, stats_, handles=True)
    agreement = check_agreement(data, naive)
    agreement_kept = check_agreement(data, kept)
    if max(agreement["max_abs_diff"], agreement_kept["max_abs_diff"]) > 1e-5:
        raise RuntimeError(f"the DataLoader side does not read mer's values: {agreement}, {agreement_kept}")
    item_us = {}
    for style, ds in (("f[name][row]", naive), ("handles kept", kept)):
        ds[0]
        item_us[style] = timed(lambda: [ds[k] for k in range(min(300, len(ds)))])[0] / min(300, len(ds)) * 1e6
    log(f"epoch: load_train_data {load_s:.2f} s; Dataset index {index_s:.2f} s; agreement max |diff| "
        f"{agreement['max_abs_diff']:.2e}; __getitem__ " + ", ".join(f"{k} {v:.0f} us" for k, v in item_us.items())
        + f"; torch threads {threads}")

    torch.set_num_threads(threads)
    # concat: the common form (f[name][row], no workers) and the best conventional form (h5py
    # handles kept, 2 workers overlapping the model); lmr (compute-bound): the best form only
    # (the f[name][row] form with 2 workers and the kept-handles form without workers sit between
    # these in every measured run, and are left out to keep `make bench` under 20 minutes)
    variants: list[EpochVariant] = [
        mer_variant(cfg, data, "concat"), fit_variant(cfg, data, "concat"),
        loader_variant(cfg, data, "concat", naive, 0), loader_variant(cfg, data, "concat", kept, 2),
        mer_variant(cfg, data, "lmr"), loader_variant(cfg, data, "lmr", kept, 2),
    ]
    params = {}
    for model_name in ("concat", "lmr"):
        model, _, _ = build_model(cfg, data, model_name)
        params[model_name] = sum(p.numel() for p in model.parameters())
    n_train = len(data.rows("train"))
    log(f"epoch: {n_train} training samples per epoch, batch {batch_size}; warm-up epoch per variant, then {reps} reps")
    from mer.train.trainer import deterministic

    stats: dict[tuple[str, str], Stat] = {}
    with deterministic():
        for v in variants:
            v.run()
            stats[(v.model_name, v.name)] = Stat()
        for rep in range(reps):
            shift = rep % len(variants)
            parts = []
            for v in variants[shift:] + variants[:shift]:
                seconds, count = timed(v.run)
                if count != n_train:
                    raise RuntimeError(f"{v.name} saw {count} samples, expected {n_train}")
                stats[(v.model_name, v.name)].add(seconds)
                parts.append(f"{v.model_name}/{v.name} {seconds:.2f}s")
            log(f"  rep {rep + 1}/{reps}: " + ", ".join(parts))

    lines, rec = [], {}
    for model_name in ("concat", "lmr"):
        mer = stats[(model_name, "mer")]
        rec[model_name] = {"parameters": params[model_name]}
        for (mn, name), st in stats.items():
            if mn != model_name:
                continue
            speed = ratio(st, mer)
            rec[model_name][name] = {"seconds": st.to_dict(), "samples_per_s": st.map(lambda s: n_train / s).to_dict(),
                                     "this_over_mer": speed.to_dict()}
            lines.append([model_name, name, st.fmt(".3f"), st.map(lambda s: n_train / s).fmt(".0f"),
                          "-" if name == "mer" else speed.fmt(".1f")])
    record["epoch"] = {
        "samples": n, "train_samples": n_train, "batch_size": batch_size, "torch_threads": threads,
        "cache_dtype": "float16", "dims": {m: d for m, (d, _) in EPOCH_MODALITIES.items()},
        "cache_h5_bytes": cache_bytes, "lmr": lmr_sizes, "concat_hidden": cfg.train.hidden,
        "optimizer": cfg.train.optimizer, "lr": cfg.train.lr, "grad_clip": cfg.train.grad_clip,
        "extract_seconds": round(seconds, 2), "load_train_data_seconds": round(load_s, 3),
        "dataset_index_seconds": round(index_s, 3),
        "getitem_microseconds_in_process": {k: round(v, 1) for k, v in item_us.items()}, "agreement": {"f[name][row]": agreement, "handles kept": agreement_kept},
        "results": rec,
        "target": "DataLoader / mer >= 5x",
    }
    tables.append(table(["model", "data path", "s / epoch", "samples/s", "this / mer"], lines,
                        title=f"1. Per-epoch time ({n_train} training samples of {n}, batch {batch_size}, "
                              f"float16 cache {human_bytes(sum(cache_bytes.values()))}, torch threads {threads}; "
                              f"lmr = configs/demo.yaml's: hidden {lmr_sizes['hidden']}, {lmr_sizes['tokens']} tokens, "
                              f"{lmr_sizes['layers']} layers, FFN {lmr_sizes['ffn']}; target: DataLoader / mer >= 5x; "
                              "__getitem__ in-process: " + ", ".join(f"{k} {v:.0f} us" for k, v in item_us.items())
                              + ")"))


# =============================================================================================
# 2. mer ablate on the demo corpus vs re-extracting per run
# =============================================================================================

def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def demo_overrides(root: Path, cache: str = "cache", dtype: str | None = None) -> list[str]:
    out = [f"dataset.root={root / 'corpus'}", f"cache.root={root / cache}", f"output={root / 'runs'}",
           "extract.device=cpu"]
    return out + ([f"cache.dtype={dtype}"] if dtype else [])


def demo_identity(root: Path, size: int, seed: int) -> dict:
    """What the prepared corpus and caches depend on: the generator's code, size, seed and the
    config's dataset/cache/features sections (its train section may change freely)."""
    from mer.pipeline import demo_corpus
    from mer.config import load_config

    config = load_config(DEMO_CONFIG, demo_overrides(root)).to_dict()
    caches = json.dumps({k: config[k] for k in ("dataset", "cache", "features")}, sort_keys=True, default=str)
    return {"generator_sha256": file_sha256(Path(demo_corpus.__file__)), "size": size, "seed": seed,
            "config_caches_sha256": hashlib.sha256(caches.encode()).hexdigest()}


def prepare_demo(size: int, seed: int = 0) -> tuple[Path, dict]:
    """Generate the demo corpus and extract its caches once; reuse them while the generator,
    the size and the config are unchanged. Returns (work folder, the preparation record)."""
    from mer.pipeline import demo_corpus
    from mer.config import load_config
    from mer.pipeline.extract import extract

    root = WORK / f"demo-{size}-s{seed}"
    stamp_path = root / "prepared.json"
    identity = demo_identity(root, size, seed)
    stamp = json.loads(stamp_path.read_text(encoding="utf-8")) if stamp_path.is_file() else {}
    if stamp.get("identity") == identity and stamp.get("complete"):
        log(f"demo: reusing {root} (generated {stamp['generated_at']})")
        return root, stamp
    if stamp.get("identity", {}).get("generator_sha256") not in (None, identity["generator_sha256"]):
        log("demo: the generator changed since the corpus was made: regenerating")
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    log(f"demo: generating {size} utterances into {root / 'corpus'}")
    gen_s, _ = timed(lambda: demo_corpus.generate(root / "corpus", size=size, seed=seed))
    stamp = {"identity": identity, "generated_at": time.strftime("%Y-%m-%d %H:%M:%S"), "generate_seconds": gen_s,
             "extract": {}, "complete": False}
    config = load_config(DEMO_CONFIG, demo_overrides(root))
    for m in list(config.features):  # one call per modality: its own timing and load average
        load = loadavg()
        report = extract(config, [m], progress=True)
        r = report.modalities[m]
        if not r.complete or r.failures:
            raise RuntimeError(f"demo: extraction of {m} incomplete or with failures: {r.to_dict()}")
        stamp["extract"][m] = {"seconds": r.seconds, "samples": r.present, "key": r.key, "family": r.family,
                               "dir": r.dir, "loadavg_before": load, "loadavg_after": loadavg()}
        log(f"demo: extracted {m} ({r.family}) in {r.seconds:.1f} s")
    config32 = load_config(DEMO_CONFIG, demo_overrides(root, "cache-float32", "float32"))
    stamp["extract_float32"] = {}
    for m in DEMO_AUDIO_MODALITIES:
        r = extract(config32, [m], progress=True).modalities[m]
        stamp["extract_float32"][m] = {"seconds": r.seconds, "key": r.key, "dir": r.dir}
        log(f"demo: extracted {m} float32 in {r.seconds:.1f} s")
    stamp["complete"] = True
    stamp_path.write_text(json.dumps(stamp, indent=2), encoding="utf-8")
    return root, stamp


def measure_extraction(root: Path, modalities: list[str]) -> dict[str, dict]:
    """Extract ``modalities`` of the prepared demo corpus once more into a temporary cache, so
    that the extraction times sit beside the grid times of the same benchmark run."""
    from mer.config import load_config
    from mer.pipeline.extract import extract

    tmp = Path(tempfile.mkdtemp(prefix="mer-bench-extract-once-"))
    out = {}
    try:
        config = load_config(DEMO_CONFIG, demo_overrides(root)[:1] + [f"cache.root={tmp}", f"output={tmp}",
                                                                        "extract.device=cpu"])
        for m in modalities:
            load = loadavg()
            r = extract(config, [m], progress=False).modalities[m]
            if not r.complete or r.failures:
                raise RuntimeError(f"extraction timing of {m}: incomplete or with failures")
            out[m] = {"seconds": r.seconds, "samples": r.present, "family": r.family, "key": r.key,
                      "loadavg_before": load, "loadavg_after": loadavg()}
            log(f"ablate: extraction of {m} ({r.family}) timed once: {r.seconds:.1f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def mer_executable() -> str:
    candidate = Path(sys.executable).parent / "mer"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("mer")
    if not found:
        raise RuntimeError("the mer command is not installed in this environment (pip install -e .)")
    return found


def run_ablate_cli(root: Path, grid: Path, out: Path, env: dict[str, str], sets: list[str], workers: int = 0) -> dict:
    """One ``mer ablate`` in a fresh process; per-run seconds from each run folder's files
    (config.yaml is written when a run starts, result.json when it ends)."""
    cmd = [mer_executable(), "ablate", "-c", str(DEMO_CONFIG), "-g", str(grid), "--out", str(out), "--quiet"]
    if workers:
        cmd += ["--workers", str(workers)]
    for o in demo_overrides(root) + sets:
        cmd += ["--set", o]
    start = time.time()
    wall, proc = timed(lambda: subprocess.run(cmd, capture_output=True, text=True, env=env))
    if proc.returncode != 0:
        raise RuntimeError(f"mer ablate failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    runs = []
    for result in sorted(out.glob("cells/*/seed*/result.json")):
        folder = result.parent
        rec = json.loads(result.read_text(encoding="utf-8"))
        began = (folder / "config.yaml").stat().st_mtime
        runs.append({"cell": folder.parent.name, "seed": rec["seed"], "model": rec["run"]["model"],
                     "modalities": rec["run"]["modalities"], "seconds": result.stat().st_mtime - began,
                     "started_after": began - start, "epochs_run": rec["run"]["epochs_run"],
                     "best_epoch": rec["run"]["best_epoch"],
                     "test_macro_f1": rec["metrics"].get("test", {}).get("macro_f1"),
                     "test_uar": rec["metrics"].get("test", {}).get("uar")})
    first = min((r["started_after"] for r in runs), default=wall)
    return {"wall": wall, "runs": runs, "startup": first, "stdout_tail": proc.stdout[-1500:]}


def section_ablate(record: dict, tables: list[str], reps: int, size: int, seeds: list[int], threads: int,
                   fresh_timing: bool, sets: list[str], workers: int = 0) -> dict:
    from mer.config import load_config

    root, stamp = prepare_demo(size)
    if fresh_timing:
        timing, timing_source = measure_extraction(root, DEMO_TRAIN_MODALITIES), "timed in this benchmark run"
    else:
        timing = {m: stamp["extract"][m] for m in DEMO_TRAIN_MODALITIES}
        timing_source = f"stored from the corpus preparation of {stamp['generated_at']}"
    config = load_config(DEMO_CONFIG, demo_overrides(root) + sets)
    grid = write_yaml(root / f"grid-{len(seeds)}seeds.yaml",
                      {"modalities": "subsets", "model": ["unimodal", "lmr"], "seeds": seeds})
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    log(f"ablate: {grid} (7 subsets x [unimodal, lmr], invalid cells skipped) x seeds {seeds}; {reps} rep(s); "
        f"lmr {config.train.lmr.hidden}/{config.train.lmr.tokens} tokens/{config.train.lmr.layers} layers/FFN "
        f"{config.train.lmr.ffn}; epochs {config.train.epochs}, patience {config.train.patience}; OMP_NUM_THREADS "
        f"{threads or 'unset'}, --workers {workers}")
    walls, results = Stat(), []
    tmp = Path(tempfile.mkdtemp(prefix="mer-bench-ablate-"))
    try:
        for rep in range(reps):
            out = tmp / f"rep{rep}"
            res = run_ablate_cli(root, grid, out, env, sets, workers)
            walls.add(res["wall"])
            results.append(res)
            log(f"  rep {rep + 1}/{reps}: {res['wall']:.1f} s wall, {len(res['runs'])} runs, start-up "
                f"{res['startup']:.1f} s; load {loadavg()}")
            shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    extract_s = {m: timing[m]["seconds"] for m in DEMO_TRAIN_MODALITIES}
    runs0 = results[0]["runs"]
    reextract = sum(extract_s[m] for r in runs0 for m in r["modalities"])
    per_cell: dict[str, dict] = {}
    for res in results:
        for r in res["runs"]:
            key = f"{r['model']} {'+'.join(r['modalities'])}"
            cell = per_cell.setdefault(key, {"seconds": Stat(), "epochs": [], "test_macro_f1": [], "mods": r["modalities"]})
            cell["seconds"].add(r["seconds"])
            cell["epochs"].append(r["epochs_run"])
            cell["test_macro_f1"].append(r["test_macro_f1"])
    lines = []
    for key, c in per_cell.items():
        runs_per_rep = len(c["seconds"].values) / len(results)
        lines.append([key, f"{runs_per_rep:.0f}", c["seconds"].fmt(".1f"), f"{np.mean(c['epochs']):.0f}",
                      f"{np.mean([v for v in c['test_macro_f1'] if v is not None]):.3f}",
                      f"{sum(extract_s[m] for m in c['mods']):.1f}"])
    startup = Stat([r["startup"] for r in results])
    run_sum = Stat([sum(r["seconds"] for r in res["runs"]) for res in results])
    computed = walls.map(lambda w: w + reextract)
    lines.append(["(start-up: imports, config, cache check)", "", startup.fmt(".1f"), "", "", ""])
    tables.append(table(["cell (model modalities)", "runs/rep", "s per run", "epochs run", "test macro-F1",
                         "re-extract s per run"], lines,
                        title=f"3a. mer ablate per cell (demo corpus {size} utt., seeds {seeds}; lmr hidden "
                              f"{config.train.lmr.hidden}, {config.train.lmr.tokens} tokens, {config.train.lmr.layers} "
                              f"layers, FFN {config.train.lmr.ffn}; max {config.train.epochs} epochs, patience "
                              f"{config.train.patience}, batch {config.train.batch_size})"))
    summary = [["mer ablate (measured, zero extraction)", walls.fmt(".1f"), f"{walls.median / 60:.2f}"],
               ["  of which training runs (sum)", run_sum.fmt(".1f"), f"{run_sum.median / 60:.2f}"],
               ["every run re-extracts (COMPUTED: measured grid + measured extraction per run)", computed.fmt(".1f"),
                f"{computed.median / 60:.2f}"],
               ["  extraction part: " + " + ".join(f"{m} {extract_s[m]:.1f}s" for m in DEMO_TRAIN_MODALITIES)
                + " per run, summed over the runs", f"{reextract:.1f}", f"{reextract / 60:.2f}"]]
    tables.append(table(["", "seconds", "minutes"], summary,
                        title=f"3b. Grid wall time: {len(runs0)} runs ({len(per_cell)} cells x {len(seeds)} seeds; target "
                              f"< 3 min with zero extraction); ratio re-extract / mer = "
                              f"{ratio(computed, walls).fmt('.1f')}; extraction times {timing_source})"))
    record["ablate"] = {
        "corpus": {"size": size, "seed": 0, "folder": str(root), "generate_seconds": stamp["generate_seconds"],
                   "generator_sha256": stamp["identity"]["generator_sha256"]},
        "config": str(DEMO_CONFIG), "grid": {"modalities": "subsets", "model": ["unimodal", "lmr"], "seeds": seeds},
        "train": {"epochs": config.train.epochs, "patience": config.train.patience,
                  "batch_size": config.train.batch_size, "lr": config.train.lr, "hidden": config.train.hidden,
                  "lmr": {k: getattr(config.train.lmr, k) for k in ("hidden", "tokens", "layers", "heads", "ffn")}},
        "omp_num_threads": threads or None, "workers": workers,
        "extra_overrides": sets,
        "wall_seconds": walls.to_dict(), "startup_seconds": startup.to_dict(), "runs_sum_seconds": run_sum.to_dict(),
        "per_cell_seconds": {k: {"seconds": c["seconds"].to_dict(), "mean_epochs_run": float(np.mean(c["epochs"]))}
                             for k, c in per_cell.items()},
        "extraction_seconds_per_modality": extract_s,
        "extraction_measured": {m: {k: timing[m][k] for k in ("seconds", "samples", "family", "key",
                                                               "loadavg_before", "loadavg_after")}
                                for m in DEMO_TRAIN_MODALITIES},
        "extraction_timing_source": timing_source,
        "reextract_extraction_seconds_computed": reextract,
        "reextract_total_seconds_computed": computed.to_dict(),
        "reextract_note": "COMPUTED from measured parts: mer ablate wall time + for every run (cell x seed) the "
                          "sum of the measured extraction times of its modalities (extract() report, once each)",
        "speedup_computed": ratio(computed, walls).to_dict(),
        "runs_first_rep": runs0,
        "target_seconds": 180,
    }
    return stamp


def section_threads(record: dict, tables: list[str], reps: int, size: int) -> None:
    """``mer train`` (fresh process) of one LMR run, 1 epoch, with torch's default threads
    (OMP_NUM_THREADS unset) vs OMP_NUM_THREADS=1: on a shared small CPU the OpenMP threads of
    tiny matmuls wait for each other, which decides how long a grid takes."""
    root, _ = prepare_demo(size)
    cmd = [mer_executable(), "train", "-c", str(DEMO_CONFIG), "--quiet"]
    for o in demo_overrides(root) + ["train.epochs=1", "train.plots=false", "train.modalities=[text, audio]"]:
        cmd += ["--set", o]
    tmp = Path(tempfile.mkdtemp(prefix="mer-bench-threads-"))
    envs = {"torch default (OMP_NUM_THREADS unset)": {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"},
            "OMP_NUM_THREADS=1": dict(os.environ, OMP_NUM_THREADS="1")}
    stats = {k: Stat() for k in envs}
    log(f"threads: mer train lmr text+audio, 1 epoch, fresh process each; {reps} reps")
    try:
        for rep in range(reps):
            order = list(envs) if rep % 2 == 0 else list(envs)[::-1]
            for k, name in enumerate(order):
                run_dir = tmp / f"r{rep}-{k}"
                seconds, proc = timed(lambda: subprocess.run(cmd + ["--run-dir", str(run_dir)], env=envs[name],
                                                             capture_output=True, text=True))
                if proc.returncode != 0:
                    raise RuntimeError(f"mer train failed ({name}):\n{proc.stderr[-3000:]}")
                stats[name].add(seconds)
                shutil.rmtree(run_dir, ignore_errors=True)
            log(f"  rep {rep + 1}/{reps}: " + ", ".join(f"{k} {v.values[-1]:.1f}s" for k, v in stats.items()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    one = stats["OMP_NUM_THREADS=1"]
    record["threads"] = {"command": "mer train (lmr, text+audio, 1 epoch, demo corpus), wall incl. start-up",
                         **{k: {"seconds": v.to_dict(), "this_over_1_thread": ratio(v, one).to_dict()}
                            for k, v in stats.items()}}
    tables.append(table(["torch threads", "s (1 epoch + start-up)", "this / 1 thread"],
                        [[k, v.fmt(".1f"), ratio(v, one).fmt(".2f")] for k, v in stats.items()],
                        title=f"2. Threads: one mer train run (lmr text+audio, 1 epoch), fresh process, "
                              f"{usable_cpus()} cores, load average now {loadavg()}"))


# =============================================================================================
# 3. cache bytes per hour of audio
# =============================================================================================

def section_bytes(record: dict, tables: list[str], size: int, stamp: dict | None) -> None:
    import soundfile as sf

    from mer.config import load_config

    if stamp is None:
        _, stamp = prepare_demo(size)
    root = WORK / f"demo-{size}-s0"
    config = load_config(DEMO_CONFIG, demo_overrides(root))
    from mer.pipeline.corpus import manifest_path
    from mer.pipeline.manifest import Manifest

    manifest = Manifest.load(manifest_path(config))
    paths = [p for p in manifest.df["audio"].tolist() if p]
    infos = [sf.info(p) for p in paths]
    seconds = sum(i.frames / i.samplerate for i in infos)
    hours = seconds / 3600
    wav_bytes = sum(Path(p).stat().st_size for p in paths)
    lines, rec = [], []
    for m in DEMO_AUDIO_MODALITIES:
        for dtype, info in (("float16", stamp["extract"][m]), ("float32", stamp["extract_float32"][m])):
            total = dir_bytes(info["dir"])
            rec.append({"modality": m, "encoder": config.features[m].encoder, "dtype": dtype, "cache_bytes": total,
                        "h5_bytes": dir_bytes(info["dir"], "*.h5"), "bytes_per_audio_hour": total / hours,
                        "ratio_to_wav": total / wav_bytes})
            lines.append([f"{config.features[m].encoder} ({m})", dtype, human_bytes(total), human_bytes(total / hours),
                          f"{total / wav_bytes:.4f}"])
    record["bytes"] = {"clips": len(paths), "audio_seconds": round(seconds, 1), "wav_bytes": wav_bytes,
                       "wav_format": f"{infos[0].samplerate} Hz {infos[0].subtype}", "settings": rec}
    extract_json = RESULTS / "extract.json"
    if extract_json.is_file():
        other = json.loads(extract_json.read_text(encoding="utf-8")).get("cache_bytes_base")
        if other:
            record["bytes"]["from_extract_json"] = other
            for s in other["settings"]:
                label = f"{s['dtype']} / {s['layers']}" + (" + frames" if s.get("store_frames") else "")
                lines.append(["hf-audio wav2vec2-base (bench/extract.py)", label, human_bytes(s["cache_bytes"]),
                              human_bytes(s["bytes_per_audio_hour"]), f"(/FLAC {s['ratio_to_flac']:.4f})"])
    tables.append(table(["encoder", "dtype", "cache", "per audio hour", "/ WAV"], lines,
                        title=f"4. Cache size (demo corpus: {len(paths)} clips, {seconds / 60:.1f} min of "
                              f"{infos[0].samplerate} Hz audio, WAV {human_bytes(wav_bytes)}; cache = every file of "
                              f"the encoder folder; wav2vec2 rows quoted from bench/results/extract.json)"))


# =============================================================================================

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 rep, 2,000 samples, seed 0 only")
    parser.add_argument("--reps", type=int, default=None, help="repetitions per figure (default 5; --quick: 1)")
    parser.add_argument("--samples", type=int, default=None, help="section 1 corpus size (default 10000; quick 2000)")
    parser.add_argument("--batch-size", type=int, default=256, help="section 1 batch size (default 256, as demo.yaml)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in section 1 (default 1: steady on a shared CPU; 0 = torch's default)")
    parser.add_argument("--ablate-threads", type=int, default=1,
                        help="OMP_NUM_THREADS for the mer ablate process (default 1, see section 'threads'; "
                             "0 = leave it unset: torch's default, all cores)")
    parser.add_argument("--seeds", default=None, help="section 2 seeds (default 0,1,2; --quick: 0)")
    parser.add_argument("--stored-extract-timing", action="store_true",
                        help="section 2: use the extraction times stored when the demo caches were built instead "
                             "of timing each modality once more in this run (default with --quick)")
    parser.add_argument("--ablate-reps", type=int, default=1,
                        help="repetitions of the whole grid in section 2 (default 1: a grid takes many minutes; "
                             "each cell still has one run per seed)")
    parser.add_argument("--ablate-workers", type=int, default=0,
                        help="mer ablate --workers N (default 0: cells one after another in one process)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="train.KEY=VALUE",
                        help="section 2: extra train.* override for every mer ablate run (repeatable; default: "
                             "configs/demo.yaml as it is)")
    parser.add_argument("--demo-size", type=int, default=1200, help="demo corpus size (default 1200)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--out", default=str(RESULTS / "train.json"), help="JSON record path")
    args = parser.parse_args()
    reps = args.reps or (1 if args.quick else 5)
    n = args.samples or (2000 if args.quick else 10000)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else [0, 1, 2])
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    if any(not s.startswith("train.") for s in args.sets):
        parser.error("--set: only train.* fields (the caches are fixed by configs/demo.yaml)")
    bad = sorted(set(sections) - set(SECTIONS))
    if bad:
        parser.error(f"--only: unknown section(s) {bad}; choose from {SECTIONS}")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=UserWarning)
    threads = args.threads or usable_cpus()
    wall = time.perf_counter()
    record: dict[str, Any] = {"machine": machine_info()}
    record["settings"] = {"reps": reps, "quick": args.quick, "sections": sections, "samples": n,
                          "batch_size": args.batch_size, "torch_threads_section1": threads,
                          "ablate_omp_threads": args.ablate_threads or None, "ablate_workers": args.ablate_workers,
                          "ablate_reps": args.ablate_reps, "seeds": seeds,
                          "demo_size": args.demo_size, "ablate_overrides": args.sets}
    tables: list[str] = []
    log(f"{usable_cpus()} cores, torch {torch.__version__}; load average {loadavg()}; reps={reps}")
    stamp = None
    if "epoch" in sections:
        section_epoch(record, tables, reps, n, args.batch_size, threads)
    if "threads" in sections:
        section_threads(record, tables, reps, args.demo_size)
    if "ablate" in sections:
        stamp = section_ablate(record, tables, args.ablate_reps, args.demo_size, seeds, args.ablate_threads,
                               fresh_timing=not (args.quick or args.stored_extract_timing), sets=args.sets, workers=args.ablate_workers)
    if "bytes" in sections:
        section_bytes(record, tables, args.demo_size, stamp)
    record["machine"]["loadavg_end"] = loadavg()
    record["wall_seconds"] = round(time.perf_counter() - wall, 1)
    print()
    print(f"mer training benchmark - {record['machine']['cpu_model']}, {usable_cpus()} cores, torch {torch.__version__}; "
          f"load average at start {record['machine']['loadavg_start']}, end {record['machine']['loadavg_end']}; "
          f"reps={reps}; figures are median [min-max]")
    for t in tables:
        print()
        print(t)
    out = write_json(args.out, record)
    print(f"\nwall time {record['wall_seconds']} s; JSON record: {out}")


if __name__ == "__main__":
    main()
