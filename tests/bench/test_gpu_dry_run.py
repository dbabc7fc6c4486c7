"""``bench/gpu.py``: the GPU benchmark runs end to end on the CPU (``--dry-run``, tiny sizes),
so that a scarce GPU minute is never spent finding a bug; and its measuring helpers give
hand-computed values."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(name: str):
    """A bench script as a module (bench/ on sys.path: the scripts import their siblings)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    key = f"bench_{name.replace('/', '_')}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, BENCH / f"{name}.py")
        sys.modules[key] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
        spec.loader.exec_module(sys.modules[key])
    return sys.modules[key]


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    proc = subprocess.run([sys.executable, str(BENCH / "gpu.py"), "--dry-run", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "DRY RUN" in proc.stdout
    return json.loads(out.read_text())


def test_dry_run_measures_every_section(dry_run):
    assert dry_run["dry_run"] and dry_run["errors"] == {} and set(dry_run["sections"]) == {"speech", "text", "train"}
    assert dry_run["device"]["device"] == "cpu"
    speech = dry_run["speech"]["wav2vec2-tiny"]
    text = dry_run["text"]["bert-tiny"]
    # the tiny sizes of DRY: 6 clips (naive on 4), 24 sentences (naive on 8)
    assert (speech["items"], speech["variants"]["naive"]["items"], speech["variants"]["mer"]["items"]) == (6, 4, 6)
    assert (text["items"], text["variants"]["naive"]["items"]) == (24, 8)
    # on the CPU the speech policy is one clip per batch; text batches only sentences of equal token count
    # (so that a vector never depends on its batch-mates' padding), hence fewer calls than sentences
    assert speech["mer_batches"] == {"count": 6, "mean_size": 1.0, "max_size": 1, "single_item": 6}
    assert 1 < text["mer_batches"]["count"] < text["items"] and text["mer_batches"]["max_size"] > 1
    for rec in (speech, text):
        # both sides computed the same vectors (mer's float16 cache vs the loop's float32)
        assert rec["agreement"]["min_cosine"] > 0.999
        for name, v in rec["variants"].items():
            assert v["seconds"] > 0 and v["model_tflops"] > 0
            assert 0 < v["busy_fraction"] <= 1 if name in ("naive", "mer") else v["busy_fraction"] is None
            assert v["peak_device_bytes"] is None  # no CUDA: no device memory figure
    assert speech["variants"]["naive"]["speedup_vs_naive"] == 1.0
    train = dry_run["train"]
    assert train["train_samples"] == 320 and set(train["models"]) == {"concat", "lmr"}
    for m in train["models"].values():
        assert m["fit_samples_per_s"] > 0 and m["cpu_step_samples_per_s"] > 0
        assert m["cpu_epoch_seconds_projected"] == pytest.approx(320 / m["cpu_step_samples_per_s"])


def test_union_seconds_counts_overlaps_once():
    gm = bench_module("benchkit/gpu_measure")
    # [0,10) and [5,15) overlap -> 15 ns; [20,30) -> 10 ns; [22,25) inside it adds nothing
    assert gm.union_seconds([(20, 30), (0, 10), (5, 15), (22, 25)]) == pytest.approx(25e-9)
    assert gm.union_seconds([]) == 0.0


def test_busy_fraction_on_cpu_is_a_fraction():
    gm = bench_module("benchkit/gpu_measure")
    a = torch.randn(128, 128)
    run = gm.busy_fraction(torch.device("cpu"), lambda: [a @ a for _ in range(20)])
    assert 0 < run.busy <= 1 and run.seconds > 0 and run.peak_bytes is None


def test_speech_flops_fit_matches_exact_counts(tmp_path):
    bx = bench_module("extract")
    gm = bench_module("benchkit/gpu_measure")
    folder = str(bx.save_wav2vec2(tmp_path / "tiny", "tiny"))
    lengths = [8000 + 1237 * k for k in range(14)]  # 0.5-1.6 s at 16 kHz, all different

    def count(ls):
        return bx.forward_flops(folder, ls, bx.audio_inputs(False))[0]

    fitted, how = gm.speech_flops(folder, lengths, count, exact_up_to=0, points=9)
    assert how["counted"] == 9 and how["max_relative_error_on_checks"] < 1e-3
    exact = count(lengths)
    for n in lengths:
        assert fitted[n] == pytest.approx(exact[n], rel=1e-3)


def test_frame_count_is_the_models_own():
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    gm = bench_module("benchkit/gpu_measure")
    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
                            conv_dim=(8,) * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    model = Wav2Vec2Model(config)
    for n in (400, 401, 16000, 33333):
        assert gm.frame_count(config.conv_kernel, config.conv_stride, n) == int(model._get_feat_extract_output_lengths(n))


def test_clips_are_written_by_forked_workers(tmp_path):
    import soundfile as sf

    gpu = bench_module("gpu")
    rows = gpu.make_clips(tmp_path, 5, (0.3, 0.5), workers=2)
    assert [r["id"] for r in rows] == [f"clip{k:04d}" for k in range(5)]
    for r in rows:
        info = sf.info(r["audio"])
        assert info.samplerate == 48000 and info.channels == 1 and 0.3 <= info.duration <= 0.5
    # the same clips one process writes (seeded per clip index)
    again = gpu.make_clips(tmp_path / "one", 5, (0.3, 0.5), workers=1)
    for a, b in zip(rows, again):
        assert (sf.read(a["audio"])[0] == sf.read(b["audio"])[0]).all()
