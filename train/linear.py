"""Fitting the ``linear`` model: logistic regression on train, C chosen on validation.

The ``fit`` of the ``linear`` registry entry (same signature as :func:`mer.train.trainer.fit`).
It embeds the training and validation rows with :meth:`Linear.features` (the standardised
cache vectors and presence flags), then hands them to
:func:`mer.train.probe.fit_linear_probe`, the same fitting MPUC-MER's probe uses: one
scikit-learn ``LogisticRegression`` (lbfgs, multinomial; one binary regression per target for
multi-label corpora) per C of ``train.linear.c``, on the features standardised with training
statistics, ``class_weight="balanced"`` when ``train.class_weights`` is ``inverse``; the C with
the best validation ``train.select_metric`` wins (the smallest C among equal scores: the
strongest regularisation). The test split is never looked at.

``history.csv`` has one row per C tried ("epoch" k = the k-th C), so ``best_epoch`` is the
position of the chosen C in the grid.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from mer.train.data import TrainData
from mer.train.models.linear import Linear
from mer.train.probe import ProbeError, fit_linear_probe
from mer.train.trainer import EVAL_CHUNK, FitResult, TrainingError, check_select_metric


@torch.no_grad()
def embed(model: Linear, data: TrainData, rows: np.ndarray) -> np.ndarray:
    """(len(rows), ΣD + M) features of host rows ``rows`` (float64, host)."""
    out = [np.zeros((0, model.in_dim))]
    for s in range(0, len(rows), EVAL_CHUNK):
        batch = data.batch(torch.as_tensor(rows[s:s + EVAL_CHUNK], dtype=torch.long, device=data.device))
        out.append(model.features(batch.x, batch.present).double().cpu().numpy())
    return np.concatenate(out)


def fit(model: Linear, data: TrainData, train, seed: int, device: torch.device | None = None,
        progress: bool = True, log: Callable[[str], None] | None = None) -> FitResult:
    """Fit ``model`` on the training rows, C chosen on the validation rows (see module doc)."""
    say = log or (lambda line: None)
    check_select_metric(train.select_metric, data.multilabel)
    if not isinstance(model, Linear):
        raise TypeError(f"mer.train.linear.fit fits Linear models, got {type(model).__name__}")
    tr, va = data.rows("train"), data.rows("val")
    y_all = data.y.cpu().numpy()
    try:
        result = fit_linear_probe(model.probe, embed(model, data, tr), y_all[tr], embed(model, data, va), y_all[va],
                                  data.classes, data.multilabel, list(train.linear.c), train.select_metric,
                                  balanced=train.class_weights == "inverse", seed=seed, who="linear model")
    except ProbeError as exc:
        raise TrainingError(str(exc)) from None
    model.eval()
    grid = ", ".join(f"C={c:g}: {s:.4f}" for c, s in result.scores.items())
    say(f"linear: C = {result.chosen:g} (val {train.select_metric} {result.val_score:.4f}; {grid})")
    history = [{"epoch": k, "C": c, f"val_{train.select_metric}": s}
               for k, (c, s) in enumerate(result.scores.items(), start=1)]
    best = 1 + list(result.scores).index(result.chosen)
    return FitResult(history=history, best_epoch=best, best_score=result.val_score)
