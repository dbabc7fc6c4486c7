"""Model loading that runs no foreign code (issue 15, items 9 and 11): a pickled checkpoint
holding code is refused with one message naming the file; ``pkg:<package>/<folder>`` finds
the folder without importing (running) the package."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from kit.toy_corpus import write_manifest

from mer.features.base import EncoderUnavailable
from mer.features.hf_common import resolve_model


def tiny_bert(folder: Path) -> Path:
    """A random 1-layer BERT with a WordPiece vocabulary, saved as a pickled checkpoint (.bin)."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizer(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=32)
    model = BertModel(config)
    model.save_pretrained(folder)
    for weights in folder.glob("*.safetensors"):  # the legacy pickled form instead
        weights.unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


class _Payload:
    """Unpickling this runs ``touch <marker>``: what a malicious checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pickle_is_refused_naming_the_file(tmp_path):
    from mer.cli import cli

    folder = tiny_bert(tmp_path / "model")
    marker = tmp_path / "pwned"
    torch.save({"weight": _Payload(marker)}, folder / "pytorch_model.bin")
    from mer.features.hf_text import ENCODER, Options

    with pytest.raises(EncoderUnavailable) as info:
        ENCODER(Options(model=str(folder))).load(torch.device("cpu"))
    message = str(info.value)
    assert message.startswith(f"{folder / 'pytorch_model.bin'}: refused to load")
    assert "touch" not in message and "posix" not in message and "system" not in message  # not the file's content
    assert not marker.exists()
    # through mer extract: one line, exit 2, no traceback
    csv = write_manifest(tmp_path / "m.csv", [{"id": "a", "text": "hello world"}])
    config = {"dataset": {"name": "generic", "manifest": str(csv), "corpus": "t"},
              "cache": {"root": str(tmp_path / "cache")}, "extract": {"device": "cpu"},
              "features": {"text": {"encoder": "hf-text", "model": str(folder)}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(cli, ["extract", "-c", str(tmp_path / "c.yaml"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert f"error: {folder / 'pytorch_model.bin'}: refused to load" in result.output
    assert "Traceback" not in result.output and not marker.exists()


def test_a_clean_pickled_checkpoint_still_loads(tmp_path):
    from mer.features.hf_text import ENCODER, Options

    encoder = ENCODER(Options(model=str(tiny_bert(tmp_path / "model"))))
    encoder.load(torch.device("cpu"))
    (out,) = encoder.encode([encoder.prepare({"id": "a", "text": "hello world"})])
    assert out["pooled"].shape == (16,)


@pytest.fixture()
def package(tmp_path, monkeypatch):
    """An installed package whose import would leave a marker file."""
    root = tmp_path / "site"
    pkg = root / "merprobe_pkg"
    (pkg / "model").mkdir(parents=True)
    (pkg / "sub" / "weights").mkdir(parents=True)
    marker = tmp_path / "imported"
    code = f"open({str(marker)!r}, 'w').close()\n"
    (pkg / "__init__.py").write_text(code)
    (pkg / "sub" / "__init__.py").write_text(code)
    (root / "merprobe_mod.py").write_text(code)
    monkeypatch.syspath_prepend(str(root))
    return pkg, marker


def test_pkg_names_a_folder_without_importing_the_package(package):
    pkg, marker = package
    assert resolve_model("pkg:merprobe_pkg/model") == str((pkg / "model").resolve())
    assert resolve_model("pkg:merprobe_pkg/sub/weights") == str((pkg / "sub" / "weights").resolve())
    with pytest.raises(ValueError, match="not a top-level Python package name"):
        resolve_model("pkg:merprobe_pkg.sub/weights")  # find_spec would import merprobe_pkg
    with pytest.raises(ValueError, match="points outside package"):
        resolve_model("pkg:merprobe_pkg/../../etc")
    with pytest.raises(ValueError, match="single-file module"):
        resolve_model("pkg:merprobe_mod/x")
    with pytest.raises(ValueError, match="is not installed"):
        resolve_model("pkg:merprobe_absent/x")
    with pytest.raises(ValueError, match="is not a folder inside"):
        resolve_model("pkg:merprobe_pkg/nothing")
    assert not marker.exists()
