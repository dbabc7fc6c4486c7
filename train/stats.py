"""Uncertainty of a score and of a difference between two scores: thin wrappers over SciPy.

Two sources of variation, two tools:

* **Over runs** (seeds, or folds × seeds): the scores of the runs are the sample.
  :func:`mean_std` (sample std, ``ddof=1`` unless said otherwise), :func:`t_interval` (Student t
  over the runs, ``scipy.stats.t``), and :func:`paired_runs` for two rows of a table trained on
  the same folds and seeds: ``scipy.stats.ttest_rel`` and ``scipy.stats.wilcoxon`` over the
  paired score differences. With few pairs the Wilcoxon test cannot be significant at all
  (n = 5 pairs: the smallest two-sided p is 0.0625), which the result says.
* **Over test samples** (one run, one split): the test set is the sample.
  :func:`bootstrap_interval` recomputes the metric (macro-F1, UAR, ... with scikit-learn) on
  resamples of the test rows (``scipy.stats.bootstrap``, BCa), and :func:`paired_samples`
  compares two runs scored on the SAME test rows: a bootstrap interval of the difference and
  the p-value of a paired permutation test (``scipy.stats.permutation_test``, each sample's two
  predictions swapped at random; the approximate-randomisation test of Riezler & Maxwell, 2005).

No statistic is written by hand here; the functions only choose the SciPy/scikit-learn call and
its settings, check their inputs and return plain dataclasses (JSON-able with ``asdict``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

#: the confidence level of every interval unless asked otherwise
CONFIDENCE = 0.95
#: bootstrap / permutation resamples: enough for a stable 95 % interval of a sample metric
RESAMPLES = 2000


class StatsError(ValueError):
    """The inputs cannot give the statistic (too few values, unpaired scores, unequal rows)."""


def _values(values: Sequence[float], what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(x).all():
        raise StatsError(f"{what}: non-finite value(s) in {x.tolist()}")
    return x


def mean_std(values: Sequence[float], ddof: int = 1) -> tuple[float, float]:
    """Mean and standard deviation (``ddof=1``: the sample std); std is NaN for fewer than ddof+1 values."""
    x = _values(values, "mean_std")
    if len(x) == 0:
        raise StatsError("mean_std: no value")
    return float(np.mean(x)), float(np.std(x, ddof=ddof)) if len(x) > ddof else math.nan


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    confidence: float
    #: t-over-runs | bootstrap-over-samples
    method: str
    n: int


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Student-t interval of the mean of per-run scores (folds × seeds); NaN bounds for one value."""
    x = _values(values, "t_interval")
    if len(x) == 0:
        raise StatsError("t_interval: no value")
    mean = float(np.mean(x))
    if len(x) < 2:
        return Interval(mean, math.nan, math.nan, confidence, "t-over-runs", 1)
    if np.ptp(x) == 0:  # identical values: no spread to scale the t quantile with
        return Interval(mean, mean, mean, confidence, "t-over-runs", len(x))
    low, high = stats.t.interval(confidence, df=len(x) - 1, loc=mean, scale=stats.sem(x))
    return Interval(mean, float(low), float(high), confidence, "t-over-runs", len(x))


def _uar(t: np.ndarray, p: np.ndarray) -> float:
    # a resample may lack a class that the predictions name: UAR is then the mean recall of the
    # classes the resample has, which is what balanced_accuracy_score computes; its warning says so
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return balanced_accuracy_score(t, p)


#: metrics recomputable on a resample of (y_true, y_pred) single-label class indices
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "uar": _uar,
    "macro_f1": lambda t, p: f1_score(t, p, average="macro", zero_division=0),
    "weighted_f1": lambda t, p: f1_score(t, p, average="weighted", zero_division=0),
    "accuracy": lambda t, p: accuracy_score(t, p),
}


def metric_function(name: str) -> Callable[[np.ndarray, np.ndarray], float]:
    if name not in METRICS:
        raise StatsError(f"no sample-level metric {name!r}; choose from {sorted(METRICS)}")
    return METRICS[name]


def _labels(y_true, *preds) -> list[np.ndarray]:
    arrays = [np.asarray(a) for a in (y_true, *preds)]
    if any(a.ndim != 1 or len(a) != len(arrays[0]) for a in arrays):
        raise StatsError(f"labels and predictions must be 1-D and of one length, got {[a.shape for a in arrays]}")
    if len(arrays[0]) < 2:
        raise StatsError(f"need at least 2 samples to resample, got {len(arrays[0])}")
    return arrays


def bootstrap_interval(y_true, y_pred, metric: str = "uar", confidence: float = CONFIDENCE,
                       n_resamples: int = RESAMPLES, seed: int = 0) -> Interval:
    """BCa bootstrap interval of one run's ``metric`` over its test samples (rows resampled with
    their labels; the metric is recomputed on each resample by scikit-learn)."""
    fn = metric_function(metric)
    t, p = _labels(y_true, y_pred)
    res = stats.bootstrap((t, p), fn, paired=True, vectorized=False, confidence_level=confidence,
                          n_resamples=n_resamples, method="BCa", random_state=np.random.default_rng(seed))
    ci = res.confidence_interval
    return Interval(float(fn(t, p)), float(ci.low), float(ci.high), confidence, "bootstrap-over-samples", len(t))


@dataclass(frozen=True)
class PairedResult:
    """A − B: the mean difference, its interval, and the p-values of the tests that were run."""

    metric: str
    n: int
    mean_a: float
    mean_b: float
    difference: float
    low: float
    high: float
    confidence: float
    #: paired-runs: {"t": p of ttest_rel, "wilcoxon": p of wilcoxon}; paired-samples: {"permutation": p}
    p_values: dict
    method: str
    note: str = ""


def paired_runs(a: Sequence[float], b: Sequence[float], metric: str = "", confidence: float = CONFIDENCE) -> PairedResult:
    """Two rows of one table over the SAME runs, in the same order (fold × seed): paired t-test
    (``ttest_rel``, with its t interval of the mean difference) and Wilcoxon signed-rank test."""
    x, y = _values(a, "paired_runs a"), _values(b, "paired_runs b")
    if len(x) != len(y):
        raise StatsError(f"paired_runs: {len(x)} scores against {len(y)}; pair the same folds and seeds")
    if len(x) < 2:
        raise StatsError(f"paired_runs: need at least 2 paired runs, got {len(x)}")
    d = x - y
    note = ""
    if np.all(d == 0):
        p_t = p_w = 1.0
        low = high = 0.0
        note = "identical scores"
    else:
        t = stats.ttest_rel(x, y)
        low, high = t.confidence_interval(confidence)
        p_t = float(t.pvalue)
        p_w = float(stats.wilcoxon(x, y).pvalue)
        smallest = 2.0 / 2 ** int(np.count_nonzero(d))  # the exact test's floor: all signs alike
        if smallest > 1 - confidence:
            note = (f"{np.count_nonzero(d)} non-zero pairs: the Wilcoxon test cannot go below p = {smallest:.3g}; "
                    "add folds or seeds")
    return PairedResult(metric, len(x), float(np.mean(x)), float(np.mean(y)), float(np.mean(d)), float(low),
                        float(high), confidence, {"t": p_t, "wilcoxon": p_w}, "paired-runs", note)


def paired_samples(y_true, pred_a, pred_b, metric: str = "uar", confidence: float = CONFIDENCE,
                   n_resamples: int = RESAMPLES, seed: int = 0) -> PairedResult:
    """Two runs scored on the SAME test rows: bootstrap interval of metric(A) − metric(B) (rows
    resampled jointly) and the p-value of a paired permutation test (two-sided)."""
    fn = metric_function(metric)
    t, pa, pb = _labels(y_true, pred_a, pred_b)

    def diff(y, u, v):
        return fn(y, u) - fn(y, v)

    rng = np.random.default_rng(seed)
    observed = diff(t, pa, pb)
    if np.array_equal(pa, pb):
        return PairedResult(metric, len(t), fn(t, pa), fn(t, pb), 0.0, 0.0, 0.0, confidence, {"permutation": 1.0},
                            "paired-samples", "identical predictions")
    boot = stats.bootstrap((t, pa, pb), diff, paired=True, vectorized=False, confidence_level=confidence,
                           n_resamples=n_resamples, method="percentile", random_state=rng)
    # permutation_type="samples" swaps the two predictions of each sample (the pairing is kept)
    perm = stats.permutation_test((pa, pb), lambda u, v: diff(t, u, v), permutation_type="samples",
                                  vectorized=False, n_resamples=n_resamples, alternative="two-sided",
                                  random_state=rng)
    ci = boot.confidence_interval
    return PairedResult(metric, len(t), float(fn(t, pa)), float(fn(t, pb)), float(observed), float(ci.low),
                        float(ci.high), confidence, {"permutation": float(perm.pvalue)}, "paired-samples")


__all__ = ["CONFIDENCE", "Interval", "METRICS", "PairedResult", "StatsError", "bootstrap_interval", "mean_std",
           "metric_function", "paired_runs", "paired_samples", "t_interval"]
