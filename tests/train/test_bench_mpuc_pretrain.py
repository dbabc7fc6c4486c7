"""bench/mpuc_pretrain.py: its quick mode runs and its per-sample reference cuts the same
windows as the batched view builder (figures are not asserted: speed is measured, not tested)."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import torch

import mer.train.pretrain as P

BENCH = Path(__file__).resolve().parents[2] / "bench" / "mpuc_pretrain.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("mpuc_pretrain_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_per_sample_reference_cuts_aligned_windows_of_the_right_size():
    bench = load_bench()
    data = bench.synthetic_corpus(6, landmarks=True)
    rates = P.frame_rates(data, {"face": bench.FACE_FPS})
    rows = [0, 3, 5]
    ref = bench.per_sample_views(data, rows, 3.0, rates, random.Random(0))
    gen = torch.Generator().manual_seed(0)
    source = P.ViewSource({m: data.modalities[m].values for m in rates}, rates)
    got = P.view_inputs(data, torch.tensor(rows), 3.0, source, gen)
    for m in rates:
        assert ref[m].values.shape == got[m].values.shape and torch.equal(ref[m].lengths, got[m].lengths)
    assert torch.equal(ref["egemaps"], got["egemaps"])


def test_quick_mode_writes_its_record(tmp_path):
    bench = load_bench()
    out = tmp_path / "mpuc.json"
    record = bench.main(["--quick", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["results"]) == {"views", "epoch_seconds", "view_share"}
    assert record["results"]["views"]["batched"]["n"] == 1 and saved["args"]["clips"] == 48
