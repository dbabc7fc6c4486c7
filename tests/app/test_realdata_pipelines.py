"""The whole CLI path (manifest -> extract -> train -> evaluate) on the real corpora in
``shared/data``, driven by the shipped configs plus ``--set`` overrides only: the promise of
issue 4 that a user changes a config, never the code, to run ``mer`` on RAVDESS or MELD.

Kept to a few seconds each, so it runs in CI whenever the data folder is present (it skips
cleanly otherwise):

* RAVDESS: all 240 real FLAC clips (actors 1-4), ``configs/ravdess.yaml`` with the custom
  protocol (test actor 4, val actor 3), 128-bin log-mel at 30 fps (the cheap encoder; eGeMAPS
  costs ~35 s on this subset, see ``bench/ravdess_smoke.py``), ``unimodal`` on the pooled mel.
* MELD: the manifest is built over the full real CSVs (13,708 rows); extraction and training
  run on a byte-faithful slice of them (the header and the first 200 records of each split,
  same bytes, CRLF and typographic quotes intact) because any text encoder over 13.7k rows
  costs 25 s or more on a CPU. The text encoder is a small random BERT saved with
  ``save_pretrained`` (the same ``from_pretrained(folder)`` path as the real MiniLM used for
  the figures in ``notes/issue4_report.md``).

What could fail: the per-split row counts of the real manifests, a missing or non-finite
``metrics.json``, and ``mer evaluate`` not reproducing the run's test metrics exactly.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from mer.cli import cli
from kit.paths import REPO, SHARED_DATA

DATA = SHARED_DATA
RAVDESS = DATA / "ravdess-speech-subset"
MELD = DATA / "meld-text"
MELD_SPLITS = ("train", "dev", "test")
SLICE = 200

pytestmark = pytest.mark.realdata


def invoke(args: list[str], stdout_only: bool = False) -> str:
    """Run one ``mer`` command; fail with its output when it does not exit 0. Returns stdout and
    stderr together (progress and log lines go to stderr), or stdout alone."""
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, f"mer {' '.join(args)}\n{result.output}\n{result.exception!r}"
    return result.stdout if stdout_only else result.output


def sets(overrides: list[str]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def manifest_split_counts(cache: Path, corpus: str) -> dict[str, int]:
    df = pd.read_csv(cache / corpus / "manifest.csv", dtype=str, keep_default_na=False)
    return df["split"].value_counts().to_dict()


def check_run(run_dir: Path, expected_test_n: int) -> None:
    """metrics.json is complete and finite, and ``mer evaluate`` recomputes the same test metrics."""
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    for split in ("train", "val", "test"):
        for key in ("accuracy", "uar", "macro_f1", "weighted_f1"):
            value = metrics[split][key]
            assert math.isfinite(value) and 0.0 <= value <= 1.0, (split, key, value)
    assert metrics["test"]["n"] == expected_test_n
    assert (run_dir / "model.pt").is_file() and (run_dir / "predictions.csv").is_file()
    evaluated = json.loads(invoke(["evaluate", str(run_dir), "--split", "test", "--json"], stdout_only=True))
    assert evaluated == metrics["test"]


@pytest.mark.skipif(not RAVDESS.is_dir(), reason="shared/data/ravdess-speech-subset not present")
def test_ravdess_cli_path(tmp_path):
    config = str(REPO / "configs" / "ravdess.yaml")
    common = sets([f"dataset.root={RAVDESS}", "dataset.protocol=custom", "dataset.test_actors=[4]",
                   "dataset.val_actors=[3]", f"cache.root={tmp_path / 'cache'}", f"output={tmp_path / 'runs'}",
                   "extract.device=cpu", "train.device=cpu"])

    out = invoke(["manifest", "-c", config, *common])
    assert "240 samples" in out and "skipped: none" in out
    assert manifest_split_counts(tmp_path / "cache", "ravdess") == {"train": 120, "val": 60, "test": 60}

    out = invoke(["extract", "-c", config, *common, "--modality", "mel", "--no-progress"])
    assert "mel: 240 samples extracted, 0 failure(s)" in out

    run_dir = tmp_path / "runs" / "unimodal-mel"
    invoke(["train", "-c", config, *common, *sets(["train.model=unimodal", "train.modalities=[mel]",
                                                   "train.epochs=15", "train.lr=0.001", "train.plots=false"]),
            "--seeds", "0", "--run-dir", str(run_dir), "--quiet"])
    check_run(run_dir, expected_test_n=60)


def slice_csv(source: Path, target: Path, records: int) -> int:
    """Copy the header and the first ``records`` CSV records of ``source`` byte for byte (a
    quoted field may span lines, so records are counted by a CSV parser, not by lines)."""
    text = source.read_bytes().decode("utf-8")
    lines = text.splitlines(keepends=True)
    consumed = 0

    def feed():
        nonlocal consumed
        for line in lines:
            consumed += 1
            yield line

    reader = csv.reader(feed())
    for _ in range(records + 1):  # the header, then the records
        next(reader)
    target.write_bytes("".join(lines[:consumed]).encode("utf-8"))
    return records


@pytest.mark.skipif(not MELD.is_dir(), reason="shared/data/meld-text not present")
def test_meld_text_cli_path(tmp_path):
    from mer.demo import build_small_text_model

    config = str(REPO / "configs" / "meld.yaml")

    # the manifest of the full real release: the official split sizes
    full = sets([f"dataset.root={MELD}", f"cache.root={tmp_path / 'full'}"])
    out = invoke(["manifest", "-c", config, *full])
    assert "13708 samples" in out and "skipped: none" in out
    assert manifest_split_counts(tmp_path / "full", "meld") == {"train": 9989, "val": 1109, "test": 2610}

    # extract -> train -> evaluate on the first records of each real CSV
    root = tmp_path / "meld-slice"
    root.mkdir()
    for split in MELD_SPLITS:
        name = f"{split}_sent_emo.csv"
        slice_csv(MELD / name, root / name, SLICE)
        head = (root / name).read_bytes()
        assert (MELD / name).read_bytes().startswith(head)  # the same bytes, cut at a record end
        sliced = pd.read_csv(root / name, dtype=str, keep_default_na=False)
        pd.testing.assert_frame_equal(sliced, pd.read_csv(MELD / name, dtype=str, keep_default_na=False, nrows=SLICE))

    model = build_small_text_model(tmp_path / "small-bert")
    common = sets([f"dataset.root={root}", f"cache.root={tmp_path / 'cache'}", f"output={tmp_path / 'runs'}",
                   f"features.text.model={model}", "features.text.max_length=64", "extract.device=cpu",
                   "train.device=cpu"])
    invoke(["manifest", "-c", config, *common])
    assert manifest_split_counts(tmp_path / "cache", "meld") == {"train": SLICE, "val": SLICE, "test": SLICE}

    out = invoke(["extract", "-c", config, *common, "--modality", "text", "--no-progress"])
    assert f"text: {3 * SLICE} samples extracted, 0 failure(s)" in out

    run_dir = tmp_path / "runs" / "unimodal-text"
    invoke(["train", "-c", config, *common, *sets(["train.model=unimodal", "train.modalities=[text]",
                                                   "train.epochs=10", "train.plots=false"]),
            "--seeds", "0", "--run-dir", str(run_dir), "--quiet"])
    check_run(run_dir, expected_test_n=SLICE)
