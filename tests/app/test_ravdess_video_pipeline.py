"""MPUC-MER from raw RAVDESS MP4s: ``configs/ravdess.yaml`` runs manifest -> extract (log-mel +
face landmarks, no OpenFace) -> train end to end, through the ``mer`` command line.

The corpus is generated: full-AV MP4s (01-...) only, no .wav, so every sample's audio is the MP4's
AAC track and its landmarks come from the video (a real face, scikit-image's astronaut, moving).
Short clips (12 frames) and a tiny training budget keep it to seconds of CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("dlib")
pytest.importorskip("skimage")

from kit.corpora import ravdess_name  # noqa: E402
from kit.video import moving_face_frames, write_video  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "ravdess.yaml"


def mer(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "mer", *args], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, f"mer {' '.join(args)}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def test_ravdess_mp4s_extract_and_train(tmp_path):
    root = tmp_path / "ravdess"
    sr = 16000
    for actor in (1, 2, 3, 4):
        for k, emotion in enumerate((1, 5)):
            frames = moving_face_frames(12, (1 + k, actor % 2), start=(10 + 4 * actor, 10))
            t = np.arange(int(0.4 * sr)) / sr
            tone = (0.2 * np.sin(2 * np.pi * (150 + 100 * emotion + 10 * actor) * t)).astype(np.float32)
            write_video(root / f"Actor_{actor:02d}" / f"{ravdess_name(1, 1, emotion, 1, 1, 1, actor)}.mp4", frames,
                        fps=30, audio=tone, sr=sr)
    common = ["--set", f"dataset.root={root}", "--set", "dataset.protocol=custom", "--set", "dataset.test_actors=[4]",
              "--set", "dataset.val_actors=[3]", "--set", f"cache.root={tmp_path / 'cache'}",
              "--set", f"output={tmp_path / 'runs'}", "--set", "extract.device=cpu", "--set", "train.device=cpu"]
    out = mer("manifest", "-c", str(CONFIG), *common)
    assert "8 samples" in out and "8 clips take their audio from the full-AV MP4" in out
    out = mer("extract", "-c", str(CONFIG), *common, "--modality", "mel", "--modality", "face", "--no-progress")
    assert "mel: 8 samples extracted, 0 failure(s)" in out and "face: 8 samples extracted, 0 failure(s)" in out
    run_dir = tmp_path / "runs" / "mpuc"
    # the paper's pipeline, scaled down to seconds: 8-frame (0.27 s) crops, narrow encoders, one pre-training epoch
    mer("train", "-c", str(CONFIG), *common, "--set", "train.mpuc.crop_seconds=0.27", "--set", "train.mpuc.pretrain_epochs=1", "--set", "train.mpuc.dim=32", "--set", "train.mpuc.stgcn_channels=[8,16]", "--set", "train.mpuc.tcn_channels=8", "--set", "train.mpuc.tcn_hidden=16", "--set", "train.mpuc.probe_c=[1.0]",
        "--set", "train.plots=false", "--seeds", "0", "--run-dir", str(run_dir), "--quiet")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test"]["n"] == 2
