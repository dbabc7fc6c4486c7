"""Fitting MPUC-MER's evaluation probe on frozen features (methods.md §2, "Evaluation").

Both probes are fitted on the TRAINING split only; the validation split chooses their one
hyper-parameter (the linear probe's C, the MLP's stopping epoch) by ``train.select_metric``;
the test split is never looked at.

* ``linear``: scikit-learn ``LogisticRegression`` (lbfgs; multinomial for several classes)
  on standardised features, ``class_weight="balanced"`` when ``train.class_weights`` is
  ``inverse``; C from ``mpuc.probe_c``. Multi-label corpora (CMU-MOSEI) get one binary
  regression per target. The fitted model is copied into a torch
  :class:`~mer.train.models.mpuc.LinearProbe` — exactly the same affine map (softmax of it
  is ``predict_proba``; a binary regression becomes the logits [0, w·x + b]) — so the run
  reloads from ``model.pt`` without pickles.
* ``mlp``: the original's 2-layer MLP, trained with Adam (``train.lr``, ``weight_decay``,
  ``batch_size``, ``epochs``) on the class-weighted loss of :mod:`mer.train.criterion`,
  early-stopped on the validation metric (``train.patience``), best epoch restored.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from mer.train.criterion import Criterion
from mer.train.metrics import MetricWarning, compute_metrics
from mer.train.models.mpuc import LinearProbe, MLPProbe

#: logit given to a class the training split never shows (softmax weight ≈ 0) and the
#: constant logit of a multi-label target with a single outcome in training
ABSENT_LOGIT = 30.0


class ProbeError(ValueError):
    """The probe cannot be fitted (no labelled training/validation sample, a single class)."""


@dataclass
class ProbeResult:
    kind: str
    #: chosen C (linear) or best epoch (mlp)
    chosen: float
    val_score: float
    #: linear: {C: val score}; mlp: per-epoch rows
    scores: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)


def standardisation(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean/std of the training features; a constant feature gets std 1."""
    f = np.asarray(f, dtype=np.float64)
    mean = f.mean(axis=0)
    std = f.std(axis=0)
    return mean, np.where(std > 1e-8, std, 1.0)


def _score(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], multilabel: bool, metric: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricWarning)
        return float(compute_metrics(y_true, y_pred, classes, multilabel, "val")[metric])


def _check(f_train: np.ndarray, f_val: np.ndarray, who: str = "MPUC probe") -> None:
    if len(f_train) == 0:
        raise ProbeError(f"{who}: the training split has no labelled sample")
    if len(f_val) == 0:
        raise ProbeError(f"{who}: the validation split has no labelled sample to choose the probe on "
                         "(add 'val' rows, or let mer carve them: leave 'val' out of the manifest)")
    for name, f in (("training", f_train), ("validation", f_val)):
        if not np.isfinite(f).all():
            raise ProbeError(f"{who}: the {name} features are not finite (NaN/inf); "
                             "check that split's input features")


def _affine_single(lr: LogisticRegression, num_classes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, F) weights and (C,) biases whose softmax equals ``lr.predict_proba`` over all classes."""
    w = np.zeros((num_classes, dim))
    b = np.full(num_classes, -ABSENT_LOGIT)
    seen = lr.classes_.astype(int)
    if len(seen) == 2:  # binary: decision z = w·x + b is the logit of classes_[1] against classes_[0]
        w[seen[1]], b[seen[1]] = lr.coef_[0], lr.intercept_[0]
        b[seen[0]] = 0.0
    else:
        w[seen], b[seen] = lr.coef_, lr.intercept_
    return w, b


def fit_linear_probe(probe: LinearProbe, f_train: np.ndarray, y_train: np.ndarray, f_val: np.ndarray,
                     y_val: np.ndarray, classes: list[str], multilabel: bool, c_grid: list[float],
                     select_metric: str, balanced: bool = True, seed: int = 0,
                     who: str = "MPUC probe") -> ProbeResult:
    """Fit one logistic regression per C on train, keep the best on val, copy it into ``probe``.

    ``who`` names the fitted thing in error messages (MPUC-MER's probe, the ``linear`` model).
    """
    _check(f_train, f_val, who)
    mean, std = standardisation(f_train)
    xt, xv = (f_train - mean) / std, (f_val - mean) / std
    num = len(classes)
    if not multilabel and len(np.unique(y_train)) < 2:
        raise ProbeError(f"{who}: the training split has a single class ({classes[int(y_train[0])]!r})")
    best, scores = None, {}
    for c in c_grid:
        w, b = _fit_affine(xt, y_train, num, multilabel, c, balanced, seed)
        logits = xv @ w.T + b
        pred = (logits > 0).astype(np.int64) if multilabel else logits.argmax(axis=1)
        score = _score(y_val, pred, classes, multilabel, select_metric)
        scores[float(c)] = score
        if best is None or (math.isfinite(score) and score > best[0]):
            best = (score, float(c), w, b)
    score, c, w, b = best
    with torch.no_grad():
        probe.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        probe.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        probe.linear.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
        probe.linear.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    return ProbeResult("linear", c, score, scores)


def _fit_affine(x: np.ndarray, y: np.ndarray, num: int, multilabel: bool, c: float, balanced: bool,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    weight = "balanced" if balanced else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if not multilabel:
            lr = LogisticRegression(C=c, class_weight=weight, max_iter=2000, random_state=seed)
            lr.fit(x, y.astype(np.int64))
            return _affine_single(lr, num, x.shape[1])
        w, b = np.zeros((num, x.shape[1])), np.zeros(num)
        for k in range(num):
            t = y[:, k] > 0.5
            if t.all() or not t.any():  # one outcome only: a constant decision
                b[k] = ABSENT_LOGIT if t.all() else -ABSENT_LOGIT
                continue
            lr = LogisticRegression(C=c, class_weight=weight, max_iter=2000, random_state=seed)
            lr.fit(x, t.astype(np.int64))
            w[k], b[k] = lr.coef_[0], lr.intercept_[0]
        return w, b


def fit_mlp_probe(probe: MLPProbe, f_train: np.ndarray, y_train: np.ndarray, f_val: np.ndarray,
                  y_val: np.ndarray, classes: list[str], multilabel: bool, train, seed: int,
                  device: torch.device) -> ProbeResult:
    """Train the MLP probe on train, early-stopped on the validation ``train.select_metric``."""
    _check(f_train, f_val)
    mean, std = standardisation(f_train)
    with torch.no_grad():
        probe.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        probe.std.copy_(torch.as_tensor(std, dtype=torch.float32))
    ft = torch.as_tensor(f_train, dtype=torch.float32, device=device)
    fv = torch.as_tensor(f_val, dtype=torch.float32, device=device)
    yt = torch.as_tensor(y_train, dtype=torch.float32 if multilabel else torch.long, device=device)
    criterion = Criterion.from_training(y_train, len(classes), multilabel, train.class_weights, device, classes)
    opt = torch.optim.Adam(probe.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    best_state, best_score, best_epoch, waited = copy.deepcopy(probe.state_dict()), -math.inf, 0, 0
    history = []
    for epoch in range(1, train.epochs + 1):
        probe.train()
        order = torch.randperm(len(ft), generator=gen).to(device)
        total = 0.0
        for s in range(0, len(ft), train.batch_size):
            idx = order[s:s + train.batch_size]
            loss = criterion(probe(ft[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        probe.eval()
        with torch.no_grad():
            pred = criterion.predict(probe(fv)).cpu().numpy()
        score = _score(y_val, pred, classes, multilabel, train.select_metric)
        history.append({"epoch": epoch, "loss": total / len(ft), f"val_{train.select_metric}": score})
        if best_epoch == 0 or (math.isfinite(score) and score > best_score):
            best_state, best_score, best_epoch, waited = copy.deepcopy(probe.state_dict()), score, epoch, 0
        else:
            waited += 1
            if waited >= train.patience:
                break
    probe.load_state_dict(best_state)
    probe.eval()
    return ProbeResult("mlp", float(best_epoch), best_score, history=history)
