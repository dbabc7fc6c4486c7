"""``mer compare RUN_A RUN_B``: is the difference between two results more than noise?

A result is a run folder (``metrics.json`` + ``predictions.csv``) or a folder of runs (``mer
train --seeds`` writes ``seed<k>/``; every ``metrics.json`` below the folder is a run, named by
its path relative to the folder). The two sides are paired by those names, so they must come
from the same folds and seeds:

* **several paired runs** (seeds, folds × seeds): the per-run scores of ``split`` are compared
  with a paired t-test and a Wilcoxon signed-rank test (:func:`mer.train.stats.paired_runs`),
  and each side gets its mean ± std (ddof 1) and t interval;
* **one run each**: the two runs' predictions of the same ``split`` rows (joined on ``id``; the
  labels must agree) are compared sample by sample: a bootstrap interval of the difference and
  a paired permutation test (:func:`mer.train.stats.paired_samples`), and each side gets a
  bootstrap interval over its samples.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from mer.train.errors import DataError
from mer.train.stats import bootstrap_interval, mean_std, metric_function, paired_runs, paired_samples, t_interval


def find_runs(folder: str | Path) -> dict[str, Path]:
    """{relative name: run folder} of every run (a folder with metrics.json) at or below ``folder``."""
    root = Path(folder)
    runs = {str(p.parent.relative_to(root)): p.parent for p in sorted(root.rglob("metrics.json"))}
    if not runs:
        raise DataError(f"{root}: no metrics.json at or below it (is it a mer train run folder?)")
    return runs


def _score(run: Path, split: str, metric: str) -> float:
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    if split not in metrics or metric not in metrics[split]:
        raise DataError(f"{run / 'metrics.json'}: no {split} {metric}")
    return float(metrics[split][metric])


def _predictions(run: Path, split: str) -> pd.DataFrame:
    path = run / "predictions.csv"
    if not path.is_file():
        raise DataError(f"{path}: missing (comparing single runs needs their predictions)")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df = df[(df["split"] == split) & (df["label"] != "")]
    if df.empty:
        raise DataError(f"{path}: no labelled {split} row")
    if df["label"].str.contains(";").any():
        raise DataError(f"{path}: multi-label predictions; compare several runs (seeds) instead")
    return df.set_index("id")[["label", "prediction"]]


def compare(a: str | Path, b: str | Path, split: str = "test", metric: str = "uar", seed: int = 0) -> dict:
    """The comparison as plain data (see the module doc); A − B is the difference."""
    metric_function(metric)  # a known sample-level metric, or StatsError
    runs_a, runs_b = find_runs(a), find_runs(b)
    if set(runs_a) != set(runs_b):
        raise DataError(f"{a} and {b} hold different runs ({sorted(runs_a)} vs {sorted(runs_b)}): "
                        "pair results of the same folds and seeds")
    names = sorted(runs_a)
    out: dict = {"a": str(a), "b": str(b), "split": split, "metric": metric, "runs": names}
    if len(names) > 1:
        sa = [_score(runs_a[n], split, metric) for n in names]
        sb = [_score(runs_b[n], split, metric) for n in names]
        out["scores"] = {"a": sa, "b": sb}
        for side, scores in (("a", sa), ("b", sb)):
            mean, std = mean_std(scores)
            out[f"summary_{side}"] = {"mean": mean, "std": std, "ddof": 1, "interval": asdict(t_interval(scores))}
        out["test"] = asdict(paired_runs(sa, sb, metric))
        return out
    pa, pb = _predictions(runs_a[names[0]], split), _predictions(runs_b[names[0]], split)
    if set(pa.index) != set(pb.index):
        raise DataError(f"{a} and {b} scored different {split} rows ({len(pa)} vs {len(pb)}; "
                        f"{len(set(pa.index) ^ set(pb.index))} ids differ): compare runs of the same split")
    pb = pb.loc[pa.index]
    if not (pa["label"] == pb["label"]).all():
        raise DataError(f"{a} and {b}: the same ids carry different labels; compare runs of the same manifest")
    classes = sorted(set(pa["label"]) | set(pa["prediction"]) | set(pb["prediction"]))
    code = {c: i for i, c in enumerate(classes)}
    y, ya, yb = (s.map(code).to_numpy() for s in (pa["label"], pa["prediction"], pb["prediction"]))
    out["summary_a"] = {"interval": asdict(bootstrap_interval(y, ya, metric, seed=seed))}
    out["summary_b"] = {"interval": asdict(bootstrap_interval(y, yb, metric, seed=seed))}
    out["test"] = asdict(paired_samples(y, ya, yb, metric, seed=seed))
    return out


def format_comparison(result: dict) -> str:
    """A few lines for the terminal (percentages)."""
    t, m = result["test"], result["metric"]

    def pct(v: float) -> str:
        return f"{100 * v:.1f}"

    lines = [f"{result['split']} {m}, A = {result['a']}, B = {result['b']}"]
    for side in ("a", "b"):
        s, iv = result[f"summary_{side}"], result[f"summary_{side}"]["interval"]
        spread = f" ± {pct(s['std'])} (std, ddof 1)" if "std" in s else ""
        lines.append(f"  {side.upper()}: {pct(iv['estimate'])}{spread}, {int(100 * iv['confidence'])} % interval "
                     f"[{pct(iv['low'])}, {pct(iv['high'])}] ({iv['method']}, n = {iv['n']})")
    p = ", ".join(f"{k} p = {v:.3g}" for k, v in t["p_values"].items())
    lines.append(f"  A − B: {pct(t['difference'])} points, {int(100 * t['confidence'])} % interval "
                  f"[{pct(t['low'])}, {pct(t['high'])}]; {p} ({t['method']}, n = {t['n']})")
    if t["note"]:
        lines.append(f"  note: {t['note']}")
    return "\n".join(lines)


__all__ = ["compare", "find_runs", "format_comparison"]
