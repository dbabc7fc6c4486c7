"""Real-speech smoke test on the 240 real RAVDESS clips of ``shared/data`` (audio only).

Several minutes of CPU (openSMILE over 240 clips, MPUC pre-training): it runs only with
``MER_RUN_SLOW=1`` and when the data folder is present, so CI never pays for it. The same
code is ``bench/ravdess_smoke.py``, which prints the table and writes the JSON record.

What must hold on real speech, whatever the seed: every clip is extracted without failure,
the speaker-independent split is 120/60/60 clips, and the models learn something: eGeMAPS
and the MPUC fusion beat the 1/8 chance level on the held-out actor by a clear margin.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
from kit.paths import REPO

DATA = REPO.parent / "shared" / "data" / "ravdess-speech-subset"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MER_RUN_SLOW") != "1", reason="slow real-data smoke test: set MER_RUN_SLOW=1"),
    pytest.mark.skipif(not DATA.is_dir(), reason="shared/data/ravdess-speech-subset not present"),
]


def _smoke_module():
    spec = importlib.util.spec_from_file_location("ravdess_smoke", REPO / "bench" / "ravdess_smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ravdess_audio_smoke(tmp_path):
    smoke = _smoke_module()
    record = smoke.run_smoke(DATA, tmp_path, seeds=[0], log=lambda line: None)

    for modality in ("audio", "mel"):
        assert record["extract"][modality]["samples"] == 240
        assert record["extract"][modality]["extracted_now"] == 240
    for name in smoke.RUNS:
        run = record["runs"][name]
        assert run["samples"] == {"train": 120, "val": 60, "test": 60}, name
        for value in run["mean"].values():
            assert 0.0 <= value <= 1.0
    chance = 1 / 8
    egemaps = record["runs"]["unimodal egemaps"]["mean"]
    fusion = record["runs"][smoke.MPUC_RUN]["mean"]
    assert egemaps["accuracy"] > 2 * chance and egemaps["uar"] > 2 * chance, egemaps
    assert fusion["accuracy"] > 2 * chance and fusion["uar"] > 2 * chance, fusion
    assert record["runs"][smoke.MEL_ALONE]["mean"]["accuracy"] > chance
