"""The output writers ``mer train`` and ``mer finetune`` share: predictions.csv's table and the
confusion figure's counts and split choice, against hand-computed values."""

from __future__ import annotations

import numpy as np

import mer.train.plots as plots
from mer.train.plots import multilabel_confusion, plot_run_confusion
from mer.train.predictions import predictions_table

CLASSES = ["ang", "hap", "sad"]


def test_predictions_table_single_label():
    y = np.array([2, -1, 0])
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25], [0.3, 0.6, 0.1]], np.float32)
    table = predictions_table(["a", "b", "c"], np.array(["test", "", "val"], dtype=object), CLASSES, y,
                              y >= 0, probs, np.array([2, 0, 1]), ["", "audio", "audio;bio"])
    assert list(table.columns) == ["id", "split", "label", "prediction", "missing", "prob_ang", "prob_hap", "prob_sad"]
    assert table["label"].tolist() == ["sad", "", "ang"]
    assert table["prediction"].tolist() == ["sad", "ang", "hap"]
    assert table["missing"].tolist() == ["", "audio", "audio;bio"]
    assert table["prob_hap"].tolist() == [np.float32(0.2), np.float32(0.25), np.float32(0.6)]


def test_predictions_table_multilabel():
    y = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 0]], np.float32)
    labeled = np.array([True, True, False])
    pred = np.array([[1, 1, 0], [0, 0, 0], [0, 0, 1]])
    table = predictions_table(["a", "b", "c"], np.array(["train"] * 3, dtype=object), CLASSES, y, labeled,
                              np.full((3, 3), 0.5, np.float32), pred, ["", "", ""])
    # an unlabelled row's label is '' even when y holds values; a labelled row with no target is '' too
    assert table["label"].tolist() == ["ang;sad", "", ""]
    assert table["prediction"].tolist() == ["ang;hap", "", "sad"]


def test_multilabel_confusion_counts():
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0]])
    p = np.array([[1, 1], [0, 1], [0, 0], [1, 0], [1, 0]])
    per = multilabel_confusion(y, p, ["x", "z"])
    # x: true 1,1,0,0,1 / pred 1,0,0,1,1 -> TN 1, FP 1, FN 1, TP 2
    np.testing.assert_array_equal(per["x"], [[1, 1], [1, 2]])
    # z: true 0,1,1,0,0 / pred 1,1,0,0,0 -> TN 2, FP 1, FN 1, TP 1
    np.testing.assert_array_equal(per["z"], [[2, 1], [1, 1]])


def test_plot_run_confusion_picks_the_first_labelled_split(monkeypatch, tmp_path):
    drawn = []
    monkeypatch.setattr(plots, "plot_confusion", lambda conf, classes, path, title: drawn.append((conf, title)))
    monkeypatch.setattr(plots, "plot_multilabel_confusion", lambda per, path, title: drawn.append((per, title)))
    asked = []

    def labels_of(split):
        asked.append(split)
        return np.array([[1, 0, 0]]), np.array([[1, 0, 1]])

    metrics = {"test": {"n": 0}, "val": {"n": 2, "confusion": [[1, 0, 0], [0, 1, 0], [0, 0, 0]]}, "train": {"n": 5}}
    plot_run_confusion(metrics, CLASSES, False, labels_of, tmp_path / "c.png", "lmr text")
    assert drawn[-1][1] == "lmr text: val" and np.array_equal(drawn[-1][0], metrics["val"]["confusion"])
    assert asked == []  # single-label: the matrix comes from metrics, nothing is predicted
    plot_run_confusion(metrics, CLASSES, True, labels_of, tmp_path / "c.png", "finetune text")
    assert asked == ["val"] and drawn[-1][1] == "finetune text: val"
    np.testing.assert_array_equal(drawn[-1][0]["sad"], [[0, 1], [0, 0]])
    assert plot_run_confusion({"test": {"n": 0}}, CLASSES, False, labels_of, tmp_path / "c.png", "t") is None
