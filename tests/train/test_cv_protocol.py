"""The protocol card and the cross-validation aggregation, on hand-made inputs (pure functions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mer.pipeline.adapters.base import Protocol
from mer.train.cv import FoldRun, cv_markdown, cv_summary, pooled_metrics
from mer.train.errors import DataError
from mer.train.protocol import check_card, format_card, protocol_card


def card_of(groups, split, protocol=Protocol("fold1", "actor", True)):
    labels = ["a", "b", "a", "a;b", "", "b"]
    return protocol_card(protocol, adapter="ravdess", split_column="split", split=np.array(split, dtype=object),
                         groups=np.array(groups, dtype=object), labels=labels,
                         labeled=np.array([t != "" for t in labels]), classes=["a", "b"], val_carved=False,
                         val_groups=[], manifest={"path": "m.csv", "fingerprint": "f", "dataset_key": "k"})


def test_card_counts_groups_and_refuses_a_shared_group():
    card = card_of(["g1", "g1", "g2", "g3", "g3", ""], ["train", "train", "val", "test", "test", "test"])
    assert card["groups"] == {"train": ["g1"], "val": ["g2"], "test": ["g3"]}
    # multi-label rows count once per class; the unlabelled row counts nowhere
    assert card["counts"] == {"train": {"a": 1, "b": 1}, "val": {"a": 1, "b": 0}, "test": {"a": 1, "b": 2}}
    assert card["ungrouped"]["test"] == 1 and card["shared_groups"] == {}
    check_card(card, "m.csv")
    assert "no actor is in two splits" in format_card(card)

    shared = card_of(["g1", "g3", "g2", "g3", "g3", "g2"], ["train", "train", "val", "test", "test", "test"])
    assert shared["shared_groups"] == {"train/test": ["g3"], "val/test": ["g2"]}
    with pytest.raises(DataError, match=r"m.csv: protocol fold1 is declared speaker-independent.*train/test: g3"):
        check_card(shared, "m.csv")


def test_a_protocol_that_is_not_speaker_independent_says_so():
    card = card_of(["g1", "g3", "g2", "g3", "g3", "g2"], ["train", "train", "val", "test", "test", "test"],
                   Protocol("standard", "speaker", False))
    check_card(card, "m.csv")  # not refused
    text = format_card(card)
    assert "NOT speaker-independent by speaker" in text and "shared groups" in text and "train/test: g3" in text


def table(ids, labels, preds, classes=("a", "b")):
    out = pd.DataFrame({"id": ids, "split": "test", "label": labels, "prediction": preds, "missing": ""})
    for c in classes:
        out[f"prob_{c}"] = 0.5
    return out


def run(fold, seed, uar, tab):
    return FoldRun(fold, seed, f"{fold}/seed{seed}", {"test": {"accuracy": uar, "uar": uar, "macro_f1": uar,
                                                               "weighted_f1": uar}}, tab)


def test_cv_summary_mean_sample_std_and_pooled_predictions():
    t1 = table(["x1", "x2", "x3"], ["a", "a", "b"], ["a", "b", "b"])      # 2 of 3 right
    t2 = table(["y1", "y2"], ["b", "b"], ["b", "b"])                      # 2 of 2 right
    t3 = table(["z1"], ["a"], ["b"])                                      # 0 of 1
    runs = [run("f1", 0, 0.6, t1), run("f2", 0, 0.9, t2), run("f3", 0, 0.3, t3)]
    s = cv_summary(runs, multilabel=False)
    assert s["folds"] == ["f1", "f2", "f3"] and s["mean"]["uar"] == pytest.approx(0.6)
    assert s["std"]["uar"] == pytest.approx(0.3)  # sqrt(((0)^2 + 0.3^2 + 0.3^2) / 2), ddof=1
    pooled = s["pooled"]["per_seed"]["0"]
    assert pooled["n"] == 6 and pooled["accuracy"] == pytest.approx(4 / 6)
    # recall a: 1 of 3 (x1 right; x2, z1 wrong); recall b: 3 of 3 -> UAR 2/3
    assert pooled["uar"] == pytest.approx((1 / 3 + 1) / 2)
    md = cv_markdown(s)
    assert "| **mean ± std** | | 60.00 ± 30.00 |" in md and "pooled out-of-fold" in md


@pytest.mark.filterwarnings("ignore::mer.train.metrics.MetricWarning")
def test_seeds_are_averaged_per_fold_before_the_std_over_folds():
    t = table(["x"], ["a"], ["a"])
    s = cv_summary([run("f1", 0, 0.2, t), run("f1", 1, 0.4, t), run("f2", 0, 0.6, t.assign(id="y")),
                    run("f2", 1, 1.0, t.assign(id="y"))], multilabel=False)
    assert s["per_fold"]["f1"]["uar"] == pytest.approx(0.3) and s["per_fold"]["f2"]["uar"] == pytest.approx(0.8)
    assert s["std"]["uar"] == pytest.approx(np.std([0.3, 0.8], ddof=1))
    assert set(s["pooled"]["per_seed"]) == {"0", "1"}


def test_one_fold_has_no_std_and_overlapping_tests_are_not_pooled():
    t = table(["x1", "x2"], ["a", "b"], ["a", "a"])
    assert cv_summary([run("f1", 0, 0.5, t)], False)["std"]["uar"] is None
    s = cv_summary([run("f1", 0, 0.5, t), run("f2", 0, 0.5, t)], False)
    assert s["pooled"] is None and "not disjoint (2 samples are tested in several folds)" in s["pooled_note"]
    assert "No pooled out-of-fold metrics" in cv_markdown(s)


@pytest.mark.filterwarnings("ignore::mer.train.metrics.MetricWarning")
def test_pooled_multilabel_predictions():
    t1 = table(["x1", "x2"], ["a;b", "b"], ["a;b", ""])
    metrics, why = pooled_metrics([t1], multilabel=True)
    assert why == "" and metrics["n"] == 2
    # target a: both rows right (1/1 and 0/0); target b: 1 of 2 right -> mean per-target accuracy 0.75
    assert metrics["accuracy"] == pytest.approx(0.75)
