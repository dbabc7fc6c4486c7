"""Issue 13: no stale manifest, the protocol card, and cross-validation as one command.

Over a generated RAVDESS corpus (24 actors × neutral/angry × 2 statements, voiced clips that
eGeMAPS can measure), extracted ONCE with protocol fold1; every later command changes only the
``dataset`` section.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from kit.corpora import write_ravdess_voiced
from mer.cli import cli
from mer.config import load_config
from mer.experiment import train_experiment
from mer.pipeline.adapters.ravdess import FOLDS
from mer.train.evaluate import evaluate_run

pytestmark = pytest.mark.usefixtures("one_thread")
QUIET = {"progress": False, "log": lambda line: None}
TRAIN = ["train.model=unimodal", "train.epochs=3", "train.hidden=8", "train.plots=false"]


def actor_of(sample_id: str) -> int:
    return int(sample_id.split("-")[-1])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from mer.pipeline.extract import extract

    root = tmp_path_factory.mktemp("ravdess-cv")
    write_ravdess_voiced(root / "data")
    config = {"dataset": {"name": "ravdess", "root": str(root / "data"), "protocol": "fold1"},
              "cache": {"root": str(root / "cache"), "dtype": "float32"},
              "features": {"audio": {"encoder": "egemaps"}},
              "extract": {"device": "cpu", "prefetch": 0, "io_threads": 1},
              "train": {"device": "cpu"},
              "output": str(root / "runs")}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    report = extract(load_config(path), None, progress=False)
    assert report.modalities["audio"].present == 96 and report.modalities["audio"].failures == 0
    return path


def shard_stamps(root) -> dict[str, int]:
    """The extracted features and their spec (not training's verification memo)."""
    folder = root / "cache" / "ravdess" / "audio"
    return {str(p): p.stat().st_mtime_ns for p in [*folder.rglob("shard-*"), *folder.rglob("spec.json")]}


def test_a_fold_switch_rebuilds_the_manifest_and_trains_on_that_fold(corpus, tmp_path):
    """The issue's case: manifest built with fold1, ``--set dataset.protocol=fold3`` trained on
    fold 1's actors. Now the run tests on fold 3's actors, says so in its card, and the fold-1
    run trained before stays evaluable (its manifest file is not rewritten)."""
    root = corpus.parent
    before = shard_stamps(root)
    lines: list[str] = []
    fold1, _, [r1] = train_experiment(load_config(corpus, TRAIN), tmp_path / "fold1", **QUIET)
    fold3, _, [r3] = train_experiment(load_config(corpus, TRAIN + ["dataset.protocol=fold3"]), tmp_path / "fold3",
                                      progress=False, log=lines.append)
    rebuilt = [line for line in lines if "rebuilt" in line]
    assert len(rebuilt) == 1 and "dataset.protocol: 'fold1' -> 'fold3'" in rebuilt[0], lines

    preds = pd.read_csv(fold3 / "predictions.csv", keep_default_na=False)
    assert {actor_of(i) for i in preds.loc[preds["split"] == "test", "id"]} == set(FOLDS[2]) == {8, 9, 19, 23}
    assert r3.metrics["test"]["n"] == 16
    card = json.loads((fold3 / "metrics.json").read_text())["protocol"]
    assert card["protocol"] == "fold3" and card["adapter"] == "ravdess" and card["speaker_independent"]
    assert card["groups"]["test"] == ["Actor_08", "Actor_09", "Actor_19", "Actor_23"]
    assert card["counts"]["test"] == {"angry": 8, "neutral": 8} and card["shared_groups"] == {}
    assert card["selected_on"] == "val" and card["groups"]["val"] == ["Actor_01", "Actor_02"]
    assert card["manifest"]["fingerprint"] == r3.metrics["run"]["manifest"]["fingerprint"]
    assert "protocol: ravdess fold3" in (fold3 / "log.txt").read_text()

    assert r1.metrics["protocol"]["groups"]["test"] == ["Actor_01", "Actor_11", "Actor_20", "Actor_21"]
    assert r1.metrics["run"]["manifest"]["path"] != r3.metrics["run"]["manifest"]["path"]
    assert json.loads(json.dumps(evaluate_run(fold1, "test"))) == r1.metrics["test"]  # fold 1 still reproducible
    assert shard_stamps(root) == before  # nothing re-extracted

    out = CliRunner().invoke(cli, ["evaluate", str(fold3)])
    assert out.exit_code == 0, out.output
    assert "protocol: ravdess fold3" in out.output and "Actor_08, Actor_09, Actor_19, Actor_23" in out.output


def test_train_folds_all_writes_per_fold_runs_and_the_cv_tables(corpus, tmp_path):
    root = corpus.parent
    before = shard_stamps(root)
    args = ["train", "-c", str(corpus), *(a for s in TRAIN for a in ("--set", s)), "--folds", "all",
            "--seeds", "0,1", "--run-dir", str(tmp_path / "cv"), "--quiet"]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 0, out.output
    assert "pooled out-of-fold" in out.output and "mean ± std" in out.output
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert cv["folds"] == ["fold1", "fold2", "fold3", "fold4"] and cv["seeds"] == [0, 1]
    assert cv["fold_field"] == "dataset.protocol"

    tables, per_fold_uar = [], []
    for k, fold in enumerate(cv["folds"]):
        uars = []
        for seed in (0, 1):
            run = tmp_path / "cv" / fold / f"seed{seed}"
            metrics = json.loads((run / "metrics.json").read_text())
            assert metrics["protocol"]["protocol"] == fold
            assert metrics["protocol"]["groups"]["test"] == [f"Actor_{a:02d}" for a in FOLDS[k]]
            uars.append(metrics["test"]["uar"])
            if seed == 0:
                tables.append(pd.read_csv(run / "predictions.csv", keep_default_na=False))
        per_fold_uar.append(np.mean(uars))
        assert cv["per_fold"][fold]["uar"] == pytest.approx(np.mean(uars))
    # mean ± SAMPLE std over the folds' means, by hand
    mean = sum(per_fold_uar) / 4
    std = (sum((u - mean) ** 2 for u in per_fold_uar) / 3) ** 0.5
    assert cv["mean"]["uar"] == pytest.approx(mean) and cv["std"]["uar"] == pytest.approx(std)
    # pooled out-of-fold accuracy of seed 0 = correct / all test samples over the 4 folds
    tests = pd.concat([t[t["split"] == "test"] for t in tables])
    # the 4 folds test 16 distinct actors (the protocol never tests 2, 6, 13, 15-18, 22): 64 clips
    assert len(tests) == 64 and tests["id"].is_unique
    assert cv["pooled"]["per_seed"]["0"]["accuracy"] == pytest.approx((tests["label"] == tests["prediction"]).mean())
    assert shard_stamps(root) == before  # nothing re-extracted
    assert "Actor_08, Actor_09, Actor_19, Actor_23" in (tmp_path / "cv" / "cv.md").read_text()


def test_folds_errors_name_the_folds(corpus, tmp_path):
    out = CliRunner().invoke(cli, ["train", "-c", str(corpus), "--folds", "7", "--run-dir", str(tmp_path / "x")])
    assert out.exit_code == 2 and "no fold '7'; the folds are fold1, fold2, fold3, fold4" in out.output
    out = CliRunner().invoke(cli, ["train", "-c", str(corpus), "--set", "dataset.protocol=mpuc", "--folds", "all"])
    assert out.exit_code == 2 and "protocol 'mpuc' is one split" in out.output


def test_ablate_takes_folds_as_an_axis(corpus, tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"model": ["unimodal"], "folds": [2, 4], "seeds": [0]}))
    out = CliRunner().invoke(cli, ["ablate", "-c", str(corpus), *(a for s in TRAIN[1:] for a in ("--set", s)),
                                   "-g", str(grid), "--out", str(tmp_path / "abl"), "--quiet"])
    assert out.exit_code == 0, out.output
    table = pd.read_csv(tmp_path / "abl" / "ablation.csv")
    assert sorted(table["dataset.protocol"]) == ["fold2", "fold4"]
    for _, row in table.iterrows():
        card = json.loads((tmp_path / "abl" / "cells" / row["cell"] / "seed0" / "metrics.json").read_text())["protocol"]
        k = int(row["dataset.protocol"][-1])
        assert card["groups"]["test"] == [f"Actor_{a:02d}" for a in FOLDS[k - 1]]
