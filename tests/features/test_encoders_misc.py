"""Signal encoders without a neural model: logmel, egemaps (openSMILE), landmarks (OpenFace CSV)."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from mer.features import egemaps, landmarks, logmel
from mer.features.base import SampleError
from mer.features.registry import FAMILIES, build_encoder, options_class
from mer.pipeline.config_schema import from_dict

SR = 16000
CPU = torch.device("cpu")


def write_wav(path: Path, x: np.ndarray, sr: int = SR) -> dict:
    sf.write(path, x.astype(np.float32), sr, subtype="FLOAT")
    return {"id": path.stem, "audio": str(path), "start": float("nan"), "end": float("nan")}


def voiced(seconds: float, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A vowel-like harmonic signal with vibrato, amplitude envelope and a little noise."""
    t = np.arange(int(seconds * SR)) / SR
    freq = f0 + 15 * np.sin(2 * np.pi * 4 * t)
    phase = 2 * np.pi * np.cumsum(freq) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t) ** 2)
    return 0.25 * x + 0.005 * np.random.default_rng(seed).standard_normal(len(t))


# --- logmel -----------------------------------------------------------------------------
def test_logmel_frame_counts(tmp_path):
    enc = logmel.ENCODER(logmel.Options())
    assert (enc.win_length, enc.n_fft, enc.hop) == (400, 512, 160)
    # centres 0, 160, ..., < N: N = 16080 -> 0..16000 -> 101 frames; N = 16000 -> 100
    assert enc.n_frames(16080) == 101 and enc.n_frames(16000) == 100 and enc.n_frames(1) == 1
    row = write_wav(tmp_path / "a.wav", voiced(1.005))  # 16080 samples
    enc.load(CPU)
    out = enc.encode([enc.prepare(row)])[0]["frames"]
    assert out.shape == (101, 128) and out.dtype == np.float32 and np.isfinite(out).all()
    fps = logmel.ENCODER(logmel.Options(fps=30))
    assert fps.n_frames(3 * SR) == 90 and fps.n_frames(10 * SR) == 300 and fps.n_frames(3 * SR + 1) == 91
    out = fps.prepare(write_wav(tmp_path / "b.wav", voiced(3.0)))["frames"]
    assert out.shape == (90, 128)
    assert fps.outputs()[0].attrs["hop_seconds"] == pytest.approx(1 / 30) and fps.outputs()[0].ragged


def test_logmel_power_spectrum_equals_torch_stft():
    enc = logmel.ENCODER(logmel.Options())
    x = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    ours = enc.power_spectrogram(x).numpy()
    ref = torch.stft(torch.from_numpy(x), n_fft=512, hop_length=160, win_length=400, window=torch.hann_window(400),
                     center=True, pad_mode="constant", return_complex=True).abs().square().T.numpy()
    assert ours.shape == (32, 257) and ref.shape[0] == 32  # 5000/160 = 31.25 -> 32 centres inside, torch 1 + 31
    np.testing.assert_allclose(ours, ref[:32], rtol=1e-4, atol=1e-3)


def test_logmel_fractional_hop_frames_sit_at_k_over_fps():
    enc = logmel.ENCODER(logmel.Options(fps=30))
    x = np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    spec = enc.power_spectrogram(x).numpy()
    window = np.zeros(512, np.float32)
    window[56:456] = torch.hann_window(400).numpy()
    padded = np.pad(x, 256)
    for k in [0, 1, 2, 7, 29]:
        centre = int(np.floor(k * SR / 30 + 0.5))  # 0, 533, 1067, 3733, 15467
        frame = padded[centre: centre + 512] * window
        np.testing.assert_allclose(spec[k], np.abs(np.fft.rfft(frame)) ** 2, rtol=1e-3, atol=1e-3)


def test_logmel_tone_peaks_in_its_mel_bin():
    from transformers.audio_utils import mel_filter_bank

    enc = logmel.ENCODER(logmel.Options())
    bank = mel_filter_bank(num_frequency_bins=257, num_mel_filters=128, min_frequency=0.0, max_frequency=8000.0,
                           sampling_rate=SR, norm="slaney", mel_scale="slaney")
    freqs = np.arange(257) * SR / 512
    for tone in [440.0, 1000.0, 3000.0]:
        t = np.arange(SR) / SR
        frames = enc.compute(np.sin(2 * np.pi * tone * t).astype(np.float32))
        mean = frames[5:-5].mean(axis=0)
        peak = int(np.argmax(mean))
        bin_ = int(np.argmin(np.abs(freqs - tone)))
        # the filter that weighs the tone's FFT bin most (hand-derived from the bank)
        assert abs(peak - int(np.argmax(bank[bin_]))) <= 1, (tone, peak)
        assert mean[peak] > np.median(mean) + 5  # far above the rest (log scale)
    silence = enc.compute(np.zeros(1600, np.float32))
    np.testing.assert_allclose(silence, np.log(1e-6), rtol=1e-6)


def test_logmel_options_validate_and_key():
    base = logmel.ENCODER(logmel.Options()).key()
    assert base == logmel.ENCODER(logmel.Options()).key()
    assert logmel.ENCODER(logmel.Options(fps=30)).key() != base
    assert logmel.ENCODER(logmel.Options(n_mels=64)).key() != base
    with pytest.raises(ValueError):
        logmel.Options(fmin=9000)


# --- egemaps ----------------------------------------------------------------------------
HAS_OPENSMILE = importlib.util.find_spec("opensmile") is not None


@pytest.mark.skipif(not HAS_OPENSMILE, reason="opensmile not installed (pip install 'mer[opensmile]')")
def test_egemaps_88_finite_values_thread_safe(tmp_path):
    enc = egemaps.ENCODER(egemaps.Options())
    enc.load(CPU)
    spec = enc.outputs()[0]
    assert spec.shape == (88,) and len(spec.attrs["names"]) == 88 and spec.attrs["names"][0].startswith("F0semitone")
    rows = [write_wav(tmp_path / f"v{i}.wav", voiced(1.0, f0=110 + 40 * i, seed=i)) for i in range(4)]
    single = [enc.encode([enc.prepare(r)])[0]["pooled"] for r in rows]
    for values in single:
        assert values.shape == (88,) and values.dtype == np.float32 and np.isfinite(values).all()
    f0_mean = spec.attrs["names"].index("F0semitoneFrom27.5Hz_sma3nz_amean")
    assert single[0][f0_mean] < single[-1][f0_mean]  # higher pitch -> higher F0 mean
    with ThreadPoolExecutor(3) as pool:  # one Smile per prefetch thread
        threaded = list(pool.map(enc.prepare, rows))
    for a, b in zip(single, threaded):
        np.testing.assert_array_equal(a, b["pooled"])


@pytest.mark.skipif(not HAS_OPENSMILE, reason="opensmile not installed (pip install 'mer[opensmile]')")
def test_egemaps_too_short_is_a_sample_error(tmp_path):
    enc = egemaps.ENCODER(egemaps.Options())
    enc.load(CPU)
    with pytest.raises(SampleError, match="short.wav: openSMILE returned") as info:
        enc.prepare(write_wav(tmp_path / "short.wav", voiced(0.02)))
    assert info.value.stage == "features"
    assert enc.identity()["opensmile"]


def test_egemaps_missing_package_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "opensmile":
            raise ImportError("No module named 'opensmile'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(RuntimeError, match=r"pip install 'mer\[opensmile\]'"):
        egemaps.ENCODER(egemaps.Options()).load(CPU)


# --- landmarks --------------------------------------------------------------------------
def openface_csv(path: Path, frames: int = 12, drop: tuple[str, ...] = (), seed: int = 0) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    """An OpenFace 2-style CSV: leading-space headers, pose/AU columns, 3-D landmarks, failures."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(100, 300, size=(frames, 68))
    y = rng.uniform(50, 400, size=(frames, 68))
    success = np.ones(frames, int)
    success[[2, 7]] = 0
    confidence = np.linspace(0.5, 0.98, frames)
    x[2] = 0.0  # OpenFace writes zeros on failure: they must not enter the min/max
    y[2] = 0.0
    cols = {"frame": np.arange(1, frames + 1), "face_id": 0, "timestamp": np.arange(frames) / 30,
            "confidence": confidence, "success": success, "pose_Tx": rng.normal(size=frames), "pose_Rx": rng.normal(size=frames)}
    cols.update({f"x_{i}": x[:, i] for i in range(68)})
    cols.update({f"y_{i}": y[:, i] for i in range(68)})
    cols.update({f"X_{i}": rng.normal(size=frames) for i in range(68)})
    cols.update({"AU01_r": rng.uniform(0, 5, frames), "AU12_c": rng.integers(0, 2, frames)})
    df = pd.DataFrame({k: v for k, v in cols.items() if k not in drop})
    df.columns = [c if c == "frame" else " " + c for c in df.columns]  # OpenFace's leading spaces
    df.to_csv(path, index=False)
    return path, x, y, (success == 1)


def test_landmarks_shape_normalisation_and_mask(tmp_path):
    path, x, y, ok = openface_csv(tmp_path / "01-01-03.csv")
    assert " x_0" in path.read_text().splitlines()[0]
    enc = landmarks.ENCODER(landmarks.Options())
    out = enc.encode([enc.prepare({"landmarks": str(path)})])[0]
    frames, valid = out["frames"], out["valid"]
    assert frames.shape == (12, 51, 2) and frames.dtype == np.float32
    assert valid.dtype == bool and valid.tolist() == ok.tolist()
    v = frames[valid]
    assert v.min() == 0.0 and v.max() == 1.0
    for axis in (0, 1):
        assert v[..., axis].min() == 0.0 and v[..., axis].max() == pytest.approx(1.0)
    assert (frames[~valid] == 0).all()
    # jaw dropped: node 0 is OpenFace point 17, normalised with the clip's valid min/max of points 17..67
    xs = x[ok][:, 17:]
    expected = (x[ok][:, 17] - xs.min()) / (xs.max() - xs.min())
    np.testing.assert_allclose(frames[valid][:, 0, 0], expected, rtol=1e-5)
    ys = y[ok][:, 17:]
    np.testing.assert_allclose(frames[valid][:, 50, 1], (y[ok][:, 67] - ys.min()) / (ys.max() - ys.min()), rtol=1e-5)
    specs = enc.outputs()
    assert specs[0].shape == (51, 2) and specs[0].ragged and specs[0].attrs["points"][0] == 17
    assert specs[1].shape == () and specs[1].ragged and specs[1].dtype == "bool"


def test_landmarks_confidence_threshold(tmp_path):
    path, _, _, ok = openface_csv(tmp_path / "c.csv")
    out = landmarks.ENCODER(landmarks.Options(min_confidence=0.8)).prepare({"landmarks": str(path)})
    confidence = np.linspace(0.5, 0.98, 12)
    assert out["valid"].tolist() == (ok & (confidence >= 0.8)).tolist()
    assert out["frames"][out["valid"]].min() == 0.0 and out["frames"][out["valid"]].max() == 1.0


def test_landmarks_errors(tmp_path):
    enc = landmarks.ENCODER(landmarks.Options())
    path, *_ = openface_csv(tmp_path / "bad.csv", drop=("x_20", "y_67", "success"))
    with pytest.raises(SampleError) as info:
        enc.prepare({"landmarks": str(path)})
    msg = info.value.message
    assert "bad.csv" in msg and "success" in msg and "x_20" in msg and "y_67" in msg and "x_21" not in msg
    with pytest.raises(SampleError, match="not found") as info:
        enc.prepare({"landmarks": str(tmp_path / "none.csv")})
    assert info.value.stage == "read"
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(SampleError, match="empty.csv"):
        enc.prepare({"landmarks": str(empty)})
    path, *_ = openface_csv(tmp_path / "allbad.csv")
    df = pd.read_csv(path)
    df[" success"] = 0
    df.to_csv(path, index=False)
    with pytest.raises(SampleError, match="no valid frame") as info:
        enc.prepare({"landmarks": str(path)})
    assert info.value.stage == "features"


# --- registry / config ------------------------------------------------------------------
def test_every_family_parses_from_config_without_heavy_imports():
    import subprocess
    import sys

    code = ("import sys; from mer.pipeline.config_schema import from_dict; from mer.features.registry import options_class, build_encoder\n"
            "for fam, extra in [('hf-text', {'model': 'x'}), ('hf-audio', {'model': 'x', 'layers': 'all'}), ('logmel', {'fps': 30}),\n"
            "                   ('egemaps', {}), ('landmarks', {'min_confidence': 0.5})]:\n"
            "    build_encoder(from_dict(options_class(fam), {'encoder': fam, **extra}, 'c.yaml', 'features.m'))\n"
            "print(sorted(m for m in ('transformers', 'opensmile', 'torch') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_registry_builds_each_family():
    for family in ("hf-text", "hf-audio", "logmel", "egemaps", "landmarks"):
        assert family in FAMILIES
        cls = options_class(family)
        opts = from_dict(cls, {"encoder": family, **({"model": "m"} if family.startswith("hf-") else {})}, "c.yaml")
        encoder = build_encoder(opts)
        assert encoder.family == family and opts.encoder == family
