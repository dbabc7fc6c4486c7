"""Metrics against hand-computed values; a split with a missing class; multi-label WA."""

from __future__ import annotations

import numpy as np
import pytest

from mer.train.metrics import MetricWarning, classification_metrics, multilabel_metrics, weighted_accuracy
from mer.train.plots import row_normalise

CLASSES = ["ang", "hap", "neu"]


def test_single_label_by_hand():
    # confusion (rows true, cols pred):
    #   ang: 2 1 0   hap: 0 1 1   neu: 1 0 2     N = 8
    y_true = [0, 0, 0, 1, 1, 2, 2, 2]
    y_pred = [0, 0, 1, 1, 2, 0, 2, 2]
    m = classification_metrics(y_true, y_pred, CLASSES)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
    assert m["accuracy"] == pytest.approx(5 / 8)
    recall = [2 / 3, 1 / 2, 2 / 3]
    precision = [2 / 3, 1 / 2, 2 / 3]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    assert m["uar"] == pytest.approx(np.mean(recall))
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert m["weighted_f1"] == pytest.approx((3 * f1[0] + 2 * f1[1] + 3 * f1[2]) / 8)
    assert m["report"]["hap"]["recall"] == pytest.approx(0.5)
    assert m["report"]["hap"]["support"] == 2


def test_a_split_without_a_class_still_has_metrics_with_a_warning():
    y_true = [0, 0, 1, 1]  # no 'neu'
    y_pred = [0, 2, 1, 1]
    with pytest.warns(MetricWarning, match=r"\['neu'\] have no sample in split 'test'"):
        m = classification_metrics(y_true, y_pred, CLASSES, split="test")
    assert m["missing_classes"] == ["neu"]
    assert set(m["report"]) >= set(CLASSES)
    assert len(m["confusion"]) == 3
    # labels = all classes: neu's recall counts as 0 and its F1 as 0 in the macro means
    assert m["uar"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    f1_ang = 2 * 1 * 0.5 / 1.5
    assert m["macro_f1"] == pytest.approx((f1_ang + 1 + 0) / 3)


def test_binary_weighted_accuracy_by_hand():
    # P = 2 positives, N = 6 negatives; TP = 1, TN = 5 -> (1·6/2 + 5) / 12 = 8/12
    t = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([1, 0, 1, 0, 0, 0, 0, 0])
    wa, note = weighted_accuracy(t, p)
    assert wa == pytest.approx(8 / 12) and note == ""
    assert wa == pytest.approx((1 / 2 + 5 / 6) / 2)  # the mean of TPR and TNR


def test_multilabel_by_hand():
    classes = ["happy", "sad"]
    y_true = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    y_pred = np.array([[1, 0], [0, 1], [0, 1], [0, 1]])
    m = multilabel_metrics(y_true, y_pred, classes)
    # happy: P=2 N=2 TP=1 TN=2 -> (1·2/2 + 2)/4 = 0.75
    # sad:   P=2 N=2 TP=2 TN=1 -> (2 + 1)/4 = 0.75
    assert m["per_target"]["happy"]["wa"] == pytest.approx(0.75)
    assert m["per_target"]["sad"]["wa"] == pytest.approx(0.75)
    # weighted F1, happy: class 1: P=1, R=1/2 -> F1 2/3; class 0: P=2/3, R=1 -> 0.8; support 2/2 -> 0.7333
    assert m["per_target"]["happy"]["weighted_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    # sad: class 1: P=2/3 R=1 -> 0.8; class 0: P=1 R=1/2 -> 2/3
    assert m["per_target"]["sad"]["weighted_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["wa"] == pytest.approx(0.75)
    assert m["weighted_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_multilabel_target_without_positive_warns():
    with pytest.warns(MetricWarning, match="no positive sample"):
        m = multilabel_metrics(np.array([[0], [0], [0]]), np.array([[1], [0], [0]]), ["fear"])
    assert m["per_target"]["fear"]["wa"] == pytest.approx(2 / 3)


def test_row_normalise_keeps_empty_rows_zero():
    out = row_normalise(np.array([[2, 2], [0, 0]]))
    assert out.tolist() == [[0.5, 0.5], [0.0, 0.0]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_epoch_metrics_equal_the_scikit_learn_reference(seed):
    from mer.train.metrics import compute_metrics, fast_metrics

    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 3, 40)  # seed 2: drop a class to cover zero support
    y_pred = rng.integers(0, 4, 40)
    if seed == 2:
        y_true[y_true == 1] = 0
    classes = ["a", "b", "c", "d"]
    with pytest.warns(MetricWarning):
        ref = compute_metrics(y_true, y_pred, classes, multilabel=False)
    fast = fast_metrics(y_true, y_pred, 4, multilabel=False)
    for k, v in fast.items():
        assert v == pytest.approx(ref[k], abs=1e-12), k
    yt = rng.integers(0, 2, (30, 3))
    yp = rng.integers(0, 2, (30, 3))
    yt[:, 2] = 0  # a target without positives
    with pytest.warns(MetricWarning):
        ref = compute_metrics(yt, yp, ["x", "y", "z"], multilabel=True)
    fast = fast_metrics(yt, yp, 3, multilabel=True)
    for k, v in fast.items():
        assert v == pytest.approx(ref[k], abs=1e-12), k
