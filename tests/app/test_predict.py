"""``mer predict`` and ``mer.load_run``: a trained run scores new inputs exactly as training scored them.

Runs are trained on real caches (the kit's synthetic corpus through the real extraction path,
and a small generated demo corpus with real WAVs, a tiny random BERT and openSMILE); the
predictions of the same samples must equal the run's own predictions.csv rows.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from kit.paths import REPO
from kit.train_corpus import extract_all, make_corpus
from mer.cli import cli
from mer.config import load_config
from mer.experiment import train_experiment
from mer.predict import load_run
from mer.train.data import ModalitySource, read_modality

QUIET = {"progress": False, "log": lambda line: None}

pytestmark = pytest.mark.usefixtures("one_thread")


def probs_of(table: pd.DataFrame) -> pd.DataFrame:
    return table.set_index("id").filter(like="prob_")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    path, table = make_corpus(root, n=72, dims={"text": 6, "audio": 5}, missing={"audio": [4, 9]}, unlabeled=[7])
    extract_all(path)
    return root, path, table


def train(path, run_dir, *overrides):
    config = load_config(path, ["train.epochs=6", *overrides])
    folder, _, _ = train_experiment(config, run_dir, **QUIET)
    return folder


MODELS = {
    "unimodal": ["train.model=unimodal", "train.modalities=[audio]"],
    "concat": ["train.model=concat"],
    "late": ["train.model=late"],
    "linear": ["train.model=linear"],
    "lmr": ["train.model=lmr"],
    "mpuc": ["train.model=mpuc", "train.mpuc.dim=16", "train.mpuc.pretrain_epochs=2", "train.mpuc.select=none"],
}


@pytest.mark.parametrize("model", list(MODELS))
def test_predict_manifest_equals_the_runs_predictions(synth, tmp_path, model):
    root, path, _ = synth
    run_dir = train(path, tmp_path / "run", *MODELS[model])
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(cli, ["predict", str(run_dir), str(root / "corpus.csv"), "--out", str(out),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out, keep_default_na=False)
    want = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False)
    assert list(got["id"]) == list(pd.read_csv(root / "corpus.csv")["id"])  # the user's ids, the user's order
    np.testing.assert_allclose(probs_of(got).loc[want["id"]].to_numpy(), probs_of(want).to_numpy(), atol=1e-6)
    assert (got.set_index("id").loc[want["id"], "prediction"].to_numpy() == want["prediction"].to_numpy()).all()
    # the missing-modality path, and the output says which modalities were used
    used = got.set_index("id")["modalities"]
    if model != "unimodal":
        assert used["u0004"] == "text" and used["u0000"] == "text;audio"
    else:
        assert used["u0004"] == "" and used["u0000"] == "audio"
    # a second call extracts nothing
    run = load_run(run_dir)
    again = run.predict_detailed(root / "corpus.csv")
    assert again.samples_extracted == 0
    assert not any(r.loaded for r in again.report.modalities.values())
    np.testing.assert_allclose(probs_of(again.table).to_numpy(), probs_of(got).to_numpy(), atol=0)


def test_multilabel_run(tmp_path):
    path, _ = make_corpus(tmp_path / "c", n=64, multilabel=True, classes=("ang", "hap", "sad"))
    extract_all(path)
    run_dir = train(path, tmp_path / "run", "train.model=concat")
    table = load_run(run_dir).predict(tmp_path / "c" / "corpus.csv")
    want = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False)
    np.testing.assert_allclose(probs_of(table).loc[want["id"]].to_numpy(), probs_of(want).to_numpy(), atol=1e-6)
    assert list(table.set_index("id").loc[want["id"], "prediction"]) == list(want["prediction"])
    # top = the most probable class even when none passes 0.5
    row = table.iloc[0]
    assert row["top"] == max(("ang", "hap", "sad"), key=lambda c: row[f"prob_{c}"])


def test_predict_features_equals_predict(synth, tmp_path):
    root, path, _ = synth
    run_dir = train(path, tmp_path / "run", "train.model=late")
    run = load_run(run_dir)
    table = run.predict(root / "corpus.csv")
    ckpt = run.checkpoint
    cache = load_config(path).layout
    ids = list(table["id"])
    feats, present = {}, {}
    for m in run.modalities:
        src = ModalitySource(m, ckpt["families"][m], ckpt["cache_keys"][m], cache.encoder_dir(m, ckpt["cache_keys"][m]))
        raw = read_modality(src, ids, ckpt["outputs"][m], False)
        feats[m], present[m] = raw.x, raw.present
    direct = run.predict_features(feats, present, ids=ids)
    np.testing.assert_allclose(probs_of(direct).to_numpy(), probs_of(table).to_numpy(), atol=1e-6)
    assert list(direct["modalities"]) == list(table["modalities"])
    # NaN rows and None are absent, like a missing cache row; one row at a time = batched
    feats["audio"] = feats["audio"].copy()
    feats["audio"][0] = np.nan
    nan_row = run.predict_features(feats, ids=ids)
    assert nan_row["modalities"].iloc[0] == "text"
    one = run.predict_features({"text": feats["text"][:1], "audio": None})
    assert one["modalities"].iloc[0] == "text"
    np.testing.assert_allclose(probs_of(one).to_numpy()[0], probs_of(nan_row).to_numpy()[0], atol=1e-6)
    with pytest.raises(Exception, match="trained on"):
        run.predict_features({"text": feats["text"][:, :3], "audio": None})


def test_overrides_must_keep_the_key(synth, tmp_path):
    root, path, _ = synth
    run_dir = train(path, tmp_path / "run", "train.model=concat")
    runner = CliRunner()
    changed = runner.invoke(cli, ["predict", str(run_dir), str(root / "corpus.csv"), "--set", "features.text.dim=7"])
    assert changed.exit_code == 2
    assert "modality 'text'" in changed.output and "the run was trained on" in changed.output
    training = runner.invoke(cli, ["predict", str(run_dir), str(root / "corpus.csv"), "--set", "train.lr=1"])
    assert training.exit_code == 2 and "only features.* and extract.*" in training.output
    same = runner.invoke(cli, ["predict", str(run_dir), str(root / "corpus.csv"), "--set", "extract.io_threads=2"])
    assert same.exit_code == 0, same.output


def test_finetune_runs_are_refused(tmp_path):
    (tmp_path / "run").mkdir()
    torch.save({"kind": "finetune", "config": {"train": {}}}, tmp_path / "run" / "model.pt")
    result = CliRunner().invoke(cli, ["predict", str(tmp_path / "run"), "--text", "hi"])
    assert result.exit_code == 2 and "finetune run" in result.output


def test_load_run_is_a_lazy_attribute():
    code = ("import sys, mer.features.base, mer.pipeline.manifest; "
            "assert 'mer.predict' not in sys.modules and 'mer.train.evaluate' not in sys.modules; "
            "import mer; from mer.predict import load_run; assert mer.load_run is load_run; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "ok", out.stderr


# --------------------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A 40-utterance demo corpus: real WAVs (eGeMAPS) and transcripts (a tiny random BERT)."""
    pytest.importorskip("opensmile")
    from mer.demo import build_small_text_model
    from mer.pipeline.demo_corpus import generate

    root = tmp_path_factory.mktemp("demo")
    generate(root / "corpus", size=40, progress=False)
    model = build_small_text_model(root / "bert")
    overrides = [f"dataset.root={root / 'corpus'}", f"cache.root={root / 'cache'}", f"features.text.model={model}",
                 "train.model=concat", "train.modalities=[text,audio]", "train.epochs=5", "train.device=cpu",
                 "extract.device=cpu", "train.plots=false"]
    config = load_config(REPO / "configs" / "demo.yaml", overrides)
    extract_all(REPO / "configs" / "demo.yaml", ["text", "audio"], overrides)
    folder, _, _ = train_experiment(config, root / "run", **QUIET)
    corpus = pd.read_csv(root / "corpus" / "corpus.csv", keep_default_na=False)
    return root, folder, corpus


def test_demo_wavs_with_text_equal_predictions_csv(demo, tmp_path):
    root, run_dir, corpus = demo
    rows = corpus[corpus["split"] == "test"].head(3)
    wavs = [str(root / "corpus" / p) for p in rows["audio"]]
    args = ["predict", str(run_dir), *wavs]
    for t in rows["text"]:
        args += ["--text", t]
    out = tmp_path / "p.json"
    first = CliRunner().invoke(cli, args + ["--out", str(out), "--no-progress"])
    assert first.exit_code == 0, first.output
    got = pd.DataFrame(json.loads(out.read_text())["rows"])
    assert list(got["id"]) == list(rows["id"])
    want = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False).set_index("id").loc[list(rows["id"])]
    np.testing.assert_allclose(probs_of(got).to_numpy(), want.filter(like="prob_").to_numpy(), atol=1e-6)
    assert set(got["modalities"]) == {"text;audio"}
    run = load_run(run_dir)
    second = run.predict_detailed(wavs, texts=list(rows["text"]))
    assert second.samples_extracted == 0  # content-addressed: nothing extracted again
    # a renamed copy is the same content: nothing extracted either, and the same probabilities
    copy = tmp_path / "renamed.wav"
    shutil.copy(wavs[0], copy)
    renamed = run.predict_detailed([copy], texts=[rows["text"].iloc[0]])
    assert renamed.samples_extracted == 0 and renamed.table["id"].iloc[0] == "renamed"
    np.testing.assert_allclose(probs_of(renamed.table).to_numpy()[0], probs_of(got).to_numpy()[0], atol=0)


def test_bad_file_is_a_per_sample_failure(demo, tmp_path):
    root, run_dir, corpus = demo
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEnot audio at all")
    good = str(root / "corpus" / corpus["audio"].iloc[0])
    result = CliRunner().invoke(cli, ["predict", str(run_dir), good, str(bad), "--text", "hello there",
                                      "--text", "what a day", "--out", str(tmp_path / "p.csv"), "--no-progress"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "p.csv", keep_default_na=False).set_index("id")
    assert table.loc["broken", "modalities"] == "text" and table.loc["broken", "missing"] == "audio"
    assert table.loc["broken", "failures"].startswith("audio: ")
    assert table.loc[corpus["id"].iloc[0], "failures"] == ""
    assert "1 sample(s) had failures" in result.output


def test_text_only_and_one_multimodal_sample(demo, tmp_path):
    root, run_dir, corpus = demo
    run = load_run(run_dir)
    table = run.predict(texts=["I am so happy today"])
    assert list(table["modalities"]) == ["text"] and list(table["missing"]) == ["audio"]
    wav = root / "corpus" / corpus["audio"].iloc[0]
    both = run.predict(audio=wav, texts=[corpus["text"].iloc[0]])
    assert list(both["modalities"]) == ["text;audio"] and both["id"].iloc[0] == corpus["id"].iloc[0]
    with pytest.raises(Exception, match="one transcript per file"):
        run.predict([wav, wav], texts=["a"])


def test_an_encoder_that_cannot_be_loaded_is_named(demo, tmp_path):
    root, run_dir, corpus = demo
    moved = tmp_path / "bert-elsewhere"
    shutil.copytree(root / "bert", moved)
    shutil.rmtree(root / "bert")
    try:
        result = CliRunner().invoke(cli, ["predict", str(run_dir), "--text", "hello"])
        assert result.exit_code == 2
        assert "modality 'text'" in result.output and str(root / "bert") in result.output
        assert "--set features.text.model=PATH" in result.output
        # a path to the same files is still another spec: another key, refused rather than mixing features
        other = CliRunner().invoke(cli, ["predict", str(run_dir), "--text", "hello", "--set",
                                         f"features.text.model={moved}"])
        assert other.exit_code == 2 and "the run was trained on" in other.output
    finally:
        shutil.copytree(moved, root / "bert")
    back = CliRunner().invoke(cli, ["predict", str(run_dir), "--text", "hello"])
    assert back.exit_code == 0, back.output


def test_sequence_mpuc_run(tmp_path):
    """mpuc over frame sequences: files and predict_features (lists of (T, D) arrays) agree with predictions.csv."""
    path, table = make_corpus(tmp_path / "c", n=60, dims={"text": 6, "seq": 4}, missing={"seq": [3]})
    extract_all(path, overrides=["features.seq.ragged=true"])
    run_dir = train(path, tmp_path / "run", "features.seq.ragged=true", "train.model=mpuc", "train.mpuc.dim=16",
                    "train.mpuc.pretrain_epochs=2", "train.mpuc.select=none", "train.mpuc.crop_seconds=0.1",
                    "train.mpuc.frame_rates={seq: 10}", "train.mpuc.transformer_dim=8",
                    "train.mpuc.transformer_layers=1")
    run = load_run(run_dir)
    assert run.sequences and run.checkpoint["init_kwargs"]["encoders"]["seq"] == "transformer"
    got = run.predict(tmp_path / "c" / "corpus.csv")
    want = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False)
    np.testing.assert_allclose(probs_of(got).loc[want["id"]].to_numpy(), probs_of(want).to_numpy(), atol=1e-6)
    frames = [None if v == "" else np.array([float(x) for x in v.split(";")]).reshape(-1, 4) for v in table["feat_seq"]]
    text = np.stack([np.array([float(x) for x in v.split(";")]) for v in table["feat_text"]])
    direct = run.predict_features({"text": text, "seq": frames}, ids=list(table["id"]))
    np.testing.assert_allclose(probs_of(direct).loc[want["id"]].to_numpy(), probs_of(want).to_numpy(), atol=1e-5)
    assert direct.set_index("id").loc["u0003", "modalities"] == "text"
