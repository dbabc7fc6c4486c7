"""``mer export --format onnx``: onnxruntime on the cached features = PyTorch's predictions (1e-5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from kit.train_corpus import extract_all, make_corpus
from mer import __version__
from mer.cli import cli
from mer.config import load_config
from mer.experiment import train_experiment
from mer.train.data import ModalitySource, read_modality
from mer.train.evaluate import load_checkpoint
from mer.train.export import ExportError, check_exportable, read_metadata

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

pytestmark = pytest.mark.usefixtures("one_thread")

MODELS = {
    "unimodal": ["train.model=unimodal", "train.modalities=[audio]"],
    "concat": ["train.model=concat"],
    "late": ["train.model=late"],
    "linear": ["train.model=linear"],
    "lmr": ["train.model=lmr"],
    "mpuc": ["train.model=mpuc", "train.mpuc.dim=16", "train.mpuc.pretrain_epochs=2", "train.mpuc.select=none"],
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Text vectors and an all-layer (3, 5) audio cache, audio missing for two samples."""
    root = tmp_path_factory.mktemp("onnx")
    path, _ = make_corpus(root, n=72, dims={"text": 6, "audio": 5}, layers={"audio": 3}, missing={"audio": [4, 9]})
    extract_all(path)
    return root, path


def cached_inputs(run_dir, config_path) -> tuple[list[str], dict[str, np.ndarray]]:
    """The run's manifest ids and, per modality, the raw cached features and presence, as the graph takes them."""
    ckpt = load_checkpoint(run_dir)
    layout = load_config(config_path).layout
    ids = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False)["id"].tolist()
    feeds = {}
    for m in ckpt["modalities"]:
        src = ModalitySource(m, ckpt["families"][m], ckpt["cache_keys"][m], layout.encoder_dir(m, ckpt["cache_keys"][m]))
        raw = read_modality(src, ids, ckpt["outputs"][m], False)
        x = raw.x.astype(np.float32)
        x[~raw.present] = np.nan  # an absent row's content must not matter
        feeds[f"x_{m}"], feeds[f"present_{m}"] = x, raw.present.astype(bool)
    return ids, feeds


@pytest.mark.parametrize("model", list(MODELS))
def test_onnx_matches_pytorch(corpus, tmp_path, model):
    root, path = corpus
    layer = "weighted" if model in ("concat", "lmr") else "last"
    config = load_config(path, ["train.epochs=5", f"train.layer={layer}", *MODELS[model]])
    run_dir, _, _ = train_experiment(config, tmp_path / "run", progress=False, log=lambda line: None)
    out = tmp_path / "head.onnx"
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ids, feeds = cached_inputs(run_dir, path)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(feeds)
    got = session.run(["probabilities"], feeds)[0]
    want = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False).filter(like="prob_").to_numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the batch axis is dynamic: one row at a time gives the same
    single = np.concatenate([session.run(["probabilities"], {k: v[i:i + 1] for k, v in feeds.items()})[0]
                             for i in (0, 4, 9)])
    np.testing.assert_allclose(single, want[[0, 4, 9]], atol=1e-5)
    meta = read_metadata(out)
    ckpt = load_checkpoint(run_dir)
    assert meta["labels"] == ckpt["classes"] and meta["encoder_keys"] == ckpt["cache_keys"]
    assert meta["mer_version"] == __version__ and meta["model"] == model
    dims = {s["name"]: s["dims"] for s in meta["inputs"]}
    if "audio" in ckpt["modalities"]:
        assert dims["x_audio"] == ["batch", 3, 5] and dims["present_audio"] == ["batch"]


def test_sequence_models_and_finetune_runs_are_refused(tmp_path):
    ragged = {"model": "mpuc", "init_kwargs": {"inputs": [{"name": "mel", "ragged": True}, {"name": "text"}]}}
    with pytest.raises(ExportError, match="frame sequences of modality"):
        check_exportable(ragged, "run/model.pt")
    with pytest.raises(ExportError, match="finetune"):
        check_exportable({"kind": "finetune"}, "run/model.pt")
    (tmp_path / "run").mkdir()
    torch.save({"kind": "finetune"}, tmp_path / "run" / "model.pt")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "run")])
    assert result.exit_code == 2 and "finetune" in result.output
