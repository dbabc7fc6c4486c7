"""The CUDA code paths of the HF encoders: SDPA attention, pinned host buffers, bf16 autocast.

On CPU: the attention implementation the encoders load is SDPA and gives the features eager
attention gives; host buffers are plain tensors there. With CUDA (skipped otherwise): a bf16
autocast run on the GPU gives the features of an fp32 run of the same model on the CPU,
within bf16 tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mer.features.device import host_tensor, worker_device
from mer.features.hf_audio import ENCODER as AudioEncoder, Options as AudioOptions
from mer.features.hf_common import load_pretrained, sdpa_request
from mer.features.hf_text import ENCODER as TextEncoder, Options as TextOptions
from kit.models import SAMPLING_RATE, build_bert, tiny_wav2vec2

CPU = torch.device("cpu")
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
WORDS = "i am so happy today why is she angry the cat sat on a mat calm night was not good".split()
TEXTS = ["i am so happy today", "why", "the cat sat on a mat and was not good", "she is angry",
         "calm night", "today the cat was so calm and happy"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hf")
    return {"audio": tiny_wav2vec2(root / "w2v"), "text": build_bert(root / "bert", WORDS)}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[dict]:
    """Six 16 kHz clips of 0.21-0.66 s (all different lengths: batches pad)."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(1)
    rows = []
    for i, seconds in enumerate([0.21, 0.3, 0.38, 0.47, 0.55, 0.66]):
        path = folder / f"c{i}.flac"
        sf.write(path, (0.2 * rng.standard_normal(int(seconds * SAMPLING_RATE))).astype(np.float32), SAMPLING_RATE,
                 subtype="PCM_16")
        rows.append({"id": f"c{i}", "audio": str(path)})
    return rows


def audio_features(path: Path, rows: list[dict], device: torch.device, **options) -> np.ndarray:
    encoder = AudioEncoder(AudioOptions(model=str(path), max_batch=8, **options))
    encoder.load(device)
    return np.stack([out["pooled"] for out in encoder.encode([encoder.prepare(r) for r in rows])])


def text_features(path: Path, device: torch.device, **options) -> np.ndarray:
    encoder = TextEncoder(TextOptions(model=str(path), **options))
    encoder.load(device)
    return np.stack([out["pooled"] for out in encoder.encode(TEXTS)])


def test_encoders_load_sdpa_attention(models):
    for encoder in (AudioEncoder(AudioOptions(model=str(models["audio"]))),
                    TextEncoder(TextOptions(model=str(models["text"])))):
        encoder.load(CPU)
        assert encoder._model.config._attn_implementation == "sdpa"


def test_sdpa_request_follows_the_model_class():
    from transformers import AutoModel, BertConfig, BertModel

    assert sdpa_request(AutoModel, {"config": BertConfig()}) == {"attn_implementation": "sdpa"}
    assert sdpa_request(BertModel, {}) == {"attn_implementation": "sdpa"}
    assert sdpa_request(AutoModel, {"attn_implementation": "eager", "config": BertConfig()}) == {}

    class NoSdpa:
        _supports_sdpa = False

    assert sdpa_request(NoSdpa, {}) == {}
    # an Auto loader without a config: the class is unknown, transformers' default stays
    assert sdpa_request(AutoModel, {}) == {}


@pytest.mark.parametrize("kind", ["audio", "text"])
def test_sdpa_gives_the_outputs_of_eager_attention(models, kind):
    """A padded, masked batch through the same weights, SDPA vs eager attention."""
    from transformers import AutoConfig, AutoModel

    path = str(models[kind])
    config = AutoConfig.from_pretrained(path)
    sdpa = load_pretrained(AutoModel, path, "", config=config).eval()
    eager = load_pretrained(AutoModel, path, "", config=AutoConfig.from_pretrained(path),
                            attn_implementation="eager").eval()
    assert (sdpa.config._attn_implementation, eager.config._attn_implementation) == ("sdpa", "eager")
    gen = torch.Generator().manual_seed(0)
    if kind == "audio":
        inputs = {"input_values": torch.randn(3, 4000, generator=gen),
                  "attention_mask": (torch.arange(4000)[None] < torch.tensor([[4000], [2500], [1200]])).long()}
    else:
        inputs = {"input_ids": torch.randint(5, 40, (3, 9), generator=gen),
                  "attention_mask": (torch.arange(9)[None] < torch.tensor([[9], [5], [2]])).long()}
    with torch.no_grad():
        a, b = sdpa(**inputs).last_hidden_state, eager(**inputs).last_hidden_state
    frames = sdpa._get_feat_extract_output_lengths(inputs["attention_mask"].sum(1)) if kind == "audio" \
        else inputs["attention_mask"].sum(1)
    for row, n in enumerate(frames.tolist()):  # valid positions only (padding is free to differ)
        torch.testing.assert_close(a[row, :n], b[row, :n], atol=1e-5, rtol=1e-5)


def test_host_tensor_on_cpu_is_a_plain_filled_tensor():
    t = host_tensor((2, 3), 0.5, torch.float32, CPU)
    assert not t.is_pinned() and t.dtype == torch.float32 and torch.equal(t, torch.full((2, 3), 0.5))
    m = host_tensor((4,), 0, torch.long, None)
    assert m.dtype == torch.long and not m.any()


def test_worker_device_spreads_workers_over_the_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    cuda = torch.device("cuda")
    assert [worker_device(cuda, w) for w in (0, 1, 2, 3)] == [torch.device("cuda", k) for k in (0, 1, 0, 1)]
    assert worker_device(cuda, None) == cuda  # not a worker: the current device
    assert worker_device(torch.device("cuda", 1), 0) == torch.device("cuda", 1)  # an explicit index wins
    assert worker_device(CPU, 3) == CPU


@CUDA
def test_host_tensor_on_cuda_is_pinned():
    assert host_tensor((2, 3), 0.0, torch.float32, torch.device("cuda")).is_pinned()


def assert_bf16_close(gpu: np.ndarray, cpu: np.ndarray) -> None:
    """bf16 keeps 8 bits of mantissa: ~0.4 % per rounding; pooled vectors stay far closer in
    direction than any two different inputs' vectors."""
    cos = (gpu * cpu).sum(1) / (np.linalg.norm(gpu, axis=1) * np.linalg.norm(cpu, axis=1))
    assert cos.min() > 0.999, cos
    assert np.abs(gpu - cpu).max() <= 0.05 * np.abs(cpu).max()


@CUDA
def test_cuda_bf16_audio_features_equal_cpu_fp32(models, clips):
    cpu = audio_features(models["audio"], clips, CPU)
    gpu = audio_features(models["audio"], clips, torch.device("cuda"), autocast="bf16")
    assert_bf16_close(gpu, cpu)
    # and fp32 on CUDA (no autocast) matches to float error
    np.testing.assert_allclose(audio_features(models["audio"], clips, torch.device("cuda")), cpu, atol=2e-3, rtol=1e-3)


@CUDA
def test_cuda_bf16_text_features_equal_cpu_fp32(models):
    cpu = text_features(models["text"], CPU)
    gpu = text_features(models["text"], torch.device("cuda"), autocast="bf16")
    assert_bf16_close(gpu, cpu)
    np.testing.assert_allclose(text_features(models["text"], torch.device("cuda")), cpu, atol=2e-3, rtol=1e-3)
