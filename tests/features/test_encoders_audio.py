"""audio_io (soundfile + soxr) and hf-audio on tiny random Wav2Vec2 models saved with
save_pretrained and loaded through the encoder's real from_pretrained path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch

from mer.features import environment
from mer.features.audio_io import audio_samples, audio_seconds, load_audio, resampled_length
from mer.features.base import SampleError
from mer.features.batching import make_batches
from mer.features.hf_audio import ENCODER, Options, PreparedClip, normalise, window_bounds
from kit.paths import SHARED_DATA
from kit.corpora import write_tone_clips

CPU = torch.device("cpu")
SR = 16000
RAVDESS = SHARED_DATA / "ravdess-speech-subset"


# --- audio_io ---------------------------------------------------------------------------
def test_stereo_flac_44k_to_mono_16k(tmp_path):
    rng = np.random.default_rng(0)
    stereo = (0.2 * rng.standard_normal((44100 + 123, 2))).astype(np.float32)
    path = tmp_path / "a.flac"
    sf.write(path, stereo, 44100, subtype="PCM_24")
    decoded = sf.read(path, dtype="float32")[0]  # what the file holds (24-bit quantised)
    out = load_audio(path, SR)
    assert out.dtype == np.float32 and out.ndim == 1
    assert len(out) == round((44100 + 123) * SR / 44100) == audio_samples(path, SR)
    expected = soxr.resample(decoded.mean(axis=1), 44100, SR, quality="HQ")
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # the mean of channels, not the first channel
    assert not np.allclose(out, soxr.resample(np.ascontiguousarray(decoded[:, 0]), 44100, SR, quality="HQ"), atol=1e-3)
    assert audio_seconds(path) == pytest.approx((44100 + 123) / 44100)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_start_end_read_exact_frames(tmp_path, fmt):
    values = (np.arange(SR * 2) % 1000 - 500).astype(np.int16)
    path = tmp_path / f"ramp.{fmt}"
    sf.write(path, values, SR, subtype="PCM_16")
    out = load_audio(path, SR, start=0.25, end=0.5)
    np.testing.assert_array_equal(out, values[4000:8000].astype(np.float32) / 32768)
    np.testing.assert_array_equal(load_audio(path, SR, start=float("nan"), end=1.0), values[:SR].astype(np.float32) / 32768)
    np.testing.assert_array_equal(load_audio(path, SR, start=1.5, end=float("nan")), values[24000:].astype(np.float32) / 32768)
    assert audio_samples(path, SR, 0.25, 0.5) == 4000 and audio_seconds(path, 0.25, 0.5) == pytest.approx(0.25)


def test_resampled_length_matches_soxr():
    for n in [1, 2, 3, 7, 100, 999, 12345, 44101, 144017]:
        for sr, target in [(44100, 16000), (48000, 16000), (22050, 16000), (32000, 16000), (8000, 16000), (16000, 16000)]:
            x = np.zeros(n, np.float32)
            got = len(soxr.resample(x, sr, target, quality="HQ")) if sr != target else n
            assert resampled_length(n, sr, target) == got, (n, sr, target)


def test_audio_errors_are_sample_errors(tmp_path):
    with pytest.raises(SampleError) as info:
        load_audio(tmp_path / "missing.wav", SR)
    assert info.value.stage == "read" and "missing.wav" in info.value.message and "not found" in info.value.message

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR)
    with pytest.raises(SampleError, match="zero-length") as info:
        load_audio(empty, SR)
    assert info.value.stage == "decode" and "empty.wav" in info.value.message

    good = tmp_path / "good.wav"
    sf.write(good, np.zeros(SR, np.float32), SR)
    header = tmp_path / "header.wav"
    header.write_bytes(good.read_bytes()[:20])
    with pytest.raises(SampleError, match="header.wav: cannot read audio header") as info:
        load_audio(header, SR)
    assert info.value.stage == "decode"

    flac = tmp_path / "cut.flac"
    sf.write(flac, (0.1 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32), SR)
    flac.write_bytes(flac.read_bytes()[: flac.stat().st_size // 2])
    with pytest.raises(SampleError, match="cut.flac") as info:
        load_audio(flac, SR)
    assert info.value.stage == "decode"

    nan = tmp_path / "nan.wav"
    x = np.zeros(SR, np.float32)
    x[100], x[200] = np.nan, np.inf
    sf.write(nan, x, SR, subtype="FLOAT")
    with pytest.raises(SampleError, match=r"nan.wav: 2 NaN/inf sample") as info:
        load_audio(nan, SR)
    assert info.value.stage == "decode"

    with pytest.raises(SampleError, match="past the end of the file") as info:
        load_audio(good, SR, start=0.5, end=1.5)
    assert info.value.stage == "read"
    with pytest.raises(SampleError, match="at or past the end"):
        load_audio(good, SR, start=1.0)
    assert len(load_audio(good, SR, start=0.5, end=1.02)) == SR // 2  # rounding tolerance: clamped, not an error


def write_m4a(path: Path, x: np.ndarray, sr: int) -> Path:
    """A mono AAC track in an MP4 container (what MELD's .mp4 clips hold), via PyAV."""
    import av

    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=sr, layout="mono")
        for i in range(0, len(x), 1024):
            chunk = np.zeros((1, 1024), np.float32)
            chunk[0, : len(x[i:i + 1024])] = x[i:i + 1024]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = sr, i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_video_containers_route_to_pyav(tmp_path):
    pytest.importorskip("av")
    from mer.features.av_audio import decode_av

    t = np.arange(2 * 48000) / 48000
    path = write_m4a(tmp_path / "dia0_utt0.mp4", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 48000)
    out = load_audio(path, SR, 0.5, 1.5)
    np.testing.assert_array_equal(out, decode_av(path, SR, 0.5, 1.5))
    assert len(out) == SR and audio_samples(path, SR, 0.5, 1.5) == SR
    assert audio_seconds(path) == pytest.approx(2.0, abs=0.03)
    with pytest.raises(SampleError, match="not found"):
        audio_seconds(tmp_path / "none.mp4")


@pytest.mark.realdata
@pytest.mark.skipif(not RAVDESS.is_dir(), reason="../shared/data/ravdess-speech-subset not present")
def test_real_ravdess_flac_48k_to_16k():
    path = sorted(RAVDESS.glob("Actor_01/*.flac"))[0]
    info = sf.info(path)
    assert info.samplerate == 48000
    out = load_audio(path, SR)
    assert len(out) == round(info.frames / 3) == audio_samples(path, SR)
    assert np.isfinite(out).all() and 0.001 < np.abs(out).max() <= 1.0
    part = load_audio(path, SR, start=1.0, end=2.0)
    assert len(part) == SR


# --- tiny Wav2Vec2 models -------------------------------------------------------------
def build_wav2vec2(folder: Path, norm: str, seed: int = 0) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                            conv_dim=(16, 16, 16), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                            feat_extract_norm=norm, do_stable_layer_norm=(norm == "layer"))
    Wav2Vec2Model(config).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=SR, do_normalize=True, return_attention_mask=(norm == "layer")).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def layer_dir(tmp_path_factory) -> Path:
    return build_wav2vec2(tmp_path_factory.mktemp("w2v") / "layer", "layer")


@pytest.fixture(scope="module")
def group_dir(tmp_path_factory) -> Path:
    return build_wav2vec2(tmp_path_factory.mktemp("w2v") / "group", "group")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[dict]:
    """Rows of WAV clips: lengths 0.30, 0.45, 0.45, 0.62, 0.62, 0.80 s (two equal pairs)."""
    return write_tone_clips(tmp_path_factory.mktemp("clips"), [0.30, 0.45, 0.45, 0.62, 0.62, 0.80], seed=0, sr=SR)


def make(path: Path, **kw) -> ENCODER:
    encoder = ENCODER(Options(model=str(path), **kw))
    encoder.load(CPU)
    return encoder


def pipeline(encoder, rows):
    """What the orchestrator does: cost -> make_batches(policy) -> prepare -> encode per batch."""
    costs = {r["id"]: encoder.cost(r) for r in rows}
    by_id = {r["id"]: r for r in rows}
    batches = make_batches(costs, encoder.batch_policy())
    out = {}
    for batch in batches:
        for sample_id, result in zip(batch, encoder.encode([encoder.prepare(by_id[i]) for i in batch])):
            out[sample_id] = result
    return out, batches


def one_at_a_time(encoder, rows):
    return {r["id"]: encoder.encode([encoder.prepare(r)])[0] for r in rows}


def test_normalisation_equals_the_hf_processor(layer_dir, clips):
    from transformers import AutoFeatureExtractor

    fe = AutoFeatureExtractor.from_pretrained(layer_dir)
    signals = [load_audio(r["audio"], SR) * (1 + i) + 0.01 * i for i, r in enumerate(clips[:3])]
    for x in signals:
        ref = fe(x, sampling_rate=SR, return_tensors="np").input_values[0]
        np.testing.assert_allclose(normalise(x), ref, atol=2e-6)
    # batched processor: per-clip statistics over the valid part, zero padding
    ref = fe(signals, sampling_rate=SR, padding=True, return_tensors="np")
    for i, x in enumerate(signals):
        np.testing.assert_allclose(ref.input_values[i, : len(x)], normalise(x), atol=2e-6)
        assert not ref.input_values[i, len(x):].any()


def test_layer_norm_batched_equals_one_at_a_time(layer_dir, clips):
    encoder = make(layer_dir, max_batch=8)  # forced batching on CPU
    assert encoder.uses_attention_mask and not encoder.padding_sensitive
    policy = encoder.batch_policy()
    assert policy.max_items == 8 and not policy.equal_cost_only
    batched = encoder.encode([encoder.prepare(r) for r in clips])  # six lengths padded in one batch
    single = one_at_a_time(encoder, clips)
    for r, b in zip(clips, batched):
        assert b["pooled"].shape == (32,)
        np.testing.assert_allclose(b["pooled"], single[r["id"]]["pooled"], atol=1e-4)
    out, batches = pipeline(encoder, clips)
    assert max(len(b) for b in batches) > 1
    for r in clips:
        np.testing.assert_allclose(out[r["id"]]["pooled"], single[r["id"]]["pooled"], atol=1e-4)


def test_group_norm_padding_changes_output_so_policy_batches_equal_lengths(group_dir, clips):
    encoder = make(group_dir, max_batch=8)
    assert not encoder.uses_attention_mask and encoder.padding_sensitive
    assert encoder.batch_policy().equal_cost_only
    single = one_at_a_time(encoder, clips)

    # the hazard: clip 0 zero-padded to clip 5's length in one model call
    short, long_ = encoder.prepare(clips[0]), encoder.prepare(clips[5])
    padded = torch.zeros(2, len(long_.samples))
    padded[0, : len(short.samples)] = torch.from_numpy(short.samples)
    padded[1] = torch.from_numpy(long_.samples)
    with torch.inference_mode():
        hidden = encoder._model(input_values=padded).last_hidden_state
    n = short.frames[0]
    padded_pooled = hidden[0, :n].mean(0).numpy()
    assert np.abs(padded_pooled - single["c0"]["pooled"]).max() > 1e-4

    # the pipeline: only equal lengths share a batch, and results equal one-at-a-time
    out, batches = pipeline(encoder, clips)
    costs = {r["id"]: encoder.cost(r) for r in clips}
    assert sorted(len(b) for b in batches) == [1, 1, 2, 2]
    for batch in batches:
        assert len({costs[i] for i in batch}) == 1
    for r in clips:
        np.testing.assert_allclose(out[r["id"]]["pooled"], single[r["id"]]["pooled"], atol=1e-4)
    # even a mixed batch handed to encode() is split into equal-length model calls
    mixed = encoder.encode([encoder.prepare(r) for r in clips])
    for r, m in zip(clips, mixed):
        np.testing.assert_allclose(m["pooled"], single[r["id"]]["pooled"], atol=1e-4)


def test_cost_is_exact_sample_count(layer_dir, clips):
    encoder = make(layer_dir)
    for r in clips:
        assert encoder.cost(r) == len(load_audio(r["audio"], SR))
    assert encoder.cost({"audio": "/nonexistent.wav"}) == 0.0  # prepare() reports it
    with pytest.raises(SampleError, match="not found"):
        encoder.prepare({"audio": "/nonexistent.wav"})


def test_long_clip_is_windowed_not_truncated(layer_dir, clips):
    encoder = make(layer_dir, max_seconds=0.2, store_frames=True)
    row = clips[5]  # 0.8 s -> 4 windows of 0.2 s
    prepared = encoder.prepare(row)
    assert len(prepared.bounds) == 4 and prepared.bounds[0][0] == 0 and prepared.bounds[-1][1] == len(prepared.samples)
    assert all(b[1] == c[0] for b, c in zip(prepared.bounds, prepared.bounds[1:]))
    out = encoder.encode([prepared])[0]
    expected_frames = sum(encoder.frame_counts([b - a for a, b in prepared.bounds]))
    assert out["frames"].shape == (expected_frames, 32)
    assert expected_frames > encoder.frame_counts([int(0.2 * SR)])[0] * 3
    np.testing.assert_allclose(out["pooled"], out["frames"].mean(axis=0), atol=1e-5)
    # windows run in length order inside encode(); frames come back in time order
    a, b = prepared.bounds[0]
    first = encoder.encode([PreparedClip(prepared.samples[a:b], [(0, b - a)], prepared.frames[:1])])[0]
    np.testing.assert_allclose(out["frames"][: len(first["frames"])], first["frames"], atol=1e-4)
    a, b = prepared.bounds[-1]
    final = encoder.encode([PreparedClip(prepared.samples[a:b], [(0, b - a)], prepared.frames[-1:])])[0]
    np.testing.assert_allclose(out["frames"][-len(final["frames"]):], final["frames"], atol=1e-4)
    # without windowing the whole clip is one window; windows lose only their conv edges
    plain = make(layer_dir, store_frames=True)
    whole = plain.encode([plain.prepare(row)])[0]["frames"].shape[0]
    assert whole == plain.frame_counts([len(prepared.samples)])[0]
    stride = 5 * 2 * 2
    assert 0 <= whole - expected_frames <= len(prepared.bounds) * (encoder.receptive_field() // stride)
    assert encoder.outputs()[1].ragged and encoder.outputs()[1].shape == (32,)


def test_window_bounds_cover_every_sample():
    for n in [1, 5, 999, 1000, 1001, 4801, 123457]:
        bounds = window_bounds(n, 1000)
        assert bounds[0][0] == 0 and bounds[-1][1] == n and all(b - a <= 1000 for a, b in bounds)
        assert all(x[1] == y[0] for x, y in zip(bounds, bounds[1:]))
        assert len(bounds) == -(-n // 1000) and max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= len(bounds)


def test_layers_all_last_row_is_last(layer_dir, group_dir, clips):
    for folder in (layer_dir, group_dir):  # stable (pre-LN) and post-LN variants
        last = make(folder).encode([make(folder).prepare(clips[1])])[0]["pooled"]
        every = make(folder, layers="all")
        assert every.outputs()[0].shape == (3, 32)
        out = every.encode([every.prepare(clips[1])])[0]["pooled"]
        assert out.shape == (3, 32)
        np.testing.assert_allclose(out[-1], last, atol=1e-6)


def test_too_short_clip_is_a_sample_error(layer_dir, tmp_path):
    path = tmp_path / "tiny.wav"
    sf.write(path, np.full(30, 0.1, np.float32), SR)  # receptive field is 40 samples
    encoder = make(layer_dir)
    assert encoder.receptive_field() == 40
    with pytest.raises(SampleError, match="shorter than the model's receptive field") as info:
        encoder.prepare({"audio": str(path)})
    assert info.value.stage == "features"


def test_cpu_default_policy_is_one_clip(layer_dir):
    policy = make(layer_dir).batch_policy()
    assert policy.max_items == 1 and policy.max_cost == 200.0 * SR


def test_key_changes_with_options_and_weights_only(tmp_path):
    folder = build_wav2vec2(tmp_path / "m", "layer")
    a, b = ENCODER(Options(model=str(folder))), ENCODER(Options(model=str(folder)))
    assert a.key() == b.key() and a.key().startswith("hf-audio-")
    assert ENCODER(Options(model=str(folder), max_batch=4, max_batch_seconds=50.0)).key() == a.key()
    assert ENCODER(Options(model=str(folder), max_seconds=10.0)).key() != a.key()
    assert ENCODER(Options(model=str(folder), store_frames=True)).key() != a.key()
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder)
    with torch.no_grad():
        model.encoder.layers[1].feed_forward.output_dense.bias[0] += 0.5
    model.save_pretrained(folder)
    assert ENCODER(Options(model=str(folder))).key() != a.key()


# --- environment ------------------------------------------------------------------------
def test_broken_torchaudio_is_reported(tmp_path, monkeypatch):
    fake = tmp_path / "site" / "torchaudio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise OSError('libtorchaudio.so: undefined symbol: _ZN3c10')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    message = environment.check_torchaudio.__wrapped__()
    assert message and "torchaudio" in message and "undefined symbol" in message and "pip uninstall torchaudio" in message
    (fake / "__init__.py").write_text("")
    assert environment.check_torchaudio.__wrapped__() is None


def test_doctor_command_prints_report():
    from click.testing import CliRunner

    from mer.cli import cli

    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "torch" in result.output and "transformers" in result.output and "problems:" in result.output
