#!/usr/bin/env python
"""Leave-actors-out cross-validation on real RAVDESS speech (actors 1-12), for CHOOSING settings.

An accuracy study, not a timing: it prints per-candidate validation and test UAR / macro-F1,
mean ± std over folds × seeds, and writes ``bench/results/ravdess_cv.json``.

    python bench/ravdess_cv.py --study defaults     # MLP baseline settings (train/config.py)
    python bench/ravdess_cv.py --study recipe       # feature sets × models (configs/ravdess-speech.yaml)
    python bench/ravdess_cv.py --study recipe --dry-run   # fold 1, one seed, 2 candidates: a smoke run

Every choice is made on VALIDATION (the ``val`` column, sorted by it); the test columns are
printed beside it so that a reader can see what the choice cost, never to choose. Folds are
those of ``configs/ravdess-speech.yaml`` (3 leave-4-actors-out folds, gender balanced, two
validation actors carved from the training actors). The features come from the caches that
``mer extract -c configs/ravdess-speech.yaml`` wrote (``--cache``); nothing is extracted here.
The fold is applied to the manifest in memory (its ``split`` column), so one manifest serves all
folds; ``mer train`` on a manifest rebuilt per fold (README) trains on the same rows.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CONFIG = REPO / "configs" / "ravdess-speech.yaml"
RESULTS = BENCH / "results"
#: fold k: (test actors, validation actors); the rest of actors 1-12 train
FOLDS = (([1, 2, 7, 8], [3, 4]), ([3, 4, 9, 10], [5, 6]), ([5, 6, 11, 12], [1, 2]))

#: the MLP baselines' settings searched for train/config.py (unimodal on eGeMAPS, 360 training clips)
DEFAULTS_GRID = {
    "train.lr": [1e-4, 1e-3],
    "train.batch_size": [32, 256],
    "train.weight_decay": [0.0, 1e-3],
    "train.dropout": [0.1, 0.5],
}
#: fixed while searching: enough epochs that lr 1e-4 is not cut short
DEFAULTS_FIXED = ["train.model=unimodal", "train.modalities=[egemaps]", "train.epochs=300", "train.patience=30"]

#: candidate recipes (model + modalities), each with the defaults of train/config.py
RECIPES = {
    "linear egemaps": ["train.model=linear", "train.modalities=[egemaps]"],
    "linear compare": ["train.model=linear", "train.modalities=[compare]"],
    "linear mel (mean)": ["train.model=linear", "train.modalities=[mel]"],
    "linear compare+egemaps": ["train.model=linear", "train.modalities=[compare, egemaps]"],
    "linear compare+mel": ["train.model=linear", "train.modalities=[compare, mel]"],
    "unimodal egemaps": ["train.model=unimodal", "train.modalities=[egemaps]"],
    "unimodal compare": ["train.model=unimodal", "train.modalities=[compare]"],
    "concat compare+mel": ["train.model=concat", "train.modalities=[compare, mel]"],
}


def fold_manifest(manifest, test: list[int], val: list[int]):
    """A copy of ``manifest`` whose ``split`` column is the fold (actors are ``Actor_XX`` groups)."""
    from mer.pipeline.manifest import Manifest

    df = manifest.df.copy()
    actor = df["group"].str.replace("Actor_", "", regex=False).astype(int)
    df["split"] = np.where(actor.isin(test), "test", np.where(actor.isin(val), "val", "train"))
    return Manifest(df, source=manifest.source)


def run_candidate(base: list[str], sets: list[str], folds: list[int], seeds: list[int], work: Path) -> dict:
    """Train ``sets`` on every fold × seed; per-run val/test UAR and macro-F1."""
    from mer.config import load_config
    from mer.experiment import manifest_for, train_job, trained_modalities
    from mer.train.run import train_seeds

    config = load_config(CONFIG, base + sets)
    manifest, _ = manifest_for(config, base)
    job = train_job(config, trained_modalities(config), base)
    runs = []
    for k in folds:
        job.manifest = fold_manifest(manifest, *FOLDS[k - 1])
        _, results = train_seeds(job, work / f"fold{k}", seeds, progress=False, log=lambda line: None)
        for r in results:
            m = r.metrics
            runs.append({"fold": k, "seed": m["run"]["seed"], "val_uar": m["val"]["uar"],
                         "val_macro_f1": m["val"]["macro_f1"], "test_uar": m["test"]["uar"],
                         "test_macro_f1": m["test"]["macro_f1"]})
    return {"sets": sets, "runs": runs,
            **{f"{k}_mean": float(np.mean([r[k] for r in runs])) for k in runs[0] if k not in ("fold", "seed")},
            **{f"{k}_std": float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0
               for k in runs[0] if k not in ("fold", "seed")}}


def candidates(study: str, dry_run: bool) -> dict[str, list[str]]:
    if study == "defaults":
        keys = list(DEFAULTS_GRID)
        out = {" ".join(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, combo)):
               DEFAULTS_FIXED + [f"{k}={v}" for k, v in zip(keys, combo)]
               for combo in itertools.product(*DEFAULTS_GRID.values())}
    else:
        out = dict(RECIPES)
    return dict(list(out.items())[:2]) if dry_run else out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", choices=["defaults", "recipe"], default="recipe")
    ap.add_argument("--data", default=str(REPO / "data" / "ravdess12"), help="root with Actor_01..Actor_12")
    ap.add_argument("--cache", default=str(REPO / "cache"), help="cache root of the extracted features")
    ap.add_argument("--seeds", default="0,1", help="seeds of the stochastic models (linear is deterministic)")
    ap.add_argument("--only", default="", help="comma-separated candidate names (default: all of the study)")
    ap.add_argument("--dry-run", action="store_true", help="fold 1, seed 0, the first 2 candidates")
    ap.add_argument("--out", default=str(RESULTS / "ravdess_cv.json"))
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    base = [f"dataset.root={args.data}", f"cache.root={args.cache}", "train.plots=false", "train.device=cpu"]
    seeds = [0] if args.dry_run else [int(s) for s in args.seeds.split(",")]
    folds = [1] if args.dry_run else [1, 2, 3]
    chosen = candidates(args.study, args.dry_run)
    if args.only:
        names = args.only.split(",")
        chosen = {n: chosen[n] for n in names}
    results = {}
    with tempfile.TemporaryDirectory(prefix="ravdess_cv-") as tmp:
        for i, (name, sets) in enumerate(chosen.items()):
            deterministic = any(s == "train.model=linear" for s in sets)
            res = run_candidate(base, sets, folds, [seeds[0]] if deterministic else seeds, Path(tmp) / str(i))
            results[name] = res
            print(f"{name:40s} val UAR {100 * res['val_uar_mean']:5.1f} ± {100 * res['val_uar_std']:4.1f}  "
                  f"val F1 {100 * res['val_macro_f1_mean']:5.1f}  test UAR {100 * res['test_uar_mean']:5.1f} ± "
                  f"{100 * res['test_uar_std']:4.1f}  ({len(res['runs'])} runs)", flush=True)
    ranked = sorted(results.items(), key=lambda kv: -kv[1]["val_uar_mean"])
    print("\nby mean validation UAR (folds × seeds; std with ddof=1):")
    print("| candidate | val UAR | val macro-F1 | test UAR | test macro-F1 |\n|---|---:|---:|---:|---:|")
    for name, r in ranked:
        print(f"| {name} | {100 * r['val_uar_mean']:.1f} ± {100 * r['val_uar_std']:.1f} | "
              f"{100 * r['val_macro_f1_mean']:.1f} | {100 * r['test_uar_mean']:.1f} ± {100 * r['test_uar_std']:.1f} | "
              f"{100 * r['test_macro_f1_mean']:.1f} |")
    if not args.dry_run:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        record = {"study": args.study, "folds": FOLDS, "seeds": seeds, "load_average": os.getloadavg(),
                  "results": results}
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
