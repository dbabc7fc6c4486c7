"""``mer extract``: values, determinism, resume after SIGKILL, growth, corruption, locking,
bad input, the distributed path and the no-op re-run, with the test-only toy encoder
(``tests/kit/toy.py``) and, once, the real logmel encoder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from kit.toy_corpus import make_corpus, write_config, write_manifest, write_wavs
from kit.toy import ToyEncoder, toy_features

from mer.pipeline.cache import sha256_file
from mer.cli import cli
from mer.config import load_config
from mer.pipeline.extract import extract
from mer.pipeline.store import FeatureStore
from kit.paths import TESTS



def encoder_dir(config_path: Path, modality: str = "audio") -> Path:
    from mer.features.registry import build_encoder

    config = load_config(config_path)
    key = build_encoder(config.features[modality]).key()
    return Path(config.cache.root) / config.corpus / modality / key


def shard_hashes(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.glob("shard-*.h5"))}


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name)


def reference(path: Path) -> dict[str, np.ndarray]:
    data, _ = sf.read(path, dtype="float64", always_2d=True)
    return toy_features(data.mean(axis=1), 400)


def f16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(np.float16).astype(np.float32)


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("MER_CRASH_AT", None)
    env.update(extra)
    return env


def start_extract(config_path: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mer", "extract", "-c", str(config_path)],
                            env=subprocess_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for(condition, timeout: float = 90.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def kill(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=30)
    return out


@pytest.fixture
def corpus(tmp_path):
    csv, ids = make_corpus(tmp_path / "corpus", 12)
    config_path = write_config(tmp_path / "config.yaml", csv, tmp_path / "cache", shard_size=4)
    return csv, ids, config_path


# --- values, no-op, determinism ----------------------------------------------------------------

def test_extract_values_then_noop_without_loading(corpus, tmp_path):
    csv, ids, config_path = corpus
    config = load_config(config_path)
    loads = ToyEncoder.loads
    report = extract(config, progress=False)
    m = report.modalities["audio"]
    assert (m.shards_extracted, m.shards_skipped, m.samples_extracted, m.failures) == (3, 0, 12, 0)
    assert m.loaded and m.complete and ToyEncoder.loads == loads + 1  # loaded once for 3 shards
    directory = Path(m.dir)
    assert sorted(p.name for p in directory.glob("shard-*")) == [
        f"shard-0000{i}.{ext}" for i in range(3) for ext in ("h5", "json")]
    assert not (directory / "plan.json").exists() and leftovers(directory) == []
    spec = json.loads((directory / "spec.json").read_text())
    assert spec["status"] == "complete" and spec["counts"] == {"shards": 3, "samples": 12, "failures": 0,
                                                             "present_failures": 0}
    assert spec["encoder"]["options"]["frame"] == 400 and "delay" not in spec["encoder"]["options"]
    assert spec["manifest"]["fingerprint"] == report.fingerprint
    assert {"torch", "numpy", "h5py", "mer", "transformers"} <= set(spec["versions"])
    assert (directory / "failures.jsonl").read_text() == ""

    store = FeatureStore.for_config(config, "audio")
    ask = ids[::-1]
    batch = store.get(ask)
    assert batch.present.all()
    for j, sample_id in enumerate(ask):
        ref = reference(Path(csv.parent / "wav" / f"{sample_id}.wav"))
        np.testing.assert_array_equal(batch["stats"][j], f16(ref["stats"]))
        np.testing.assert_array_equal(batch["frames"][j], f16(ref["frames"]))
        assert batch["length"][j, 0] == ref["length"][0]

    before = shard_hashes(directory)
    result = invoke("extract", "-c", str(config_path))
    assert result.exit_code == 0, result.output
    assert "3 complete shard(s) verified, 0 shard(s) to extract" in result.output
    assert "loading" not in result.output and ToyEncoder.loads == loads + 1  # no model load
    assert shard_hashes(directory) == before


def test_two_fresh_runs_are_byte_identical(tmp_path):
    csv, _ = make_corpus(tmp_path / "corpus", 10)
    a = write_config(tmp_path / "a.yaml", csv, tmp_path / "cache_a", shard_size=3)
    b = write_config(tmp_path / "b.yaml", csv, tmp_path / "cache_b", shard_size=3,
                     extract={"prefetch": 0, "io_threads": 0})  # no prefetch threads: same bytes
    extract(load_config(a), progress=False)
    extract(load_config(b), progress=False)
    ha, hb = shard_hashes(encoder_dir(a)), shard_hashes(encoder_dir(b))
    assert len(ha) == 4 and ha == hb
    for name in ha:
        assert (encoder_dir(a) / name).read_bytes() == (encoder_dir(b) / name).read_bytes()


def test_float32_cache_keeps_every_bit(tmp_path):
    csv, ids = make_corpus(tmp_path / "corpus", 3)
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", dtype="float32")
    config = load_config(config_path)
    extract(config, progress=False)
    batch = FeatureStore.for_config(config, "audio").get(ids)
    for j, sample_id in enumerate(ids):
        ref = reference(csv.parent / "wav" / f"{sample_id}.wav")
        np.testing.assert_array_equal(batch["stats"][j], ref["stats"].astype(np.float32))
    # the cache dtype cannot change under existing shards
    result = invoke("extract", "-c", str(config_path), "--set", "cache.dtype=float16")
    assert result.exit_code == 2 and "cache.dtype=float32" in result.output


def test_modalities_selection_and_a_modality_with_no_present_sample(tmp_path):
    csv, ids = make_corpus(tmp_path / "corpus", 5)
    features = {"audio": {"encoder": "kit.toy"},
                "other": {"encoder": "kit.toy", "column": "clip", "frame": 200}}  # no row has 'clip'
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", shard_size=4, features=features)
    bad = invoke("extract", "-c", str(config_path), "--modality", "video")
    assert bad.exit_code == 2 and "no encoder configured for modality 'video'" in bad.output
    only = extract(load_config(config_path), ["other"], progress=False)
    assert list(only.modalities) == ["other"] and not encoder_dir(config_path, "audio").exists()
    m = only.modalities["other"]
    assert (m.present, m.shards_extracted, m.failures, m.complete) == (0, 0, 0, True)
    spec = json.loads((Path(m.dir) / "spec.json").read_text())
    assert spec["status"] == "complete" and [o["name"] for o in spec["outputs"]] == ["stats", "frames", "length"]
    batch = FeatureStore(m.dir).get(ids[:2])
    assert not batch.present.any() and not batch.failed.any() and batch["stats"].shape == (2, 4)
    both = extract(load_config(config_path), progress=False)
    assert both.modalities["audio"].shards_extracted == 2 and both.modalities["other"].shards_extracted == 0
    assert encoder_dir(config_path, "other").name != encoder_dir(config_path, "audio").name


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_prepare_runs_at_most_prefetch_batches_ahead(prefetch):
    """While batch i is handed to the model, prepare has started on batches <= i + prefetch only."""
    import threading

    from mer.pipeline.shard_task import _prepared_batches

    started: list[str] = []
    lock = threading.Lock()

    class Recorder:
        def prepare(self, row):
            with lock:
                started.append(row["id"])
            time.sleep(0.002)
            return row["id"].upper()

    batches = [[f"b{b}s{k}" for k in range(3)] for b in range(6)]
    rows = {i: {"id": i} for batch in batches for i in batch}
    seen = []
    for i, (batch, prepared) in enumerate(_prepared_batches(Recorder(), batches, rows, prefetch, io_threads=2)):
        time.sleep(0.01)  # the "model" is slow: prefetch threads would run ahead if unbounded
        with lock:
            allowed = {x for b in batches[:i + 1 + prefetch] for x in b}
            assert set(started) <= allowed
        assert batch == batches[i] and prepared == {x: (True, x.upper()) for x in batch}
        seen.append(batch)
    assert seen == batches and sorted(started) == sorted(rows)


# --- growth, corruption, retry ------------------------------------------------------------------

def test_manifest_growth_writes_only_new_shards(tmp_path):
    csv, ids = make_corpus(tmp_path / "corpus", 8)
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", shard_size=4)
    extract(load_config(config_path), progress=False)
    directory = encoder_dir(config_path)
    old = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.glob("shard-*")}
    # five new samples, some sorting before the old ids: they still go to new shards
    new_ids = ["aaa_new", "utt003b", "zzz1", "zzz2", "zzz3"]
    paths = write_wavs(tmp_path / "corpus" / "wav2", new_ids, seed=7)
    import pandas as pd

    rows = pd.read_csv(csv, dtype=str, keep_default_na=False).to_dict("records")
    rows += [{"id": i, "label": "sad", "group": "spk9", "split": "train", "audio": str(paths[i])} for i in new_ids]
    write_manifest(csv, rows)
    report = extract(load_config(config_path), progress=False)
    m = report.modalities["audio"]
    assert (m.shards_extracted, m.shards_skipped, m.samples_extracted) == (2, 2, 5)
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in directory.glob("shard-0000[01].*")} == old
    assert json.loads((directory / "shard-00002.json").read_text())["ids"] == sorted(new_ids)[:4]
    assert json.loads((directory / "shard-00003.json").read_text())["ids"] == ["zzz3"]
    batch = FeatureStore(directory).get(new_ids + ids)
    assert batch.present.all()
    np.testing.assert_array_equal(batch["stats"][0], f16(reference(paths["aaa_new"])["stats"]))


def test_corrupt_shard_is_named_and_only_it_is_redone(corpus):
    csv, ids, config_path = corpus
    extract(load_config(config_path), progress=False)
    directory = encoder_dir(config_path)
    hashes = shard_hashes(directory)
    untouched = {p.name: p.stat().st_mtime_ns for p in directory.glob("shard-0000[02].*")}
    victim = directory / "shard-00001.h5"
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 3] ^= 0x5A
    victim.write_bytes(bytes(raw))
    result = invoke("cache", "verify", "--root", str(directory.parents[2]))
    assert result.exit_code == 1
    assert f"CORRUPT {victim}: expected sha256 {hashes['shard-00001.h5']}" in result.output
    again = invoke("extract", "-c", str(config_path))
    assert again.exit_code == 0, again.output
    assert "shard-00001.h5 is not complete: sha256 mismatch" in again.output
    assert "2 complete shard(s) verified, 1 shard(s) to extract (4 samples)" in again.output
    assert shard_hashes(directory) == hashes  # the redone shard is byte-identical to the original
    assert {p.name: p.stat().st_mtime_ns for p in directory.glob("shard-0000[02].*")} == untouched
    assert invoke("cache", "verify", "--root", str(directory.parents[2])).exit_code == 0


# --- bad input ----------------------------------------------------------------------------------

def _bad_corpus(tmp_path: Path) -> tuple[Path, list[str], dict[str, Path]]:
    """Good WAVs plus a missing file, a zero-length file and a truncated header, in a column the
    generic adapter does not check (files can also vanish between manifest and extraction)."""
    good = [f"good{k}" for k in range(6)]
    paths = write_wavs(tmp_path / "wav", good)
    (tmp_path / "wav" / "empty.wav").write_bytes(b"")
    (tmp_path / "wav" / "truncated.wav").write_bytes(paths["good0"].read_bytes()[:30])
    clips = {**{i: str(p) for i, p in paths.items()}, "missing": str(tmp_path / "wav" / "missing.wav"),
             "empty": str(tmp_path / "wav" / "empty.wav"), "truncated": str(tmp_path / "wav" / "truncated.wav")}
    rows = [{"id": i, "label": "happy", "clip": c} for i, c in clips.items()]
    rows.append({"id": "no_clip", "label": "sad", "clip": ""})  # modality absent: not a failure
    csv = write_manifest(tmp_path / "bad.csv", rows)
    return csv, good, paths


def test_bad_inputs_are_recorded_and_max_failures_sets_exit_code(tmp_path):
    csv, good, paths = _bad_corpus(tmp_path)
    features = {"audio": {"encoder": "kit.toy", "column": "clip"}}
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", shard_size=4, features=features)
    result = invoke("extract", "-c", str(config_path))
    directory = encoder_dir(config_path)
    assert result.exit_code == 1
    assert f"audio: 3 of 9 samples failed (max failures 0); see {directory / 'failures.jsonl'}" in result.output
    lines = [json.loads(x) for x in (directory / "failures.jsonl").read_text().splitlines()]
    by_id = {x["id"]: x for x in lines}
    assert sorted(by_id) == ["empty", "missing", "truncated"]
    assert by_id["missing"]["stage"] == "read" and "missing.wav: audio file not found" in by_id["missing"]["message"]
    assert by_id["empty"]["stage"] == "decode" and "empty.wav" in by_id["empty"]["message"]
    assert by_id["truncated"]["stage"] == "decode" and "truncated.wav" in by_id["truncated"]["message"]
    assert all(x["modality"] == "audio" and x["error"] == "SampleError" and x["shard"].startswith("shard-")
               for x in lines)
    # the good samples equal a clean run's values; bad ones are failed, the absent one missing
    batch = FeatureStore(directory).get(good + ["missing", "no_clip"])
    assert batch.present.tolist() == [True] * 6 + [False, False]
    assert batch.failed.tolist() == [False] * 6 + [True, False]
    for j, sample_id in enumerate(good):
        np.testing.assert_array_equal(batch["stats"][j], f16(reference(paths[sample_id])["stats"]))
    # nothing left to do, but failures still count against the threshold
    assert invoke("extract", "-c", str(config_path), "--max-failures", "3").exit_code == 0
    assert invoke("extract", "-c", str(config_path), "--max-failures", "0.5").exit_code == 0  # 3 <= 4.5
    assert invoke("extract", "-c", str(config_path), "--max-failures", "0.2").exit_code == 1  # 3 > 1.8


def test_failing_batch_is_retried_per_sample_and_bugs_are_recorded(tmp_path):
    csv, ids = make_corpus(tmp_path / "corpus", 8)
    features = {"audio": {"encoder": "kit.toy", "batch": 4, "fail_encode_ids": ["utt002"],
                          "bug_prepare_ids": ["utt005"]}}
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", shard_size=8, features=features)
    config = load_config(config_path)
    report = extract(config, progress=False, max_failures=2)
    m = report.modalities["audio"]
    assert m.failures == 2 and not m.exceeded
    lines = {x["id"]: x for x in map(json.loads, (Path(m.dir) / "failures.jsonl").read_text().splitlines())}
    assert sorted(lines) == ["utt002", "utt005"]
    assert lines["utt002"]["stage"] == "encode" and lines["utt002"]["error"] == "RuntimeError"
    assert "simulated model failure" in lines["utt002"]["message"] and "traceback" in lines["utt002"]
    assert lines["utt005"]["stage"] == "prepare" and lines["utt005"]["error"] == "KeyError"
    batch = FeatureStore(m.dir).get(ids)
    assert batch.failed.tolist() == [i in ("utt002", "utt005") for i in ids]
    for j, sample_id in enumerate(ids):  # batch-mates of the bad sample were encoded one at a time
        if batch.present[j]:
            np.testing.assert_array_equal(batch["stats"][j], f16(reference(csv.parent / "wav" / f"{sample_id}.wav")["stats"]))


def test_memory_error_stops_the_run_and_leaves_a_consistent_cache(tmp_path):
    csv, ids = make_corpus(tmp_path / "corpus", 10)
    features = {"audio": {"encoder": "kit.toy", "memory_error_ids": ["utt006"]}}
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", shard_size=4, features=features)
    with pytest.raises(MemoryError, match="simulated"):
        extract(load_config(config_path), progress=False)
    directory = encoder_dir(config_path)
    assert sorted(p.name for p in directory.glob("shard-*.h5")) == ["shard-00000.h5"]  # utt006 is in shard 1
    assert leftovers(directory) == [] and (directory / "plan.json").exists()
    spec = json.loads((directory / "spec.json").read_text())
    assert spec["status"] == "incomplete" and spec["counts"]["shards"] == 1
    # the lock was released; without the problem the run completes the same plan
    (tmp_path / "c.yaml").write_text((tmp_path / "c.yaml").read_text().replace("utt006", "none"))
    report = extract(load_config(config_path), progress=False).modalities["audio"]
    assert (report.shards_skipped, report.shards_extracted, report.failures) == (1, 2, 0)


def test_retry_failures_redoes_only_shards_with_failures(tmp_path):
    csv, good, paths = _bad_corpus(tmp_path)
    features = {"audio": {"encoder": "kit.toy", "column": "clip"}}
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", shard_size=3, features=features)
    extract(load_config(config_path), progress=False)
    directory = encoder_dir(config_path)
    sidecars = {p.name: json.loads(p.read_text()) for p in directory.glob("shard-*.json")}
    clean = [n for n, s in sidecars.items() if not s["failures"]]
    assert clean, "expected at least one shard without failures"
    inodes = {n: (directory / n).stat().st_ino for n in clean}
    for name in ("empty", "truncated", "missing"):  # fix the files
        write_wavs(tmp_path / "fixed", [name], seed=3)[name].replace(tmp_path / "wav" / f"{name}.wav")
    plain = extract(load_config(config_path), progress=False).modalities["audio"]
    assert plain.shards_extracted == 0 and plain.failures == 3  # a plain re-run does not retry
    report = extract(load_config(config_path), progress=False, retry_failures=True).modalities["audio"]
    assert report.failures == 0 and report.shards_extracted == len(sidecars) - len(clean)
    assert {n: (directory / n).stat().st_ino for n in clean} == inodes
    assert (directory / "failures.jsonl").read_text() == ""
    assert FeatureStore(directory).get(["empty", "missing"]).present.all()


# --- crashes, locking ---------------------------------------------------------------------------

def test_sigkill_at_any_moment_then_resume_equals_uninterrupted(tmp_path):
    csv, ids = make_corpus(tmp_path / "corpus", 40)
    reference_cfg = write_config(tmp_path / "ref.yaml", csv, tmp_path / "ref_cache", shard_size=4)
    extract(load_config(reference_cfg), progress=False)
    expected = shard_hashes(encoder_dir(reference_cfg))
    assert len(expected) == 10
    trace, hold = tmp_path / "trace.txt", tmp_path / "hold"
    features = {"audio": {"encoder": "kit.toy", "batch": 3, "hold": str(hold), "hold_after": 6,
                          "trace": str(trace)}}
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", shard_size=4, features=features)
    directory = encoder_dir(config_path)
    assert directory.name == encoder_dir(reference_cfg).name  # hold/trace are speed-only: same key

    # 1. SIGKILL after the first shard is complete, in the middle of the second (2 of 4 encoded)
    hold.touch()
    proc = start_extract(config_path)
    try:
        wait_for(lambda: trace.exists() and len(trace.read_text().splitlines()) >= 6, what="6 encoded samples")
    finally:
        kill(proc)
    hold.unlink()
    assert (directory / "shard-00000.json").exists() and not (directory / "shard-00001.h5").exists()
    assert (directory / "plan.json").exists()
    # 2. killed while a shard's .tmp exists (written and fsynced, not yet renamed)
    proc = start_extract(config_path, MER_CRASH_AT="shard-tmp-written")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, out
    left = leftovers(directory)
    assert len(left) == 1 and left[0].startswith(f"shard-00001.h5.tmp-{proc.pid}-")
    # 3. killed after the .h5 is in place but before its sidecar
    proc = start_extract(config_path, MER_CRASH_AT="shard-replaced")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, out
    assert (directory / "shard-00001.h5").exists() and not (directory / "shard-00001.json").exists()
    assert leftovers(directory) == []  # run 3 removed run 2's temporary file under the lock
    # 4. the re-run completes what is left, and the result equals the uninterrupted run
    result = invoke("extract", "-c", str(config_path))
    assert result.exit_code == 0, result.output
    assert "shard-00001.h5 is not complete: no sidecar" in result.output
    assert "1 complete shard(s) verified, 9 shard(s) to extract (36 samples)" in result.output
    assert shard_hashes(directory) == expected
    for index in range(10):  # same ids per shard number as the uninterrupted run
        name = f"shard-{index:05d}.json"
        assert (json.loads((directory / name).read_text())["ids"]
                == json.loads((encoder_dir(reference_cfg) / name).read_text())["ids"])
    assert leftovers(directory) == [] and not (directory / "plan.json").exists()
    assert json.loads((directory / "spec.json").read_text())["status"] == "complete"
    assert invoke("cache", "verify", "--root", str(tmp_path / "cache")).exit_code == 0


def test_second_extract_refuses_while_first_holds_the_lock(tmp_path):
    csv, ids = make_corpus(tmp_path / "corpus", 6)
    trace, hold = tmp_path / "trace.txt", tmp_path / "hold"
    features = {"audio": {"encoder": "kit.toy", "hold": str(hold), "hold_after": 1, "trace": str(trace)}}
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", shard_size=4, features=features)
    directory = encoder_dir(config_path)
    hold.touch()
    proc = start_extract(config_path)
    try:
        wait_for(lambda: trace.exists(), what="the first encoded sample")  # it now waits, holding the lock
        result = invoke("extract", "-c", str(config_path))
        assert result.exit_code == 75
        assert f"another mer extract (pid {proc.pid} on " in result.output
        assert f"is writing {directory}; wait for it" in result.output
        hold.unlink()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            kill(proc)
    assert proc.returncode == 0, out
    assert invoke("cache", "verify", "--root", str(tmp_path / "cache")).exit_code == 0
    assert len(trace.read_text().splitlines()) == 6  # the refused run encoded nothing
    assert FeatureStore(directory).get(ids).present.all()


# --- distributed ----------------------------------------------------------------------------------

def test_local_cluster_gives_the_same_shards(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    csv, _ = make_corpus(tmp_path / "corpus", 12)
    local = write_config(tmp_path / "local.yaml", csv, tmp_path / "cache_local", shard_size=2)
    extract(load_config(local), progress=False)
    load_log = tmp_path / "loads.txt"
    features = {"audio": {"encoder": "kit.toy", "load_log": str(load_log)}}
    dist = write_config(tmp_path / "dist.yaml", csv, tmp_path / "cache_dist", shard_size=2, features=features)
    report = extract(load_config(dist), workers=2, progress=False)
    assert report.modalities["audio"].shards_extracted == 6
    assert shard_hashes(encoder_dir(dist)) == shard_hashes(encoder_dir(local))
    pids = load_log.read_text().split()
    assert len(pids) == len(set(pids)) <= 2 and str(os.getpid()) not in pids  # once per worker process
    assert json.loads((encoder_dir(dist) / "spec.json").read_text())["status"] == "complete"


# --- a real encoder -------------------------------------------------------------------------------

def test_logmel_through_the_cache_equals_direct_encoding(tmp_path):
    """The real logmel encoder, batched and prefetched through the cache (float32), equals
    encoding each sample on its own."""
    logmel = pytest.importorskip("mer.features.logmel")
    import pandas as pd
    import torch

    csv, ids = make_corpus(tmp_path / "corpus", 5)
    features = {"audio": {"encoder": "logmel", "sample_rate": 8000, "n_mels": 16}}
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", shard_size=2, dtype="float32",
                               features=features)
    config = load_config(config_path)
    report = extract(config, progress=False)
    assert report.modalities["audio"].failures == 0 and report.modalities["audio"].shards_extracted == 3
    batch = FeatureStore.for_config(config, "audio").get(ids)
    encoder = logmel.ENCODER(config.features["audio"])
    encoder.load(torch.device("cpu"))
    rows = {r["id"]: r for r in pd.read_csv(csv, dtype=str, keep_default_na=False).to_dict("records")}
    for j, sample_id in enumerate(ids):
        direct = encoder.encode([encoder.prepare(rows[sample_id])])[0]["frames"]
        assert batch["frames"][j].shape == direct.shape and direct.shape[1] == 16
        np.testing.assert_array_equal(batch["frames"][j], direct.astype(np.float32))


@pytest.mark.parametrize("cpus,io_threads,expected", [(2, 2, 2), (8, 2, 6), (16, 4, 12), (16, 8, 12), (8, 0, 8)])
def test_torch_threads_leave_at_most_a_quarter_of_the_cores_to_prefetch(monkeypatch, cpus, io_threads, expected):
    import torch

    from mer.pipeline.extract import _torch_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(cpus)
    try:
        with _torch_threads(io_threads):
            inside = torch.get_num_threads()
        assert inside == expected
        assert torch.get_num_threads() == cpus  # restored
    finally:
        torch.set_num_threads(before)
