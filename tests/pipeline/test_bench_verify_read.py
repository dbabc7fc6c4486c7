"""``bench/verify_read.py --quick`` runs end to end (its figures are not looked at: speed is
measured on a quiet machine, never asserted) and records every variant for every profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_records_every_variant(tmp_path):
    out = tmp_path / "verify_read.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "verify_read.py"), "--quick", "--samples", "300",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(out.read_text())
    assert record["samples"] == 300 and record["reps"] == 1 and record["quick"] is True
    assert set(record["profiles"]) == {"text", "hf-audio", "logmel"}
    for profile in record["profiles"].values():
        assert profile["shards"] == 2 and profile["bytes"] > 0
        assert set(profile["seconds"]) == {"size only", "first open", "record", "same process"}
        assert all(v["n"] == 1 for v in profile["seconds"].values())
    assert "first open (s)" in proc.stdout
