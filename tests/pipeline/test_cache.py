"""The feature cache's format, integrity checks, plan, lock, reader and ``mer cache`` commands.

Shards here are written with the cache's own writer from hand-made outputs, so the store is
checked against values fixed in the test, independently of any encoder.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from mer.features.base import OutputSpec
from mer.pipeline import cache as cache_mod
from mer.pipeline.cache import (ScanResult, ShardProblem, ShardRecord, check_shard, make_plan, publish_shard, read_plan,
                                scan, shard_name, tmp_path, write_json, write_plan)
from mer.pipeline.cache_lock import CacheLocked, DirLock
from mer.cli import cli
from mer.pipeline.shard import (EncoderContractError, OutputProblem, assemble, convert_output, read_all, spec_to_dict,
                                write_h5)
from mer.pipeline.store import FeatureStore, Ragged, _ranges

SPECS = [
    OutputSpec("pooled", (3,), attrs={"layers": ["a", "b", "c"]}),
    OutputSpec("seq", (2,), ragged=True, attrs={"dims": ["time", "feature"]}),
    OutputSpec("count", (1,), dtype="int32"),
]


def sample_outputs(k: int) -> dict[str, np.ndarray]:
    """Deterministic per-sample outputs: sample k has a sequence of k % 4 frames (0 allowed)."""
    rng = np.random.default_rng(k)
    t = k % 4
    return {"pooled": rng.standard_normal(3), "seq": rng.standard_normal((t, 2)), "count": np.array([k], np.int32)}


def write_cache(directory: Path, shards: dict[int, list[str]], failed: set[str], cache_dtype: str = "float16",
                key: str = "toy-0123456789ab") -> dict[str, dict[str, np.ndarray]]:
    """Write shards of hand-made outputs + a spec.json; returns the raw outputs per id."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = {}
    for index, ids in shards.items():
        results = {}
        for sample_id in ids:
            raw[sample_id] = sample_outputs(int(sample_id[1:]))
            if sample_id not in failed:
                results[sample_id] = convert_output(sample_id, key, raw[sample_id], SPECS, cache_dtype)
        data = assemble(ids, results, SPECS, cache_dtype)
        final = directory / f"{shard_name(index)}.h5"
        tmp = tmp_path(final)
        write_h5(tmp, data, SPECS, {"encoder_key": key}, cache_dtype)
        failures = [{"id": i, "stage": "decode", "error": "SampleError", "message": "bad"} for i in sorted(failed & set(ids))]
        publish_shard(tmp, final, data.ids, failures)
    write_json(directory / "spec.json", {"key": key, "family": "toy", "columns": ["audio"],
                                         "outputs": [spec_to_dict(s, cache_dtype) for s in SPECS],
                                         "cache": {"dtype": cache_dtype, "shard_size": 4}, "status": "complete"})
    return raw


def stored(x: np.ndarray, dtype: str) -> np.ndarray:
    return x.astype(dtype).astype(np.float32)


# --- shard format ---------------------------------------------------------------------------

def test_shard_file_layout(tmp_path):
    directory = tmp_path / "enc"
    write_cache(directory, {0: ["s1", "s0", "s2"]}, failed={"s2"})
    shard = read_all(directory / "shard-00000.h5")
    assert shard["ids"] == ["s0", "s1", "s2"]  # sorted
    assert shard["ok"].tolist() == [True, True, False]
    assert shard["pooled"].dtype == np.float16 and shard["pooled"].shape == (3, 3)
    assert shard["count"].dtype == np.int32 and shard["count"][:, 0].tolist() == [0, 1, 0]
    values, offsets = shard["seq"]
    # s0: 0 frames, s1: 1 frame, s2 (failed): empty
    assert offsets.tolist() == [0, 0, 1, 1] and values.shape == (1, 2) and offsets.dtype == np.int64
    np.testing.assert_array_equal(shard["pooled"][2], 0)
    with h5py.File(directory / "shard-00000.h5") as f:
        assert json.loads(f["pooled"].attrs["layers"]) == ["a", "b", "c"]
        assert json.loads(f["seq"].attrs["dims"]) == ["time", "feature"]
        assert f.attrs["format"] == "mer-shard"
        assert [o["name"] for o in json.loads(f.attrs["outputs"])] == ["pooled", "seq", "count"]
    side = json.loads((directory / "shard-00000.json").read_text())
    assert side["sha256"] == hashlib.sha256((directory / "shard-00000.h5").read_bytes()).hexdigest()
    assert side["bytes"] == (directory / "shard-00000.h5").stat().st_size
    assert side["ids"] == ["s0", "s1", "s2"] and side["n"] == 3
    assert [f["id"] for f in side["failures"]] == ["s2"]


def test_shard_bytes_identical_across_time(tmp_path):
    """Same input, written a second apart: identical bytes (no timestamps anywhere in the file)."""
    results = {f"s{k}": convert_output(f"s{k}", "k", sample_outputs(k), SPECS, "float16") for k in range(5)}
    data = assemble(list(results), results, SPECS, "float16")
    write_h5(tmp_path / "a.h5", data, SPECS, {"encoder_key": "k"}, "float16")
    time.sleep(1.1)  # HDF5 timestamps have a resolution of one second
    write_h5(tmp_path / "b.h5", data, SPECS, {"encoder_key": "k"}, "float16")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()


def test_convert_output_contract_and_problems():
    good = sample_outputs(5)
    with pytest.raises(EncoderContractError, match="declares"):
        convert_output("x", "k", {"pooled": good["pooled"]}, SPECS, "float16")
    with pytest.raises(EncoderContractError, match=r"shape \(4,\)"):
        convert_output("x", "k", {**good, "pooled": np.zeros(4)}, SPECS, "float16")
    with pytest.raises(EncoderContractError, match=r"\(T, 2\)"):
        convert_output("x", "k", {**good, "seq": np.zeros(2)}, SPECS, "float16")
    with pytest.raises(OutputProblem, match="non-finite") as info:
        convert_output("x", "k", {**good, "pooled": np.array([0.0, np.nan, 1.0])}, SPECS, "float16")
    assert info.value.stage == "output"
    with pytest.raises(OutputProblem, match="float16 max") as info:
        convert_output("x", "k", {**good, "pooled": np.array([0.0, 1e5, 1.0])}, SPECS, "float16")
    assert info.value.stage == "store"
    # the same value fits float32
    out = convert_output("x", "k", {**good, "pooled": np.array([0.0, 1e5, 1.0])}, SPECS, "float32")
    assert out["pooled"].dtype == np.float32 and out["pooled"][1] == 1e5


# --- integrity --------------------------------------------------------------------------------

def test_check_shard_detects_every_kind_of_damage(tmp_path):
    directory = tmp_path / "enc"
    write_cache(directory, {0: ["s0", "s1"], 1: ["s2", "s3"], 2: ["s4"], 3: ["s5"]}, failed=set())
    assert isinstance(check_shard(directory, 0), ShardRecord)
    # flip one byte in the middle of shard 1: same size, different hash
    path = directory / "shard-00001.h5"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    problem = check_shard(directory, 1)
    assert isinstance(problem, ShardProblem) and problem.kind == "corrupt" and problem.ids == ["s2", "s3"]
    assert problem.actual == hashlib.sha256(bytes(raw)).hexdigest() and problem.expected != problem.actual
    # without verification only the size is checked: the flip goes unnoticed (readers)
    assert isinstance(check_shard(directory, 1, verify=False), ShardRecord)
    (directory / "shard-00002.json").unlink()
    assert check_shard(directory, 2).kind == "no-sidecar"
    with open(directory / "shard-00003.h5", "ab") as fh:
        fh.write(b"x")
    assert check_shard(directory, 3).kind == "size"
    state = scan(directory)
    assert sorted(state.complete) == [0] and sorted(state.problems) == [1, 2, 3]


# --- the plan -------------------------------------------------------------------------------

def _record(index: int, ids: list[str], failed: tuple[str, ...] = ()) -> ShardRecord:
    return ShardRecord(index, ids, [{"id": i} for i in failed], "sha", 1)


def test_plan_fresh_is_sorted_chunks():
    plan = make_plan(["d", "a", "c", "b", "e"], 2, ScanResult(), {})
    assert plan.pending == {0: ["a", "b"], 1: ["c", "d"], 2: ["e"]}
    assert plan.remove == []


def test_plan_resumes_out_of_order_with_previous_plan():
    """Shards 0 and 2 finished (distributed, out of order): 1 and 3 are re-planned exactly."""
    previous = {0: ["a", "b"], 1: ["c", "d"], 2: ["e", "f"], 3: ["g"]}
    state = ScanResult(complete={0: _record(0, ["a", "b"]), 2: _record(2, ["e", "f"])})
    plan = make_plan("abcdefg", 2, state, previous)
    assert plan.pending == {1: ["c", "d"], 3: ["g"]}
    # without the saved plan, the leftovers are chunked anew after the highest shard
    assert make_plan("abcdefg", 2, state, {}).pending == {3: ["c", "d"], 4: ["g"]}


def test_plan_growth_corruption_retry_and_shrink():
    state = ScanResult(complete={0: _record(0, ["a", "b"]), 1: _record(1, ["c", "d"], failed=("d",))},
                       problems={2: ShardProblem(2, Path("x"), "corrupt", "", ids=["e", "f"])})
    # growth: new ids after the highest shard; the corrupt shard keeps its number and ids
    plan = make_plan("abcdefghi", 2, state, {})
    assert plan.pending == {2: ["e", "f"], 3: ["g", "h"], 4: ["i"]}
    assert plan.remove == [2] and sorted(plan.complete) == [0, 1]
    # retry: the shard holding a failure is redone with the same number
    plan = make_plan("abcdef", 2, state, {}, retry_failures=True)
    assert plan.pending == {1: ["c", "d"], 2: ["e", "f"]} and plan.remove == [1, 2]
    # shrink: ids that left the manifest are neither planned nor an error
    plan = make_plan("abc", 2, state, {})
    assert plan.pending == {} and plan.remove == [2]


def test_plan_file_roundtrip(tmp_path):
    plan = make_plan("abcde", 2, ScanResult(), {})
    write_plan(tmp_path, plan)
    assert read_plan(tmp_path) == plan.pending
    (tmp_path / "plan.json").write_text("{broken")
    assert read_plan(tmp_path) == {}


# --- lock ---------------------------------------------------------------------------------

def test_lock_refuses_names_holder_and_is_not_blocked_by_a_stale_file(tmp_path):
    directory = tmp_path / "enc"
    directory.mkdir()
    # a stale lock file (its writer died): no flock on it, so it does not block
    (directory / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "started": "yesterday"}))
    with DirLock(directory):
        holder = json.loads((directory / ".lock").read_text())
        assert holder["pid"] == os.getpid()
        with pytest.raises(CacheLocked, match=f"pid {os.getpid()} on ") as info:
            DirLock(directory).acquire()  # a second open file description conflicts even in-process
        assert str(directory) in str(info.value)
        with pytest.raises(CacheLocked):
            DirLock(directory, shared=True).acquire()
    with DirLock(directory):  # released: free again
        pass


def test_lock_wait_blocks_until_released(tmp_path):
    first = DirLock(tmp_path).acquire()
    messages = []
    threading.Timer(0.3, first.release).start()
    start = time.monotonic()
    with DirLock(tmp_path, wait=True, poll_seconds=0.05, on_wait=messages.append):
        waited = time.monotonic() - start
    assert waited >= 0.25 and len(messages) == 1 and "waiting" in messages[0]


def test_readers_share_the_lock_and_a_writer_is_told_so(tmp_path):
    with DirLock(tmp_path, shared=True), DirLock(tmp_path, shared=True):
        with pytest.raises(CacheLocked, match="being read") as info:
            DirLock(tmp_path).acquire()
        assert info.value.readers_only


# --- the store ------------------------------------------------------------------------------

@pytest.mark.parametrize("cache_dtype", ["float16", "float32"])
def test_store_get_aligns_arbitrary_order(tmp_path, cache_dtype):
    directory = tmp_path / "enc"
    raw = write_cache(directory, {0: ["s0", "s1", "s2", "s3"], 1: ["s4", "s5", "s6", "s7"], 2: ["s8", "s9"]},
                      failed={"s5"}, cache_dtype=cache_dtype)
    store = FeatureStore(directory)
    ask = ["s9", "nope", "s5", "s1", "s6", "s1", "s3", "s0"]
    batch = store.get(ask)
    assert batch.present.tolist() == [True, False, False, True, True, True, True, True]
    assert batch.failed.tolist() == [False, False, True, False, False, False, False, False]
    assert batch.missing.tolist() == [False, True, False, False, False, False, False, False]
    assert batch["pooled"].dtype == np.float32 and batch["pooled"].shape == (8, 3)
    assert batch["count"].dtype == np.int32
    seq = batch["seq"]
    assert isinstance(seq, Ragged) and len(seq) == 8
    for j, sample_id in enumerate(ask):
        if batch.present[j]:
            np.testing.assert_array_equal(batch["pooled"][j], stored(raw[sample_id]["pooled"], cache_dtype))
            np.testing.assert_array_equal(seq[j], stored(raw[sample_id]["seq"], cache_dtype))
            assert batch["count"][j, 0] == int(sample_id[1:])
        else:  # absent or failed: zeros / empty
            np.testing.assert_array_equal(batch["pooled"][j], 0)
            assert seq[j].shape == (0, 2)
    assert store.ids == [f"s{k}" for k in range(10)] and len(store) == 10 and "s5" in store


def test_store_each_shard_read_once(tmp_path, monkeypatch):
    directory = tmp_path / "enc"
    write_cache(directory, {0: ["s0", "s1", "s2", "s3"], 1: ["s4", "s5", "s6", "s7"]}, failed=set())
    store = FeatureStore(directory)
    opened = []
    real = h5py.File

    def counting(path, *args, **kwargs):
        opened.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr("mer.pipeline.store.h5py.File", counting)
    store.get(["s7", "s0", "s5", "s1", "s6"])
    assert sorted(opened) == ["shard-00000.h5", "shard-00001.h5"]


def test_store_ignores_incomplete_shards_and_needs_spec(tmp_path):
    directory = tmp_path / "enc"
    write_cache(directory, {0: ["s0", "s1"], 1: ["s2", "s3"]}, failed=set())
    (directory / "shard-00001.json").unlink()  # an interrupted write
    store = FeatureStore(directory)
    assert store.get(["s0", "s2"]).present.tolist() == [True, False]
    (directory / "spec.json").unlink()
    with pytest.raises(cache_mod.CacheError, match="no spec.json"):
        FeatureStore(directory)


def test_dask_array_equals_get(tmp_path):
    directory = tmp_path / "enc"
    write_cache(directory, {0: ["s0", "s1", "s2", "s3"], 1: ["s4", "s5", "s6", "s7"], 2: ["s8", "s9"]},
                failed={"s2"})
    store = FeatureStore(directory)
    for ids in (None, ["s9", "x", "s1", "s4", "s0", "s9"], ["s0", "s1", "s2"]):
        expected = store.get(store.ids if ids is None else ids)
        lazy = store.dask_array("pooled", ids)
        if ids is None:
            assert lazy.numblocks[0] == 3  # one chunk per shard
        np.testing.assert_array_equal(lazy.compute(), expected["pooled"])
        np.testing.assert_array_equal(store.dask_array("count", ids).compute(), expected["count"])
        ragged = store.dask_array("seq", ids)
        np.testing.assert_array_equal(ragged.offsets, expected["seq"].offsets)
        np.testing.assert_array_equal(np.asarray(ragged.values.compute()), expected["seq"].values)


def test_is_complete_uses_present_rows(tmp_path):
    import pandas as pd

    from mer.pipeline.manifest import Manifest

    directory = tmp_path / "enc"
    write_cache(directory, {0: ["s0", "s1"]}, failed={"s1"})
    store = FeatureStore(directory)
    df = pd.DataFrame({"id": ["s0", "s1", "s2"], "label": "a", "group": "g", "split": "train",
                       "audio": ["a.wav", "b.wav", ""]})  # s2 has no audio: not required
    assert store.is_complete(Manifest(df))  # the failed s1 is in a complete shard
    df.loc[2, "audio"] = "c.wav"
    assert not store.is_complete(Manifest(df))
    assert store.is_complete(Manifest(df), present=lambda row: row["id"] != "s2")


def test_ranges_matches_loop():
    rng = np.random.default_rng(0)
    starts = rng.integers(0, 50, 20)
    lengths = rng.integers(0, 5, 20)
    expected = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)])
    np.testing.assert_array_equal(_ranges(starts, lengths), expected)
    assert _ranges(np.array([3]), np.array([0])).size == 0


def test_ragged_padded():
    r = Ragged(np.arange(10, dtype=np.float32).reshape(5, 2), np.array([0, 2, 2, 5]))
    padded, mask = r.padded()
    assert padded.shape == (3, 3, 2)
    assert mask.tolist() == [[True, True, False], [False, False, False], [True, True, True]]
    np.testing.assert_array_equal(padded[0], [[0, 1], [2, 3], [0, 0]])
    np.testing.assert_array_equal(padded[2], [[4, 5], [6, 7], [8, 9]])
    cut, cut_mask = r.padded(max_len=2)
    np.testing.assert_array_equal(cut[2], [[4, 5], [6, 7]])
    assert cut_mask.shape == (3, 2)


# --- mer cache ls / verify / gc ------------------------------------------------------------

def _make_root(root: Path) -> tuple[Path, Path]:
    keep = root / "toy" / "audio" / "toy-keepkeepkeep"
    drop = root / "toy" / "text" / "toy-dropdropdrop"
    write_cache(keep, {0: ["s0", "s1"], 1: ["s2"]}, failed={"s1"}, key=keep.name)
    write_cache(drop, {0: ["s0", "s1", "s2"]}, failed=set(), key=drop.name)
    return keep, drop


def test_cache_ls_json_and_table(tmp_path):
    keep, drop = _make_root(tmp_path / "cache")
    runner = CliRunner()
    result = runner.invoke(cli, ["cache", "ls", "--json", "--root", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    rows = {r["key"]: r for r in json.loads(result.output)}
    assert rows[keep.name]["samples"] == 3 and rows[keep.name]["failures"] == 1 and rows[keep.name]["shards"] == 2
    assert rows[keep.name]["modality"] == "audio" and rows[keep.name]["family"] == "toy"
    assert rows[keep.name]["bytes"] == sum(p.stat().st_size for p in keep.iterdir())
    assert rows[drop.name]["status"] == "complete"
    table = runner.invoke(cli, ["cache", "ls", "--root", str(tmp_path / "cache")])
    assert keep.name in table.output and "KiB" in table.output


def test_cache_verify_names_corrupt_shard(tmp_path):
    keep, drop = _make_root(tmp_path / "cache")
    runner = CliRunner()
    ok = runner.invoke(cli, ["cache", "verify", "--root", str(tmp_path / "cache")])
    assert ok.exit_code == 0, ok.output
    assert "3 shard(s) verified, 0 problem(s)" in ok.output
    path = keep / "shard-00001.h5"
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0x01
    path.write_bytes(bytes(raw))
    expected = json.loads((keep / "shard-00001.json").read_text())["sha256"]
    bad = runner.invoke(cli, ["cache", "verify", "--root", str(tmp_path / "cache")])
    assert bad.exit_code == 1
    assert f"CORRUPT {path}: expected sha256 {expected}, actual {hashlib.sha256(bytes(raw)).hexdigest()}" in bad.output
    assert "shard-00000" not in bad.output


def test_cache_gc_removes_only_unreferenced(tmp_path):
    """gc keeps the directory a config references (its real encoder key) and removes the rest."""
    from kit.toy_corpus import make_corpus, write_config

    from mer.features.registry import build_encoder
    from mer.config import load_config

    csv, _ = make_corpus(tmp_path / "corpus", 2)
    root = tmp_path / "cache"
    config_path = write_config(tmp_path / "c.yaml", csv, root)
    key = build_encoder(load_config(config_path).features["audio"]).key()
    keep = root / "toy" / "audio" / key
    write_cache(keep, {0: ["s0"]}, failed=set(), key=key)
    drop = root / "toy" / "audio" / "toy-0ldoptions00"
    write_cache(drop, {0: ["s0", "s1"]}, failed=set(), key=drop.name)
    other = root / "other" / "text" / "toy-0ther0ther0"
    write_cache(other, {0: ["s0"]}, failed=set(), key=other.name)
    runner = CliRunner()
    no = runner.invoke(cli, ["cache", "gc", "-c", str(config_path)], input="n\n")
    assert no.exit_code == 1 and drop.exists() and other.exists()  # aborted at the prompt
    assert f"remove {drop}" in no.output and f"remove {other}" in no.output and str(keep) not in no.output
    size = sum(p.stat().st_size for p in drop.iterdir()) + sum(p.stat().st_size for p in other.iterdir())
    yes = runner.invoke(cli, ["cache", "gc", "-c", str(config_path), "--yes"])
    assert yes.exit_code == 0, yes.output
    assert keep.exists() and not drop.exists() and not other.exists()
    assert not (root / "other" / "text").exists()  # empty modality folder removed too
    assert f"removed 2 encoder cache(s), freed {size / 1024:.1f} KiB" in yes.output
    again = runner.invoke(cli, ["cache", "gc", "-c", str(config_path), "--yes"])
    assert "nothing to remove" in again.output
