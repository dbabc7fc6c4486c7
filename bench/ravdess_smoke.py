#!/usr/bin/env python
"""Real-speech smoke test: ``mer`` end to end on the 240 real RAVDESS speech clips of
``shared/data/ravdess-speech-subset`` (actors 1-4, 8 emotions, 48 kHz FLAC). Audio only.

    python bench/ravdess_smoke.py                 # seeds 0,1,2 (~5-10 min on a shared 2-core CPU)
    python bench/ravdess_smoke.py --seeds 0       # one seed
    python bench/ravdess_smoke.py --data /path/to/RAVDESS-subset --work /tmp/rv

What runs (``configs/ravdess.yaml`` with ``--set`` overrides, nothing else changed):

* corpus adapter ``ravdess``, protocol ``custom``: test actor 4 (female), validation actor 3
  (male), training actors 1 (male) and 2 (female): speaker-independent, 120/60/60 clips;
* extraction (the real ``extract()``): ``audio`` = openSMILE eGeMAPSv02 functionals (88-d),
  ``mel`` = 128-bin log-mel frames at 30 fps;
* ``unimodal`` on eGeMAPS and on mean-pooled log-mel (supervised MLP heads; Adam, see
  ``HEAD_SETTINGS``: the config's SGD settings are the MPUC pre-training's);
* ``mpuc`` on mel (TCN encoder) + eGeMAPS (MLP encoder), the config's MPUC settings
  (unsupervised pairwise InfoNCE, two 3-s views cut at the same seconds in every modality,
  early stop on the validation contrastive loss, linear probe chosen on validation). MPUC needs two modalities (a pairwise loss), so
  the mel-only figure is the mel TCN encoder of that run probed ALONE: its frozen 512-d
  outputs, a logistic regression fitted on train and chosen on validation like the run's.

Chance level: 1/8 accuracy and UAR (calm/neutral etc.; neutral has half the clips of the
others). 60 test clips from one actor: expect wide seed-to-seed spread.

Results: a printed table and ``bench/results/ravdess_smoke.json``. Not part of CI timing:
the pytest wrapper ``tests/app/test_realdata_ravdess.py`` runs only with ``MER_RUN_SLOW=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CONFIG = REPO / "configs" / "ravdess.yaml"
DATA = REPO.parent / "shared" / "data" / "ravdess-speech-subset"
RESULTS = BENCH / "results"
MODALITIES = ["audio", "mel"]
#: the split: custom protocol over the 4 actors of the subset
SPLIT = {"test_actors": [4], "val_actors": [3]}
#: supervised heads (unimodal): Adam and enough epochs for 120 training clips (4 batches/epoch)
HEAD_SETTINGS = ["train.optimizer=adam", "train.lr=0.001", "train.weight_decay=0.0001", "train.epochs=300",
                 "train.patience=40", "train.balanced_sampling=false", "train.hidden=128", "train.dropout=0.3"]
RUNS: dict[str, list[str]] = {
    "unimodal egemaps": ["train.model=unimodal", "train.modalities=[audio]", *HEAD_SETTINGS],
    "unimodal logmel (mean-pooled)": ["train.model=unimodal", "train.modalities=[mel]", *HEAD_SETTINGS],
    "mpuc mel(TCN)+egemaps(MLP)": ["train.model=mpuc", "train.modalities=[mel, audio]"],
}
MPUC_RUN = "mpuc mel(TCN)+egemaps(MLP)"
MEL_ALONE = "mpuc mel(TCN) encoder probed alone"
METRICS = ("accuracy", "uar", "macro_f1", "weighted_f1")


def base_overrides(data: Path, work: Path) -> list[str]:
    return [f"dataset.root={data}", "dataset.protocol=custom", f"dataset.test_actors={SPLIT['test_actors']}",
            f"dataset.val_actors={SPLIT['val_actors']}", f"cache.root={work / 'cache'}", f"output={work / 'runs'}",
            "extract.device=cpu", "train.device=cpu", "train.plots=false"]


def extract_audio(data: Path, work: Path, progress: bool) -> dict:
    """eGeMAPS and log-mel caches of the subset (resumable: a complete cache is only verified)."""
    from mer.config import load_config
    from mer.pipeline.extract import extract

    config = load_config(CONFIG, base_overrides(data, work))
    report = extract(config, MODALITIES, progress=progress)
    out = {}
    for m, r in report.modalities.items():
        if not r.complete or r.failures:
            raise RuntimeError(f"{m}: extraction incomplete or with failures ({r.failures}); see {r.failures_path}")
        out[m] = {"encoder": r.family, "key": r.key, "samples": r.present, "seconds": round(r.seconds, 2),
                  "extracted_now": r.samples_extracted}
    return out


def mel_alone_probe(config, run_dir: Path, seed: int) -> dict:
    """Probe the mel TCN encoder of a trained MPUC run alone (its block of the frozen features)."""
    import torch

    from mer.experiment import modality_sources
    from mer.train.data import Fitted, load_train_data
    from mer.train.metrics import compute_metrics, headline
    from mer.train.models.mpuc import MPUC, LinearProbe
    from mer.train.pretrain import embed
    from mer.train.probe import fit_linear_probe
    from mer.experiment import manifest_for

    ckpt = torch.load(run_dir / "model.pt", weights_only=True)
    model = MPUC(**ckpt["init_kwargs"])
    model.load_state_dict(ckpt["state_dict"])
    manifest, _ = manifest_for(config)
    data = load_train_data(config.train, manifest, modality_sources(config, ckpt["modalities"]), device="cpu",
                           sequences=True, fitted=Fitted(ckpt["stats"], ckpt["classes"]))
    k = model.modalities.index("mel")
    cols = slice(k * model.dim, (k + 1) * model.dim)
    feats = {s: embed(model, data, data.rows(s))[:, cols] for s in ("train", "val", "test")}
    y = data.y.numpy()
    probe = LinearProbe(model.dim, data.num_classes)
    result = fit_linear_probe(probe, feats["train"], y[data.rows("train")], feats["val"], y[data.rows("val")],
                              data.classes, False, list(config.train.mpuc.probe_c), config.train.select_metric,
                              balanced=config.train.class_weights == "inverse", seed=seed)
    with torch.no_grad():
        pred = probe(torch.as_tensor(feats["test"], dtype=torch.float32)).argmax(1).numpy()
    metrics = compute_metrics(y[data.rows("test")], pred, data.classes, False, "test")
    return {"test": headline(metrics, False), "probe_c": result.chosen, "val": result.val_score}


def run_smoke(data: Path = DATA, work: Path = REPO / "bench" / ".work" / "ravdess", seeds: list[int] | None = None,
              runs: list[str] | None = None, progress: bool = False,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Extract, train every run of ``RUNS`` (or ``runs``) over ``seeds``; returns the record."""
    from mer.config import load_config
    from mer.experiment import train_experiment

    seeds = seeds if seeds is not None else [0, 1, 2]
    names = runs or list(RUNS)
    data, work = Path(data), Path(work)
    start = time.perf_counter()
    record: dict[str, Any] = {"data": str(data), "split": SPLIT, "seeds": seeds, "config": str(CONFIG)}
    record["extract"] = extract_audio(data, work, progress)
    log("extracted: " + ", ".join(f"{m} {v['encoder']} {v['samples']} clips ({v['seconds']} s)"
                                  for m, v in record["extract"].items()))
    record["runs"] = {}
    for name in names:
        overrides = base_overrides(data, work) + RUNS[name]
        config = load_config(CONFIG, overrides)
        run_dir = work / "runs" / name.split()[0] / name.replace(" ", "_").replace("(", "").replace(")", "")
        t0 = time.perf_counter()
        folder, summary, results = train_experiment(config, run_dir, seeds, overrides, progress=progress,
                                                    log=lambda line: None)
        per_seed = [{"seed": r.metrics["run"]["seed"], "best_epoch": r.metrics["run"]["best_epoch"],
                     "epochs_run": r.metrics["run"]["epochs_run"],
                     "test": {k: r.metrics["test"][k] for k in METRICS},
                     "val": {k: r.metrics["val"][k] for k in METRICS}} for r in results]
        samples = results[0].metrics["run"]["samples"]
        record["runs"][name] = {"overrides": RUNS[name], "samples": samples, "per_seed": per_seed,
                                "seconds": round(time.perf_counter() - t0, 1), "run_dir": str(folder),
                                **_summary([p["test"] for p in per_seed])}
        log(f"{name}: test accuracy {record['runs'][name]['mean']['accuracy']:.3f}, "
            f"UAR {record['runs'][name]['mean']['uar']:.3f} ({record['runs'][name]['seconds']} s)")
        if name == MPUC_RUN:
            alone = [dict(mel_alone_probe(config, r.run_dir, r.metrics["run"]["seed"]),
                          seed=r.metrics["run"]["seed"]) for r in results]
            record["runs"][MEL_ALONE] = {"from": name, "per_seed": alone, **_summary([a["test"] for a in alone])}
            log(f"{MEL_ALONE}: test accuracy {record['runs'][MEL_ALONE]['mean']['accuracy']:.3f}, "
                f"UAR {record['runs'][MEL_ALONE]['mean']['uar']:.3f}")
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def _summary(tests: list[dict]) -> dict:
    return {"mean": {k: float(np.mean([t[k] for t in tests])) for k in METRICS},
            "std": {k: float(np.std([t[k] for t in tests])) for k in METRICS}}


def format_table(record: dict) -> str:
    n = len(record["seeds"])
    head = f"{'model (test actor 4)':<40} {'accuracy':>16} {'UAR':>16} {'macro-F1':>16}"
    lines = [head, "-" * len(head)]
    for name, r in record["runs"].items():
        cells = [f"{r['mean'][k]:.3f} ± {r['std'][k]:.3f}" if n > 1 else f"{r['mean'][k]:.3f}"
                 for k in ("accuracy", "uar", "macro_f1")]
        lines.append(f"{name:<40} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16}")
    lines.append(f"chance: accuracy/UAR 0.125 (8 classes); seeds {record['seeds']} (mean ± population std)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA), help="folder with Actor_01..Actor_04")
    parser.add_argument("--work", default=str(REPO / "bench" / ".work" / "ravdess"), help="caches and runs")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--out", default=str(RESULTS / "ravdess_smoke.json"), help="JSON record path")
    args = parser.parse_args()
    data = Path(args.data)
    if not data.is_dir():
        sys.exit(f"error: {data}: no such folder (the RAVDESS speech subset, Actor_01..Actor_04)")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    sys.path.insert(0, str(BENCH))
    from common import loadavg, machine_info, write_json

    record = {"machine": machine_info()}
    record.update(run_smoke(data, Path(args.work), [int(s) for s in args.seeds.split(",") if s.strip()],
                            progress=True))
    record["machine"]["loadavg_end"] = loadavg()
    print()
    print(format_table(record))
    out = write_json(args.out, record)
    print(f"\n{record['seconds']} s; JSON record: {out}")


if __name__ == "__main__":
    main()
