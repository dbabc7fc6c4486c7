"""Classification metrics, computed with scikit-learn (the field's reference implementations).

Single-label (one class per sample):

* ``accuracy``     = weighted accuracy (WA) in the speech-emotion literature: correct / N;
* ``uar``          = unweighted average recall (macro recall over the classes);
* ``macro_f1``     = LMR-CL's primary metric; ``weighted_f1`` = F1 weighted by support;
* ``report``       = ``sklearn.metrics.classification_report(output_dict=True, zero_division=0)``;
* ``confusion``    = counts, rows = true class, columns = predicted class.

Every metric is computed over ALL configured classes (``labels=range(C)``), so a split
in which a class never occurs still gets numbers (its recall/F1 count as 0 in the macro
means, as scikit-learn does with ``zero_division=0``); such a split gets a warning.

Multi-label (CMU-MOSEI's 6 binary emotions, methods.md §2), per target c with P positives
and N negatives: ``WA_c = (TP·N/P + TN) / (2N)`` (= the mean of the true-positive and
true-negative rates) and ``weighted_f1_c`` (binary F1 weighted by the support of 0 and 1),
plus their means over the targets (``wa``, ``weighted_f1``); ``macro_f1`` is the mean of
the per-target F1 of the positive class and ``accuracy`` the mean per-target accuracy.
A target with no positive (or no negative) in the split has only one defined rate: WA is
then that rate alone, with a warning.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    recall_score,
)

#: metrics where higher is better; every metric the trainer may select on
SELECTABLE = ("accuracy", "uar", "macro_f1", "weighted_f1", "wa")


class MetricWarning(UserWarning):
    """A split lacks a class (or a target lacks positives); numbers are still given."""


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], split: str = "") -> dict:
    """Single-label metrics over all ``classes`` (``y_*`` are integer class indices)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    labels = list(range(len(classes)))
    where = f" in split {split!r}" if split else ""
    out: dict = {"n": int(len(y_true))}
    if len(y_true) == 0:
        warnings.warn(f"no labelled samples{where}: metrics are empty", MetricWarning, stacklevel=2)
        return out
    counts = np.bincount(y_true, minlength=len(classes))
    missing = [classes[c] for c in labels if counts[c] == 0]
    if missing:
        warnings.warn(f"class(es) {missing} have no sample{where}: metrics still cover all "
                      f"{len(classes)} classes (their recall/F1 count as 0)", MetricWarning, stacklevel=2)
        out["missing_classes"] = missing
    out["accuracy"] = float(accuracy_score(y_true, y_pred))
    out["uar"] = float(recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    out["macro_f1"] = float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    out["weighted_f1"] = float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0))
    out["report"] = classification_report(y_true, y_pred, labels=labels, target_names=list(classes),
                                          output_dict=True, zero_division=0)
    out["confusion"] = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return out


def weighted_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, str]:
    """Binary WA = (TP·N/P + TN) / (2N); returns (value, note). ``y_*`` are 0/1 vectors."""
    y_true = np.asarray(y_true).astype(bool)
    y_pred = np.asarray(y_pred).astype(bool)
    p = int(y_true.sum())
    n = int((~y_true).sum())
    tp = int((y_true & y_pred).sum())
    tn = int((~y_true & ~y_pred).sum())
    if p and n:
        return (tp * n / p + tn) / (2 * n), ""
    if p:
        return tp / p, "no negative sample: WA = true-positive rate"
    if n:
        return tn / n, "no positive sample: WA = true-negative rate"
    return float("nan"), "no sample"


def multilabel_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], split: str = "") -> dict:
    """Per-target WA and weighted F1 (and their means) for (N, C) 0/1 arrays."""
    y_true = np.asarray(y_true).astype(np.int64)
    y_pred = np.asarray(y_pred).astype(np.int64)
    where = f" in split {split!r}" if split else ""
    out: dict = {"n": int(len(y_true))}
    if len(y_true) == 0:
        warnings.warn(f"no labelled samples{where}: metrics are empty", MetricWarning, stacklevel=2)
        return out
    per: dict[str, dict] = {}
    for c, name in enumerate(classes):
        wa, note = weighted_accuracy(y_true[:, c], y_pred[:, c])
        if note:
            warnings.warn(f"target {name!r}{where}: {note}", MetricWarning, stacklevel=2)
        per[name] = {
            "wa": float(wa),
            "weighted_f1": float(f1_score(y_true[:, c], y_pred[:, c], labels=[0, 1], average="weighted",
                                          zero_division=0)),
            "f1": float(f1_score(y_true[:, c], y_pred[:, c], labels=[0, 1], pos_label=1, average="binary",
                                 zero_division=0)),
            "accuracy": float(accuracy_score(y_true[:, c], y_pred[:, c])),
            "support": int(y_true[:, c].sum()),
        }
        if note:
            per[name]["note"] = note
    out["wa"] = float(np.mean([v["wa"] for v in per.values()]))
    out["weighted_f1"] = float(np.mean([v["weighted_f1"] for v in per.values()]))
    out["macro_f1"] = float(np.mean([v["f1"] for v in per.values()]))
    out["accuracy"] = float(np.mean([v["accuracy"] for v in per.values()]))
    out["per_target"] = per
    return out


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def fast_metrics(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, multilabel: bool) -> dict[str, float]:
    """The scalar metrics from counts with numpy: what the trainer scores every epoch on.

    Same definitions as :func:`compute_metrics` (scikit-learn, ``zero_division=0``, all classes),
    without scikit-learn's per-call input validation, whose fixed cost per call would dominate
    the training time of small heads (bench/README.md, "Decisions and the measurements behind
    them"). Equal to the reference up to float rounding
    (tested).
    """
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        return {}
    if multilabel:
        t, p = y_true.astype(bool), y_pred.astype(bool)
        tp = (t & p).sum(0).astype(np.float64)
        tn = (~t & ~p).sum(0).astype(np.float64)
        fp = (~t & p).sum(0).astype(np.float64)
        fn = (t & ~p).sum(0).astype(np.float64)
        pos, neg = tp + fn, tn + fp
        tpr, tnr = _safe_div(tp, pos), _safe_div(tn, neg)
        wa = np.where((pos > 0) & (neg > 0), (tpr + tnr) / 2, np.where(pos > 0, tpr, tnr))
        f1_pos = _safe_div(2 * tp, 2 * tp + fp + fn)
        f1_neg = _safe_div(2 * tn, 2 * tn + fn + fp)
        n = len(t)
        weighted = (f1_pos * pos + f1_neg * neg) / n
        return {"wa": float(wa.mean()), "weighted_f1": float(weighted.mean()), "macro_f1": float(f1_pos.mean()),
                "accuracy": float(((tp + tn) / n).mean())}
    c = num_classes
    confusion = np.bincount(y_true * c + y_pred, minlength=c * c).reshape(c, c).astype(np.float64)
    tp = np.diag(confusion)
    support = confusion.sum(1)
    predicted = confusion.sum(0)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)
    return {"accuracy": float(tp.sum() / len(y_true)), "uar": float(recall.mean()), "macro_f1": float(f1.mean()),
            "weighted_f1": float((f1 * support).sum() / support.sum())}


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], multilabel: bool, split: str = "") -> dict:
    """Dispatch on the task type (see the module docstring for the keys)."""
    if multilabel:
        return multilabel_metrics(y_true, y_pred, classes, split)
    return classification_metrics(y_true, y_pred, classes, split)


def headline(metrics: dict, multilabel: bool) -> dict[str, float]:
    """The scalar metrics of one split, for tables and ablation rows."""
    keys = ("wa", "weighted_f1", "macro_f1", "accuracy") if multilabel else ("accuracy", "uar", "macro_f1", "weighted_f1")
    return {k: metrics[k] for k in keys if k in metrics}
