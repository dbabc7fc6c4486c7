"""The two figures of a run: ``confusion.png`` and ``curves.png`` (matplotlib, Agg backend).

``mer train`` and ``mer finetune`` draw them with the same functions, so their run folders
look alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def row_normalise(confusion: np.ndarray) -> np.ndarray:
    """Each row divided by its total (a class absent from the split keeps a row of zeros)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0)


def plot_confusion(confusion, classes: list[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (rows = true class), each cell annotated."""
    norm = row_normalise(confusion)
    counts = np.asarray(confusion)
    c = len(classes)
    size = max(4.0, 0.6 * c + 2)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(c), classes, rotation=45, ha="right")
    ax.set_yticks(range(c), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(c):
        for j in range(c):
            ax.text(j, i, f"{norm[i, j]:.2f}\n({int(counts[i, j])})", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title, fontsize=9)
    # fixed margins instead of tight_layout (which costs as much as drawing the figure twice)
    fig.subplots_adjust(left=0.2, bottom=0.2, right=0.95, top=0.92)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_multilabel_confusion(per_target: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """One row-normalised 2×2 confusion per target (rows = true absent/present)."""
    names = list(per_target)
    cols = min(3, len(names))
    rows = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        norm = row_normalise(per_target[name])
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks([0, 1], ["absent", "present"])
        ax.set_yticks([0, 1], ["absent", "present"])
        ax.set_title(name)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.subplots_adjust(left=0.12, bottom=0.1, right=0.97, top=0.85, wspace=0.6, hspace=0.6)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def multilabel_confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict[str, np.ndarray]:
    """Per target (column of the (n, C) 0/1 arrays), the 2×2 counts ``[[TN, FP], [FN, TP]]``
    (rows = true absent/present, columns = predicted absent/present)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    tn, fp = ((t == 0) & (p == 0)).sum(0), ((t == 0) & (p == 1)).sum(0)
    fn, tp = ((t == 1) & (p == 0)).sum(0), ((t == 1) & (p == 1)).sum(0)
    return {name: np.array([[tn[c], fp[c]], [fn[c], tp[c]]]) for c, name in enumerate(classes)}


def plot_run_confusion(metrics: dict, classes: list[str], multilabel: bool,
                       labels_of: Callable[[str], tuple[np.ndarray, np.ndarray]], path: str | Path,
                       title: str) -> Path | None:
    """A run's confusion.png: of the test split, else val, else train (the first with labelled rows).

    Single-label: the split's confusion matrix from ``metrics``. Multi-label: one 2×2 per target,
    counted from ``labels_of(split)`` = (true (n, C), predicted (n, C)), called only then (it
    predicts). The figure's title is ``"<title>: <split>"``. None when no split has labels.
    """
    split = next((s for s in ("test", "val", "train") if metrics.get(s, {}).get("n")), None)
    if split is None:
        return None
    title = f"{title}: {split}"
    if not multilabel:
        return plot_confusion(np.array(metrics[split]["confusion"]), classes, path, title)
    y_true, y_pred = labels_of(split)
    return plot_multilabel_confusion(multilabel_confusion(np.asarray(y_true).astype(int), y_pred, classes), path, title)


def plot_curves(history: list[dict], metric: str, path: str | Path, best_epoch: int = 0) -> Path:
    """Left: training loss (total and parts) per epoch. Right: the validation metrics."""
    epochs = [h["epoch"] for h in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    loss_keys = [k for k in (history[0] if history else {}) if k == "loss" or k.startswith("loss_")]
    for k in loss_keys:
        left.plot(epochs, [h[k] for h in history], label=k, linewidth=2 if k == "loss" else 1)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    if loss_keys:  # a model fitted in closed form (linear) has no loss curve
        left.legend(fontsize=7)
    val_keys = [k for k in (history[0] if history else {}) if k.startswith("val_") and k != "val_n"]
    for k in val_keys:
        right.plot(epochs, [h[k] for h in history], label=k, linewidth=2 if k == f"val_{metric}" else 1)
    if best_epoch:
        right.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"best epoch {best_epoch}")
    right.set_xlabel("epoch")
    right.set_ylabel("validation")
    right.legend(fontsize=7)
    fig.subplots_adjust(left=0.07, bottom=0.12, right=0.98, top=0.95, wspace=0.2)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
