"""``predictions.csv``: one row per manifest row, written the same way by every kind of run.

``mer train`` (:mod:`mer.train.run`) and ``mer finetune`` (:mod:`mer.train.finetune`) predict
differently (cached features vs the encoder on raw inputs) but hand users one file format, so
the table is built here once from host arrays.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def label_text(classes: list[str], y: np.ndarray, labeled: np.ndarray) -> list[str]:
    """Per row, the class name; multi-label (``y`` (N, C) multi-hot): the ';'-joined names of the
    targets present. An unlabelled row gives ''."""
    if y.ndim == 2:
        return [";".join(c for c, v in zip(classes, y[i]) if v > 0) if labeled[i] else "" for i in range(len(y))]
    return [classes[v] if v >= 0 else "" for v in y]


def prediction_text(classes: list[str], pred: np.ndarray) -> list[str]:
    """Per row, the predicted class name; multi-label (``pred`` (N, C) 0/1): the ';'-joined names."""
    if pred.ndim == 2:
        return [";".join(c for c, v in zip(classes, p) if v) for p in pred]
    return [classes[p] for p in pred]


def predictions_table(ids: list[str], split: np.ndarray, classes: list[str], y: np.ndarray, labeled: np.ndarray,
                      probs: np.ndarray, pred: np.ndarray, missing: list[str]) -> pd.DataFrame:
    """Columns id, split, label, prediction, missing, prob_<class> (one per class, in class order).

    Args:
        ids, split: per row, in manifest order.
        y: (N,) class indices (−1 = unlabelled) or (N, C) multi-hot (multi-label); labeled: (N,) bool.
        probs: (N, C) probabilities; pred: (N,) class indices or (N, C) 0/1.
        missing: per row, the ';'-joined modalities the sample lacked ('' = none).
    """
    table = pd.DataFrame({"id": ids, "split": split, "label": label_text(classes, y, labeled),
                          "prediction": prediction_text(classes, pred), "missing": missing})
    for c, name in enumerate(classes):
        table[f"prob_{name}"] = probs[:, c]
    return table
