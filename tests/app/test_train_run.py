"""End to end over real caches: ``mer train`` outputs, determinism, learning, ``mer evaluate``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from mer.cli import cli
from mer.config import load_config
from mer.train.evaluate import evaluate_run, load_checkpoint
from mer.train.metrics import MetricWarning
from mer.experiment import train_experiment
from kit.train_corpus import extract_all, make_corpus

QUIET = {"progress": False, "log": lambda line: None}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    path, table = make_corpus(root, n=96, dims={"text": 6, "audio": 5}, missing={"audio": [4, 9]}, unlabeled=[7])
    extract_all(path)
    return path, table


def test_train_writes_every_output_and_evaluate_reproduces_it(corpus, tmp_path):
    path, table = corpus
    config = load_config(path, ["train.model=late", "train.epochs=12"])
    folder, summary, results = train_experiment(config, tmp_path / "run", **QUIET)
    names = {p.name for p in folder.iterdir()}
    assert {"config.yaml", "metrics.json", "predictions.csv", "history.csv", "confusion.png", "curves.png",
            "model.pt", "log.txt"} <= names
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics) == {"train", "val", "test", "run", "protocol"}
    card = metrics["protocol"]  # a generic manifest without val: val carved from the training groups
    assert card["val_carved"] and card["groups"]["val"] == card["val_carved_groups"] == metrics["run"]["val_groups"]
    assert card["groups"]["test"] == ["g6", "g7"] and card["shared_groups"] == {}
    for key in ("accuracy", "uar", "macro_f1", "weighted_f1", "report", "confusion"):
        assert key in metrics["test"]
    assert metrics["run"]["val_carved"] and "carved" in metrics["run"]["notes"][0]
    assert metrics["run"]["missing"] == {"text": 0, "audio": 2}
    preds = pd.read_csv(folder / "predictions.csv", keep_default_na=False)
    assert list(preds.columns[:5]) == ["id", "split", "label", "prediction", "missing"]
    assert [c for c in preds.columns if c.startswith("prob_")] == ["prob_ang", "prob_hap", "prob_neu"]
    assert len(preds) == 96 and (preds["missing"] == "audio").sum() == 2  # missing-modality samples kept
    np.testing.assert_allclose(preds.filter(like="prob_").sum(1), 1.0, rtol=1e-5)
    history = pd.read_csv(folder / "history.csv")
    assert {"epoch", "loss", "loss_ce_text", "loss_ce_audio", "val_macro_f1"} <= set(history.columns)
    ckpt = load_checkpoint(folder)  # weights_only=True: plain data + tensors
    assert ckpt["model"] == "late" and ckpt["classes"] == ["ang", "hap", "neu"]
    assert set(ckpt["cache_keys"]) == {"text", "audio"} and set(ckpt["stats"]) == {"text", "audio"}
    assert ckpt["manifest"]["fingerprint"] == metrics["run"]["manifest"]["fingerprint"]
    resolved = load_config(folder / "config.yaml")
    assert resolved.train.modalities == ["text", "audio"] and resolved.train.seeds == [0]
    # mer evaluate reproduces metrics.json exactly, split by split
    for split in ("test", "val", "train"):
        again = json.loads(json.dumps(evaluate_run(folder, split)))
        assert again == metrics[split], split
    out = CliRunner().invoke(cli, ["evaluate", str(folder), "--split", "test", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output[out.output.index("{"):]) == metrics["test"]


def test_same_seed_same_metrics_other_seed_differs(corpus, tmp_path):
    path, _ = corpus
    config = load_config(path, ["train.model=lmr", "train.epochs=2", "train.plots=false",
                                "train.lmr.branch={text: identity, audio: identity}"])
    a, _, _ = train_experiment(config, tmp_path / "a", seeds=[0], **QUIET)
    b, _, _ = train_experiment(config, tmp_path / "b", seeds=[0], **QUIET)
    c, _, _ = train_experiment(config, tmp_path / "c", seeds=[1], **QUIET)
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()
    assert (a / "predictions.csv").read_bytes() != (c / "predictions.csv").read_bytes()


def test_the_trainer_learns_separable_features(corpus, tmp_path):
    path, _ = corpus
    config = load_config(path, ["train.model=concat", "train.plots=false"])
    folder, summary, results = train_experiment(config, tmp_path / "concat", **QUIET)
    assert results[0].metrics["test"]["macro_f1"] > 0.9


def test_lmr_learns_separable_features(corpus, tmp_path):
    path, _ = corpus
    # H = 64: at H <= 16 the Diff term collapses the private/shared vectors (see train/models/lmr.py)
    config = load_config(path, ["train.model=lmr", "train.epochs=10", "train.lr=0.001", "train.lmr.hidden=64",
                                "train.lmr.heads=4", "train.lmr.ffn=64", "train.lmr.tokens=2",
                                "train.lmr.branch={text: identity, audio: identity}", "train.plots=false"])
    folder, summary, results = train_experiment(config, tmp_path / "lmr", **QUIET)
    assert results[0].metrics["test"]["macro_f1"] > 0.9


def test_cli_train_several_seeds_summary_and_table(corpus, tmp_path):
    path, _ = corpus
    run = tmp_path / "seeds"
    out = CliRunner().invoke(cli, ["train", "-c", str(path), "--set", "train.epochs=3", "--set", "train.plots=false",
                                   "--seeds", "0,1", "--run-dir", str(run), "--quiet", "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert (run / "seed0" / "model.pt").is_file() and (run / "seed1" / "model.pt").is_file()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["seeds"] == [0, 1]
    per_seed = [json.loads((run / f"seed{s}" / "metrics.json").read_text())["test"]["macro_f1"] for s in (0, 1)]
    assert summary["mean"]["test"]["macro_f1"] == pytest.approx(np.mean(per_seed))
    assert summary["std"]["test"]["macro_f1"] == pytest.approx(np.std(per_seed))
    assert "macro_f1" in out.output and "±" in out.output


def test_cli_refuses_without_cache_and_prints_the_extract_command(corpus, tmp_path):
    path, _ = corpus
    out = CliRunner().invoke(cli, ["train", "-c", str(path), "--set", "features.audio.dim=7", "--quiet"])
    assert out.exit_code == 2
    assert f"mer extract -c {path} --set features.audio.dim=7 --modality audio" in out.output
    out = CliRunner().invoke(cli, ["train", "-c", str(path), "--set", "train.model=lmr",
                                   "--set", "train.modalities=[text]", "--quiet"])
    assert out.exit_code == 2 and "lmr needs at least two modalities; use model: unimodal" in out.output


def test_class_absent_from_a_split_gives_metrics_and_a_warning(tmp_path):
    path, table = make_corpus(tmp_path, n=48, dims={"text": 4}, val=True)
    # drop every 'neu' sample from the test split
    neu_test = (table["split"] == "test") & (table["label"] == "neu")
    table.loc[neu_test, "label"] = "ang"
    table.to_csv(path.parent / "corpus.csv", index=False)
    extract_all(path)
    config = load_config(path, ["train.epochs=2", "train.plots=false"])
    with pytest.warns(MetricWarning, match=r"\['neu'\] have no sample in split 'test'"):
        folder, _, results = train_experiment(config, tmp_path / "r", **QUIET)
    test = results[0].metrics["test"]
    assert test["missing_classes"] == ["neu"] and len(test["confusion"]) == 3


def test_evaluate_on_another_manifest_with_the_same_encoders(corpus, tmp_path):
    path, table = corpus
    config = load_config(path, ["train.epochs=3", "train.plots=false"])
    folder, _, _ = train_experiment(config, tmp_path / "run", **QUIET)
    # a second corpus (other features, same encoders) extracted into its own cache
    other, _ = make_corpus(tmp_path / "other", n=30, dims={"text": 6, "audio": 5}, seed=5, corpus="other")
    extract_all(other)
    manifest = tmp_path / "other" / "cache" / "other" / "manifest.csv"
    metrics = evaluate_run(folder, "all", manifest)
    assert metrics["n"] == 30 and 0.0 <= metrics["accuracy"] <= 1.0
    # the caches must carry the run's encoder keys
    (tmp_path / "lonely").mkdir()
    manifest.parent.joinpath("audio").rename(tmp_path / "lonely" / "audio")
    out = CliRunner().invoke(cli, ["evaluate", str(folder), "--manifest", str(manifest), "--split", "all"])
    assert out.exit_code == 2 and "no cache with the run's encoder key" in out.output


def test_multilabel_run_metrics_and_reproduction(tmp_path):
    path, table = make_corpus(tmp_path, n=72, dims={"text": 5, "audio": 4}, multilabel=True)
    extract_all(path)
    config = load_config(path, ["train.epochs=15", "train.balanced_sampling=true"])
    folder, _, results = train_experiment(config, tmp_path / "r", **QUIET)
    test = results[0].metrics["test"]
    assert {"wa", "weighted_f1", "macro_f1", "accuracy", "per_target"} <= set(test)
    assert set(test["per_target"]) == {"ang", "hap", "neu"} and test["wa"] > 0.8
    preds = pd.read_csv(folder / "predictions.csv", keep_default_na=False)
    labels = dict(zip(table["id"], table["label"]))
    assert all(set(l.split(";")) == set(labels[i].split(";")) for i, l in zip(preds["id"], preds["label"]))
    assert json.loads(json.dumps(evaluate_run(folder, "test"))) == json.loads((folder / "metrics.json").read_text())["test"]


def test_quiet_train_still_shows_signs_of_life(corpus, tmp_path):
    """`mer train --quiet` hides bars, not progress: one line per block of epochs."""
    path, _ = corpus
    res = CliRunner().invoke(cli, ["train", "-c", str(path), "--set", "train.model=concat", "--set", "train.epochs=20",
                                   "--set", "train.patience=100", "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "epoch 10/20: loss " in res.output and "epoch 20/20: loss " in res.output
    assert "epoch 5/20" not in res.output


def test_a_kill_while_writing_the_run_never_leaves_a_truncated_model_pt(corpus, tmp_path, monkeypatch):
    """model.pt is written first and atomically: killed during its write, the run has no model.pt
    (mer evaluate says so, no crash); killed right after it, mer evaluate works."""
    import torch

    from mer.train import outputs, run
    from mer.train.errors import DataError

    path, _ = corpus
    config = load_config(path, ["train.model=concat", "train.epochs=3"])

    class Killed(Exception):
        pass

    def torch_save_dies_halfway(obj, file):
        with open(file, "wb") as f:
            f.write(b"PK\x03\x04 half a checkpoint")
        raise Killed()

    monkeypatch.setattr(outputs.torch, "save", torch_save_dies_halfway)
    with pytest.raises(Killed):
        train_experiment(config, tmp_path / "during", **QUIET)
    monkeypatch.undo()
    assert not (tmp_path / "during" / "model.pt").exists() and not (tmp_path / "during" / "metrics.json").exists()
    with pytest.raises(DataError, match="no model.pt"):
        evaluate_run(tmp_path / "during")

    real_write_json = run.write_json

    def dies_at_metrics(obj, file):
        if file.name == "metrics.json":
            raise Killed()
        real_write_json(obj, file)

    monkeypatch.setattr(run, "write_json", dies_at_metrics)
    with pytest.raises(Killed):
        train_experiment(config, tmp_path / "after", **QUIET)
    monkeypatch.undo()
    assert torch.load(tmp_path / "after" / "model.pt", weights_only=True)["model"] == "concat"
    assert evaluate_run(tmp_path / "after")["n"] > 0
