"""Cross-validation results: per-fold tables, mean ± std over folds, pooled out-of-fold metrics.

Pure functions over finished runs (their metrics and predictions tables); the application
(:mod:`mer.cv`) trains the folds and writes what these return as ``cv.json`` / ``cv.md``.

Two figures, because the literature reports both and they differ:

* **mean ± std over folds**: each fold's test metric (averaged over seeds first), then the
  mean and the SAMPLE standard deviation over folds (``ddof=1``, as EmoBox reports it; with
  one fold the std is undefined and left empty). This is the figure EmoBox and most papers
  report for k-fold protocols.
* **pooled out-of-fold**: per seed, the test predictions of every fold concatenated and
  scored once (:func:`mer.train.metrics.compute_metrics`); then mean ± std over seeds
  (population std, as for seeds elsewhere). Pooling weighs every sample equally, so a small
  fold does not count as much as a large one. It requires the folds' test sets to be
  disjoint (a partition, as in RAVDESS fold1..4 or leave-one-actor-out); otherwise it is left
  out with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mer.train.metrics import compute_metrics, headline

#: prediction-table column prefix of the class probabilities (:mod:`mer.train.predictions`)
PROB_PREFIX = "prob_"


@dataclass
class FoldRun:
    """One finished run of one fold and seed."""

    fold: str
    seed: int
    run_dir: str
    #: the run's metrics.json (``train``/``val``/``test``/``run``/``protocol``)
    metrics: dict[str, Any]
    #: the run's predictions.csv (id, split, label, prediction, ..., prob_<class>)
    predictions: pd.DataFrame


def _sample_std(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _classes(table: pd.DataFrame) -> list[str]:
    return [c[len(PROB_PREFIX):] for c in table.columns if c.startswith(PROB_PREFIX)]


def _encode(texts: pd.Series, classes: list[str], multilabel: bool) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    if not multilabel:
        return np.array([index[t] for t in texts], dtype=np.int64)
    out = np.zeros((len(texts), len(classes)), dtype=np.int64)
    for r, text in enumerate(texts):
        for c in filter(None, str(text).split(";")):
            out[r, index[c]] = 1
    return out


def pooled_metrics(tables: list[pd.DataFrame], multilabel: bool) -> tuple[dict | None, str]:
    """Metrics of the concatenated labelled test rows of ``tables`` (one per fold), and '' or
    the reason they cannot be pooled (test sets not disjoint, different class lists)."""
    classes = _classes(tables[0])
    if any(_classes(t) != classes for t in tables):
        return None, "the folds have different class lists"
    tests = [t[(t["split"] == "test") & (t["label"].astype(str) != "")] for t in tables]
    joined = pd.concat(tests, ignore_index=True)
    repeated = joined["id"].duplicated(keep=False)
    if repeated.any():
        return None, (f"the folds' test sets are not disjoint ({int(joined.loc[repeated, 'id'].nunique())} "
                      f"samples are tested in several folds), so there is no out-of-fold prediction per sample")
    if joined.empty:
        return None, "no fold has a labelled test sample"
    y_true = _encode(joined["label"].astype(str), classes, multilabel)
    y_pred = _encode(joined["prediction"].astype(str).fillna(""), classes, multilabel)
    return compute_metrics(y_true, y_pred, classes, multilabel, "pooled test"), ""


def cv_summary(runs: list[FoldRun], multilabel: bool) -> dict[str, Any]:
    """Per run, per fold (mean over seeds), over folds (mean, sample std) and pooled (per seed,
    then mean ± population std over seeds) test metrics; validation means are kept beside."""
    folds = list(dict.fromkeys(r.fold for r in runs))
    seeds = sorted({r.seed for r in runs})
    rows = []
    for r in runs:
        row = {"fold": r.fold, "seed": r.seed, "run_dir": r.run_dir,
               "test_groups": r.metrics.get("protocol", {}).get("groups", {}).get("test", [])}
        for split in ("val", "test"):
            if split in r.metrics:
                row[split] = headline(r.metrics[split], multilabel)
        rows.append(row)
    keys = list(next((row["test"] for row in rows if "test" in row), {}))
    per_fold = {}
    for fold in folds:
        mine = [row for row in rows if row["fold"] == fold and "test" in row]
        per_fold[fold] = {k: float(np.mean([row["test"][k] for row in mine])) for k in keys}
    over = {k: [per_fold[f][k] for f in folds if k in per_fold[f]] for k in keys}
    summary: dict[str, Any] = {
        "folds": folds, "seeds": seeds, "runs": rows, "per_fold": per_fold,
        "mean": {k: float(np.mean(v)) for k, v in over.items()},
        "std": {k: _sample_std(v) for k, v in over.items()},
        "std_kind": "sample standard deviation over folds (ddof=1) of each fold's mean over seeds",
    }
    pooled_by_seed, reasons = {}, []
    for seed in seeds:
        mine = [r for r in runs if r.seed == seed]
        if [r.fold for r in mine] != folds:
            reasons.append(f"seed {seed} did not run every fold")
            continue
        metrics, why = pooled_metrics([r.predictions for r in mine], multilabel)
        if metrics is None:
            reasons.append(why)
            continue
        pooled_by_seed[seed] = metrics
    if pooled_by_seed:
        heads = [headline(m, multilabel) for m in pooled_by_seed.values()]
        summary["pooled"] = {
            "per_seed": {str(s): m for s, m in pooled_by_seed.items()},
            "mean": {k: float(np.mean([h[k] for h in heads])) for k in heads[0]},
            "std": {k: float(np.std([h[k] for h in heads])) for k in heads[0]},
            "std_kind": "population standard deviation over seeds",
        }
    else:
        summary["pooled"] = None
    summary["pooled_note"] = "; ".join(dict.fromkeys(reasons))
    return summary


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}"


def cv_markdown(summary: dict[str, Any], title: str = "Cross-validation") -> str:
    """``cv.md``: per-fold test table, mean ± std over folds, pooled out-of-fold metrics."""
    keys = list(summary["mean"])
    lines = [f"# {title}", "",
             f"{len(summary['folds'])} fold(s) × seeds {summary['seeds']}; test metrics in percent. "
             f"± is the {summary['std_kind']}.", "",
             "| fold | test groups | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for fold in summary["folds"]:
        groups = next((r["test_groups"] for r in summary["runs"] if r["fold"] == fold), [])
        cells = [_pct(summary["per_fold"][fold].get(k)) for k in keys]
        lines.append(f"| {fold} | {', '.join(groups)} | " + " | ".join(cells) + " |")
    mean_std = [f"{_pct(summary['mean'][k])} ± {_pct(summary['std'][k])}" if summary["std"][k] is not None
                else _pct(summary["mean"][k]) for k in keys]
    lines.append("| **mean ± std** | | " + " | ".join(mean_std) + " |")
    pooled = summary.get("pooled")
    if pooled:
        several = len(pooled["per_seed"]) > 1
        cells = [f"{_pct(pooled['mean'][k])} ± {_pct(pooled['std'][k])}" if several else _pct(pooled["mean"][k])
                 for k in keys if k in pooled["mean"]]
        lines.append("| **pooled out-of-fold** | | " + " | ".join(cells) + " |")
        lines += ["", "Pooled: every fold's test predictions concatenated and scored once per seed"
                  + (f" (± {pooled['std_kind']})." if several else ".")]
    elif summary.get("pooled_note"):
        lines += ["", f"No pooled out-of-fold metrics: {summary['pooled_note']}."]
    return "\n".join(lines) + "\n"


__all__ = ["FoldRun", "cv_markdown", "cv_summary", "pooled_metrics"]
