"""Fault injection: crashes, bad input, concurrent runs and interrupted training, end to end.

What other test files already cover (not repeated here):

* SIGKILL mid-shard, after a shard's tmp file is written (``shard-tmp-written``) and after its
  rename before the sidecar (``shard-replaced``), then resume == uninterrupted:
  ``test_extract.py::test_sigkill_at_any_moment_then_resume_equals_uninterrupted``;
* a corrupt shard named by ``mer cache verify`` and only it redone:
  ``test_extract.py::test_corrupt_shard_is_named_and_only_it_is_redone``;
* a second ``mer extract`` refused (exit 75, names the holder):
  ``test_extract.py::test_second_extract_refuses_while_first_holds_the_lock``; the lock itself:
  ``test_cache.py::test_lock_*``;
* toy-encoder bad WAVs (missing / empty / truncated) and ``--max-failures`` counts/fractions:
  ``test_extract.py::test_bad_inputs_are_recorded_and_max_failures_sets_exit_code``;
* NaN in a stored shard -> reported, excluded, finite losses:
  ``test_train_data.py::test_nan_features_are_reported_and_excluded``;
* a class missing from a split: ``test_train_metrics.py::test_a_split_without_a_class_still_has_metrics_with_a_warning``,
  ``test_train_run.py::test_class_absent_from_a_split_gives_metrics_and_a_warning``;
* a label outside ``train.classes``: ``test_train_data.py::test_unknown_label_outside_the_classes_is_an_error``;
  adapters skipping it: ``test_adapters_kemdy20.py::test_labels_text_and_skips``,
  ``test_adapters_meld.py::test_rows_labels_and_skips``;
* ``mer ablate`` skipping cells that have result.json: ``test_train_ablate.py::test_grid_runs_skips_invalid_cells_and_resumes``;
* a disk that fills up during extraction (a size-limited tmpfs, as root), then a complete
  byte-identical re-run: ``pipeline/test_disk_full.py``; a flipped byte or a damaged HDF5
  signature refused by every reader (``mer train`` included): ``pipeline/test_read_verify.py``;
  a garbage spec.json: ``pipeline/test_spec_verify.py``; path tricks in names:
  ``pipeline/test_path_names.py``; a malicious pickled checkpoint: ``features/test_hf_safety.py``;
  cut WAV/AIFF/AU files: ``features/test_audio_truncation.py``; directories, FIFOs, devices,
  symlink loops, inf/NaN, IBI <= 0, invalid UTF-8 offsets: ``features/test_precise_reasons.py``.

Added here: the three remaining SIGKILL moments (between shards, during the final
failures.jsonl write, during the final spec.json write), the bad-input matrix through ``mer
extract`` with real encoders (logmel, a tiny random hf-audio and hf-text model, e4), KEMDy20
transcript encodings, ``--wait`` that waits then succeeds, and ``mer ablate`` killed by SIGKILL.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr
import yaml
from click.testing import CliRunner
from kit.corpora import write_kemdy20, write_wav
from kit.toy_corpus import make_corpus, write_config, write_manifest, write_wavs

from mer.pipeline.cache import sha256_file
from mer.cli import cli
from mer.config import load_config
from mer.pipeline.extract import extract
from mer.pipeline.store import FeatureStore
from kit.paths import TESTS

SR = 16000


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def encoder_dir(config_path: Path, modality: str = "audio") -> Path:
    from mer.features.registry import build_encoder

    config = load_config(config_path)
    return Path(config.cache.root) / config.corpus / modality / build_encoder(config.features[modality]).key()


def shard_hashes(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.glob("shard-*.h5"))}


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def wait_for(condition, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


pytestmark = pytest.mark.usefixtures("one_thread")


# ==============================================================================================
# 1. SIGKILL at the moments test_extract.py does not cover
# ==============================================================================================

@pytest.fixture(scope="module")
def crash_corpus(tmp_path_factory):
    """10 good clips and two that fail (a truncated header and an empty file: present in the
    manifest, so failures.jsonl has content to compare), and an uninterrupted reference run."""
    root = tmp_path_factory.mktemp("crash")
    csv, ids = make_corpus(root / "corpus", 10)
    wav = root / "corpus" / "wav"
    (wav / "bad_empty.wav").write_bytes(b"")
    (wav / "bad_truncated.wav").write_bytes((wav / "utt000.wav").read_bytes()[:30])
    rows = pd.read_csv(csv, dtype=str, keep_default_na=False).to_dict("records")
    rows += [{"id": i, "label": "sad", "group": "spk9", "split": "train", "audio": str(wav / f"{i}.wav")}
             for i in ("bad_empty", "bad_truncated")]
    write_manifest(csv, rows)
    reference = write_config(root / "ref.yaml", csv, root / "ref_cache", shard_size=3,
                             extract={"prefetch": 0, "io_threads": 0})
    report = extract(load_config(reference), progress=False, max_failures=2)
    assert report.modalities["audio"].shards_extracted == 4 and report.modalities["audio"].failures == 2
    directory = encoder_dir(reference)
    return {"csv": csv, "hashes": shard_hashes(directory), "failures": (directory / "failures.jsonl").read_bytes()}


def _extract_child(config_path: str, crash_at: str) -> None:
    """Runs in a forked copy of this process: the SIGKILL is real, the interpreter start is not paid."""
    os.environ["MER_CRASH_AT"] = crash_at
    os.environ["OMP_NUM_THREADS"] = "1"  # extract leaves torch's thread count alone
    extract(load_config(config_path), progress=False, max_failures=2)


#: point -> what the directory looks like right after the kill
KILL_MOMENTS = {
    "shard-published:2": "between shards: shards 0 and 1 complete, shard 2 not started",
    "write-failures.jsonl": "final failures.jsonl written to its tmp file, not renamed",
    "write-spec.json:2": "final spec.json written to its tmp file, not renamed",
}


@pytest.mark.parametrize("point", list(KILL_MOMENTS))
def test_sigkill_between_shards_and_during_final_writes_then_resume(crash_corpus, tmp_path, point):
    config_path = write_config(tmp_path / "c.yaml", crash_corpus["csv"], tmp_path / "cache", shard_size=3,
                               extract={"prefetch": 0, "io_threads": 0})
    directory = encoder_dir(config_path)
    child = multiprocessing.get_context("fork").Process(target=_extract_child, args=(str(config_path), point))
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
        pytest.fail(f"the extraction child did not reach {point}")
    assert child.exitcode == -signal.SIGKILL, f"child exited with {child.exitcode}, not killed at {point}"

    spec = json.loads((directory / "spec.json").read_text())
    assert spec["status"] == "incomplete"  # a killed run never claims completeness
    complete = sorted(p.name for p in directory.glob("shard-*.json"))
    if point.startswith("shard-published"):
        assert complete == ["shard-00000.json", "shard-00001.json"] and leftovers(directory) == []
        assert not (directory / "shard-00002.h5").exists() and (directory / "plan.json").exists()
    else:
        name = point.split("-", 1)[1].split(":")[0]
        assert len(complete) == 4 and not (directory / "plan.json").exists()
        left = leftovers(directory)
        assert len(left) == 1 and left[0].startswith(f"{name}.tmp-{child.pid}-")
        if name == "failures.jsonl":
            assert not (directory / "failures.jsonl").exists()
        else:
            assert (directory / "failures.jsonl").read_bytes() == crash_corpus["failures"]

    result = invoke("extract", "-c", config_path, "--max-failures", "2")
    assert result.exit_code == 0, result.output
    if point.startswith("shard-published"):
        assert "2 complete shard(s) verified, 2 shard(s) to extract (6 samples)" in result.output
    else:
        assert "removed 1 temporary file(s) of an interrupted run" in result.output
        assert "4 complete shard(s) verified, 0 shard(s) to extract" in result.output
    assert shard_hashes(directory) == crash_corpus["hashes"]
    assert (directory / "failures.jsonl").read_bytes() == crash_corpus["failures"]
    assert leftovers(directory) == [] and not (directory / "plan.json").exists()
    assert json.loads((directory / "spec.json").read_text())["status"] == "complete"
    assert invoke("cache", "verify", "--root", tmp_path / "cache").exit_code == 0


# ==============================================================================================
# 2. the bad-input matrix through `mer extract` with real encoders
# ==============================================================================================

T0 = 1644226061.0
WORDS = ["the cat sat on the mat", "i am so happy today", "she is angry", "calm night", "what a good day",
         "this movie was not good", "we love the dog", "why"]
GOOD = [f"good{k}" for k in range(4)]
#: modality -> id -> (stage, text the message must contain)
EXPECTED_FAILURES = {
    "audio": {"truncated": ("decode", "truncated.wav: cannot read audio header"),
              "zero": ("decode", "zero.wav: cannot read audio header"),
              "missing": ("read", "missing.wav: audio file not found"),
              "nanwav": ("decode", "nanwav.wav: 3 NaN/inf sample value(s)")},
    "audio_hf": {},
    "text": {"blank": ("clean", "empty text")},
    "bio": {"bio_badheader": ("read", "TEMP_badheader.csv: line 1 should be the start unix time"),
            "bio_nan": ("features", "TEMP_nan.csv: 2 NaN value(s) (first at line 87) in segment [1644226081.0, 1644226091.0)"),
            "bio_none": ("read", "no biosignal rows for segment [1644226261.0, 1644226271.0) in any of ['temp', 'ibi']")},
}


def _e4_file(path: Path, values: list[str], header: str = f"{T0:.6f}", rate: str = "4.000000") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, rate, *values]) + "\n")
    return str(path)


def _build_matrix(root: Path) -> dict:
    from kit.models import build_bert, tiny_wav2vec2

    wav = root / "wav"
    paths = {i: write_wav(wav / f"{i}.wav", seconds=0.3 + 0.05 * k, sr=SR, seed=k) for k, i in enumerate(GOOD)}
    # stereo 44.1 kHz must WORK, equal to its mono mix resampled to 16 kHz (written as float: exact)
    stereo = write_wav(wav / "stereo.wav", seconds=0.4, sr=44100, channels=2, seed=9)
    decoded = sf.read(stereo, dtype="float32", always_2d=True)[0].mean(axis=1, dtype=np.float32)
    mono = soxr.resample(np.ascontiguousarray(decoded), 44100, SR, quality="HQ")
    sf.write(wav / "stereo_mono16k.wav", mono, SR, subtype="FLOAT")
    (wav / "truncated.wav").write_bytes(paths["good0"].read_bytes()[:30])
    (wav / "zero.wav").write_bytes(b"")
    x = np.zeros(SR // 4, np.float32)
    x[[10, 20, 30]] = [np.nan, np.inf, np.nan]
    sf.write(wav / "nanwav.wav", x, SR, subtype="FLOAT")
    # E4 plain exports: TEMP 4 Hz for 100 s, IBI beats from +20 s to +59.2 s
    temp = [f"{33.0 + 0.01 * (i % 7):.2f}" for i in range(400)]
    bio = root / "bio"
    good_temp = _e4_file(bio / "TEMP.csv", temp)
    ibi = bio / "IBI.csv"
    ibi.write_text("\n".join([f"{T0:.6f}, IBI"] + [f"{20 + 0.8 * k:.6f},0.800000" for k in range(50)]) + "\n")
    bad_header = _e4_file(bio / "TEMP_badheader.csv", temp, header="start,time")
    nan_temp = list(temp)
    nan_temp[84] = nan_temp[85] = "nan"  # 21.0 s and 21.25 s: inside [20, 30)
    nan_file = _e4_file(bio / "TEMP_nan.csv", nan_temp)

    def bio_row(temp_path: str, lo: float, hi: float) -> dict:
        return {"temp": temp_path, "ibi": str(ibi), "bio_format": "e4", "bio_start": T0 + lo, "bio_end": T0 + hi}

    rows = []
    for k, i in enumerate(GOOD):
        rows.append({"id": i, "audio": str(paths[i]), "audio_hf": str(paths[i]) if k == 0 else "",
                     "text": WORDS[k], **bio_row(good_temp, 20 + k, 30 + k)})
    rows.append({"id": "stereo", "audio": str(stereo), "audio_hf": str(stereo), "text": WORDS[4]})
    for i in ("truncated", "zero", "missing", "nanwav"):
        rows.append({"id": i, "audio": str(wav / f"{i}.wav"), "text": WORDS[5]})
    rows.append({"id": "no_text", "audio": str(paths["good1"]), "text": ""})  # no transcript: absent
    rows.append({"id": "blank", "text": "   \t "})  # a transcript that is empty once cleaned
    rows.append({"id": "bio_one_signal", "text": WORDS[6], **bio_row(good_temp, 70, 80)})  # no IBI beats there
    rows.append({"id": "bio_badheader", "text": WORDS[6], **bio_row(bad_header, 20, 30)})
    rows.append({"id": "bio_nan", "text": WORDS[7], **bio_row(nan_file, 20, 30)})
    rows.append({"id": "bio_none", "text": WORDS[7], **bio_row(good_temp, 200, 210)})
    for k, row in enumerate(rows):
        row.update(label="happy" if k % 2 == 0 else "sad", group=f"g{k % 3}", split="train")
    matrix_csv = write_manifest(root / "matrix.csv", rows)
    clean_rows = [dict(r) for r in rows if r["id"] in GOOD or r["id"] == "stereo"]
    for r in clean_rows:
        if r["id"] == "stereo":
            r["audio"] = r["audio_hf"] = str(wav / "stereo_mono16k.wav")
    clean_csv = write_manifest(root / "clean.csv", clean_rows)

    features = {
        "audio": {"encoder": "logmel", "sample_rate": SR, "n_mels": 16},
        "audio_hf": {"encoder": "hf-audio", "model": str(tiny_wav2vec2(root / "w2v", "layer")), "column": "audio_hf"},
        "text": {"encoder": "hf-text", "model": str(build_bert(root / "bert")), "max_batch": 1},
        "bio": {"encoder": "e4", "signals": ["temp", "ibi"]},
    }

    def config(name: str, csv: Path, **dataset) -> Path:
        data = {"dataset": {"name": "generic", "manifest": str(csv), "corpus": name, **dataset},
                "cache": {"root": str(root / "cache"), "dtype": "float32", "shard_size": 4},
                "features": features, "extract": {"device": "cpu", "prefetch": 2, "io_threads": 2},
                "train": {"model": "unimodal", "modalities": ["bio"], "epochs": 1, "plots": False, "device": "cpu"},
                "output": str(root / "runs")}
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return {"root": root, "matrix": config("matrix", matrix_csv, missing_files="record"),
            "strict": config("strict", matrix_csv), "clean": config("clean", clean_csv), "rows": rows}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    built = _build_matrix(tmp_path_factory.mktemp("matrix"))
    built["first"] = invoke("extract", "-c", built["matrix"])  # --max-failures defaults to 0
    return built


def _failures(config_path: Path, modality: str) -> dict[str, dict]:
    path = encoder_dir(config_path, modality) / "failures.jsonl"
    return {x["id"]: x for x in map(json.loads, path.read_text().splitlines())}


def test_every_bad_input_is_a_recorded_failure_with_a_clear_reason(matrix):
    first = matrix["first"]
    assert first.exit_code == 1, first.output  # failures exist, --max-failures 0
    audio_dir = encoder_dir(matrix["matrix"], "audio")
    assert f"error: audio: 4 of 10 samples failed (max failures 0); see {audio_dir / 'failures.jsonl'}" in first.output
    assert "error: bio: 3 of 8 samples failed" in first.output and "error: text: 1 of 14 samples failed" in first.output
    assert "error: audio_hf" not in first.output  # its two clips (one stereo 44.1 kHz) worked
    for modality, expected in EXPECTED_FAILURES.items():
        got = _failures(matrix["matrix"], modality)
        assert sorted(got) == sorted(expected), modality
        for sample_id, (stage, text) in expected.items():
            assert got[sample_id]["stage"] == stage, (modality, got[sample_id])
            assert text in got[sample_id]["message"], (modality, got[sample_id]["message"])
            assert got[sample_id]["error"] == "SampleError" and "traceback" not in got[sample_id]
    missing = _failures(matrix["matrix"], "audio")["missing"]["message"]
    assert str(matrix["root"] / "wav" / "missing.wav") in missing  # the full path
    # stored rows: failed samples are marked failed, an empty transcript cell is simply absent
    text = FeatureStore.for_config(load_config(matrix["matrix"]), "text").get(["blank", "no_text", "good0"])
    assert text.failed.tolist() == [True, False, False] and text.present.tolist() == [False, False, True]


def test_good_samples_equal_a_clean_corpus_and_stereo_equals_its_mono_16k_mix(matrix):
    clean = invoke("extract", "-c", matrix["clean"])
    assert clean.exit_code == 0, clean.output
    bad_cfg, clean_cfg = load_config(matrix["matrix"]), load_config(matrix["clean"])
    for modality, ids in {"audio": GOOD + ["stereo"], "audio_hf": ["good0", "stereo"], "text": GOOD + ["stereo"],
                          "bio": GOOD}.items():
        got = FeatureStore.for_config(bad_cfg, modality).get(ids)
        ref = FeatureStore.for_config(clean_cfg, modality).get(ids)
        assert got.present.all() and ref.present.all(), modality
        for name, value in got.arrays.items():
            for j in range(len(ids)):
                # the two corpora batch the good clips with different neighbours, so multi-threaded
                # float32 matmuls may round differently (~1e-7): equal up to float32 rounding
                np.testing.assert_allclose(np.asarray(value[j]), np.asarray(ref[name][j]), rtol=1e-5, atol=1e-6,
                                           err_msg=f"{modality} {name}")
    # the stereo clip really went through logmel as 16 kHz mono: its frame count is the mono file's
    frames = FeatureStore.for_config(bad_cfg, "audio").get(["stereo"])["frames"][0]
    assert frames.shape == (int(np.ceil(len(sf.read(matrix["root"] / "wav" / "stereo_mono16k.wav")[0]) / 160)), 16)


def test_a_signal_without_rows_is_masked_not_failed(matrix):
    batch = FeatureStore.for_config(load_config(matrix["matrix"]), "bio").get(["bio_one_signal", "good0"])
    assert batch.present.tolist() == [True, True]
    assert batch["available"].tolist() == [[True, False], [True, True]]
    names = FeatureStore.for_config(load_config(matrix["matrix"]), "bio").output("pooled").attrs["names"]
    ibi = [k for k, n in enumerate(names) if n.startswith("ibi_")]
    assert (batch["pooled"][0, ibi] == 0).all() and (batch["pooled"][1, ibi] != 0).any()


@pytest.mark.parametrize("limit,code", [("0", 1), ("3", 1), ("4", 0), ("0.3", 1), ("0.4", 0)])
def test_exit_code_follows_max_failures(matrix, limit, code):
    # per modality: audio 4 of 10, bio 3 of 8, text 1 of 14 failed; 0.4 x 10 = 4 >= 4, 0.3 x 10 = 3 < 4
    result = invoke("extract", "-c", matrix["matrix"], "--max-failures", limit)
    assert result.exit_code == code, result.output
    assert "0 shard(s) to extract" in result.output  # nothing redone: only the verdict changes


def test_missing_files_error_is_the_default_and_names_the_row(matrix):
    result = invoke("extract", "-c", matrix["strict"])
    assert result.exit_code == 2
    row = next(k for k, r in enumerate(matrix["rows"]) if r["id"] == "missing") + 2
    assert (f"column 'audio' names missing file(s): row {row} (id='missing', "
            f"audio='{matrix['root'] / 'wav' / 'missing.wav'}')") in result.output
    assert not (matrix["root"] / "cache" / "strict").exists()  # refused before any work
    notes = invoke("manifest", "-c", matrix["matrix"])  # record: kept, and the notes say so
    assert notes.exit_code == 0 and f"column 'audio' names 1 missing file(s), kept" in notes.output


def test_duplicate_id_is_one_clear_manifest_error(tmp_path):
    paths = write_wavs(tmp_path / "wav", ["a", "b"])
    csv = write_manifest(tmp_path / "dup.csv", [{"id": "a", "audio": str(paths["a"])},
                                                {"id": "b", "audio": str(paths["b"])},
                                                {"id": "a", "audio": str(paths["b"])}])
    config = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache")
    result = invoke("extract", "-c", config)
    assert result.exit_code == 2
    assert (f"error: {csv}: column 'id' has duplicate values: row 2 (id='a', id='a'); row 4 (id='a', id='a')"
            in result.output)
    assert not (tmp_path / "cache").exists()


def test_label_outside_the_classes_stops_training_with_the_label(matrix):
    result = invoke("train", "-c", matrix["matrix"], "--set", "train.classes=[happy]", "--quiet")
    assert result.exit_code == 2 and "label(s) ['sad'] are not among the classes" in result.output


# ==============================================================================================
# KEMDy20 transcripts: UTF-8 and cp949 both decode; undecodable bytes are a recorded skip
# ==============================================================================================

def test_kemdy20_transcript_encodings_and_skipped_csv(tmp_path):
    root = tmp_path / "KEMDy20_v1_1"
    write_kemdy20(root)
    wav = root / "wav"
    utf8 = wav / "Session01" / "Sess01_script01_User002M_001.txt"
    utf8.write_bytes("n/ 아 친구들도? l/\n".encode("utf-8"))  # UTF-8 where the release has cp949
    cp949 = wav / "Session01" / "Sess01_script01_User002M_002.txt"  # left as the release writes it
    broken = wav / "Session02" / "Sess02_script01_User004M_001.txt"
    broken.write_bytes(b"\xc7\xd1\xff\n")  # neither UTF-8 nor cp949
    config = tmp_path / "k.yaml"
    config.write_text(yaml.safe_dump({"dataset": {"name": "kemdy20", "root": str(root), "n_val_sessions": 1, "k": 2},
                                      "cache": {"root": str(tmp_path / "cache")}}))
    result = invoke("manifest", "-c", config)
    assert result.exit_code == 0, result.output
    assert "note: transcripts: 9 cp949, 1 UTF-8/ASCII" in result.output
    manifest = pd.read_csv(tmp_path / "cache" / "kemdy20" / "manifest.csv", keep_default_na=False).set_index("id")
    assert manifest.loc["Sess01_script01_User002M_001", "text"] == "아 친구들도?"
    assert manifest.loc["Sess01_script01_User002M_002", "text"] == "그건 좀 1시에"
    assert cp949.read_bytes().decode("cp949").startswith("c/ 그건")
    assert "Sess02_script01_User004M_001" not in manifest.index
    skipped = pd.read_csv(tmp_path / "cache" / "kemdy20" / "skipped.csv", keep_default_na=False).set_index("id")
    assert skipped.loc["Sess02_script01_User004M_001", "reason"] == "undecodable transcript"
    assert skipped.loc["Sess02_script01_User004M_001", "source"] == str(broken)  # names the file
    assert skipped.loc["Sess03_script01_User006F_002", "reason"] == "label outside class set"
    assert skipped.loc["Sess03_script01_User006F_002", "source"].endswith("annotation/Sess03_eval.csv")
    assert not any("\ufffd" in t for t in manifest["text"])  # no replacement characters anywhere


# ==============================================================================================
# 4. `mer extract --wait` waits for the holder, then succeeds on a consistent cache
# ==============================================================================================

def test_wait_blocks_until_the_first_extract_finishes_then_succeeds(tmp_path):
    csv, ids = make_corpus(tmp_path / "corpus", 9)
    hold, trace, loads = tmp_path / "hold", tmp_path / "trace.txt", tmp_path / "loads.txt"
    features = {"audio": {"encoder": "kit.toy", "hold": str(hold), "hold_after": 0, "trace": str(trace),
                          "load_log": str(loads)}}
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", shard_size=3, features=features)
    hold.touch()
    outcome: dict = {}

    def first() -> None:  # another writer: a separate open file description, so a real flock conflict
        try:
            outcome["report"] = extract(load_config(config_path), progress=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread below
            outcome["error"] = exc

    holder = threading.Thread(target=first)
    holder.start()
    try:
        wait_for(loads.exists, what="the first extract to load its encoder (it now holds the lock)")
        release = threading.Timer(1.5, hold.unlink)
        release.start()
        start = time.monotonic()
        second = invoke("extract", "-c", config_path, "--wait")
        waited = time.monotonic() - start
    finally:
        hold.unlink(missing_ok=True)
        holder.join(120)
    if "error" in outcome:
        raise outcome["error"]
    assert second.exit_code == 0, second.output
    assert f"another mer extract (pid {os.getpid()} on " in second.output and "waiting (--wait)" in second.output
    assert waited >= 1.4
    assert "3 complete shard(s) verified, 0 shard(s) to extract" in second.output
    assert outcome["report"].modalities["audio"].shards_extracted == 3
    assert len(trace.read_text().splitlines()) == 9  # every sample encoded once, by the first run only
    assert invoke("cache", "verify", "--root", tmp_path / "cache").exit_code == 0
    assert FeatureStore.for_config(load_config(config_path), "audio").get(ids).present.all()


# ==============================================================================================
# 5. `mer ablate` killed by SIGKILL after its first finished cell, then re-run
# ==============================================================================================

def test_ablate_killed_after_a_cell_resumes_to_the_uninterrupted_table(tmp_path):
    from kit.train_corpus import extract_all
    from kit.train_corpus import make_corpus as make_train_corpus

    from mer.ablate import ablate

    path, _ = make_train_corpus(tmp_path / "data", n=48, dims={"text": 4},
                                train={"model": "unimodal", "epochs": 3, "plots": False})
    extract_all(path)
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"model": ["unimodal"], "seeds": [0, 1, 2], "train.lr": [0.01]}))
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.Popen([sys.executable, "-m", "mer", "ablate", "-c", str(path), "-g", str(grid), "--out", str(out),
                             "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: any(out.glob("cells/*/seed*/result.json")) or proc.poll() is not None,
                 what="the first finished cell")
    finally:
        proc.send_signal(signal.SIGKILL)
        output, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, output
    finished = len(list(out.glob("cells/*/seed*/result.json")))
    assert 1 <= finished < 3 and not (out / "ablation.csv").exists()

    lines: list[str] = []
    _, resumed = ablate(str(path), str(grid), out=str(out), progress=False, log=lines.append)
    assert f"{finished} finished before, {3 - finished} to run" in lines[0]
    _, reference = ablate(str(path), str(grid), out=str(tmp_path / "ref"), progress=False, log=lambda s: None)
    table = pd.read_csv(out / "ablation.csv", keep_default_na=False)
    ref = pd.read_csv(tmp_path / "ref" / "ablation.csv", keep_default_na=False)
    assert len(table) == 3 and (table["status"] == "done").all()
    pd.testing.assert_frame_equal(table.drop(columns="run_dir"), ref.drop(columns="run_dir"))
    assert [Path(p).relative_to(out) for p in table["run_dir"]] == [Path(p).relative_to(tmp_path / "ref")
                                                                      for p in ref["run_dir"]]
