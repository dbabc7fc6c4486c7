"""Readers verify what they read (issue 15, items 1 and 6): a shard whose bytes no longer match
the sha256 in its sidecar, or whose HDF5 signature is damaged, is refused by name with the
command that repairs it; each shard is hashed once per process, and a verification record
(size, mtime, ctime, inode, sha256) lets a later process skip re-hashing an untouched shard."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from kit.toy_corpus import make_corpus, write_config

from mer.pipeline import read_verify
from mer.pipeline.cache import CacheError, sha256_file
from mer.config import load_config
from mer.pipeline.extract import extract
from mer.pipeline.store import FeatureStore


def _encoder_dir(config_path: Path, modality: str = "audio") -> Path:
    from mer.features.registry import build_encoder

    config = load_config(config_path)
    return Path(config.cache.root) / config.corpus / modality / build_encoder(config.features[modality]).key()


def flip_data_byte(h5: Path, dataset: str = "stats") -> int:
    """XOR one byte inside ``dataset``'s contiguous data (HDF5 metadata untouched: h5py still
    opens the file and reads a wrong value), keeping the size; returns the file offset."""
    with h5py.File(h5, "r") as f:
        offset = int(f[dataset].id.get_offset()) + 1  # byte 1 of row 0's first float16 value
    with open(h5, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x40]))
    return offset


@pytest.fixture()
def cache(tmp_path):
    read_verify.forget_verified()
    csv, ids = make_corpus(tmp_path / "corpus", 12)
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache", shard_size=4)
    extract(load_config(config_path), progress=False)
    yield config_path, _encoder_dir(config_path), ids
    read_verify.forget_verified()


def test_a_flipped_data_byte_is_refused_by_name(cache):
    _, directory, ids = cache
    good = FeatureStore(directory).get(ids)["stats"].copy()
    read_verify.forget_verified()  # a new process
    flip_data_byte(directory / "shard-00001.h5")
    with h5py.File(directory / "shard-00001.h5", "r") as f:  # the damage is silent to HDF5
        assert not np.array_equal(f["stats"][0].astype(np.float32), good[4])
    with pytest.raises(CacheError) as info:
        FeatureStore(directory)
    message = str(info.value)
    assert "shard-00001.h5" in message and "sha256" in message and "mer extract" in message
    assert "shard-00000" not in message and "shard-00002" not in message


def test_each_shard_is_hashed_once_per_process(cache, monkeypatch):
    _, directory, ids = cache
    (directory / read_verify.RECORD_NAME).unlink(missing_ok=True)
    hashed: list[str] = []
    real = read_verify.sha256_file
    monkeypatch.setattr(read_verify, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    monkeypatch.setattr(read_verify, "write_record", lambda *a, **k: None)  # no cross-process record here
    for _ in range(3):
        FeatureStore(directory).get(ids)
    assert sorted(hashed) == ["shard-00000.h5", "shard-00001.h5", "shard-00002.h5"]
    read_verify.forget_verified()  # a new process without a record hashes again
    FeatureStore(directory)
    assert len(hashed) == 6


def test_the_record_spares_a_new_process_but_not_a_touched_shard(cache, monkeypatch):
    _, directory, ids = cache
    FeatureStore(directory)  # verifies and records
    record = json.loads((directory / read_verify.RECORD_NAME).read_text())
    assert sorted(record["shards"]) == ["shard-00000", "shard-00001", "shard-00002"]
    hashed: list[str] = []
    real = read_verify.sha256_file
    monkeypatch.setattr(read_verify, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    read_verify.forget_verified()
    FeatureStore(directory).get(ids)
    assert hashed == []  # untouched since verified: no re-hashing
    # damage shard 2 and put its mtime back: the ctime still moves, so it is hashed again
    h5 = directory / "shard-00002.h5"
    st = h5.stat()
    flip_data_byte(h5)
    os.utime(h5, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert h5.stat().st_mtime_ns == st.st_mtime_ns
    read_verify.forget_verified()
    with pytest.raises(CacheError, match="shard-00002.h5"):
        FeatureStore(directory)
    assert hashed == ["shard-00002.h5"]


def test_a_record_that_lies_about_the_sha_is_not_trusted(cache):
    _, directory, _ = cache
    FeatureStore(directory)
    path = directory / read_verify.RECORD_NAME
    record = json.loads(path.read_text())
    record["shards"]["shard-00001"]["sha256"] = "0" * 64  # not the sidecar's sha: the record is stale
    path.write_text(json.dumps(record))
    flip_data_byte(directory / "shard-00001.h5")
    read_verify.forget_verified()
    with pytest.raises(CacheError, match="shard-00001.h5"):
        FeatureStore(directory)


def test_a_damaged_hdf5_signature_is_a_cache_error_not_an_oserror(cache):
    _, directory, _ = cache
    h5 = directory / "shard-00000.h5"
    with open(h5, "r+b") as fh:
        fh.write(b"\x00GARBAGE")  # the 8-byte HDF5 signature
    read_verify.forget_verified()
    with pytest.raises(CacheError) as info:
        FeatureStore(directory)
    assert "shard-00000.h5" in str(info.value) and "mer extract" in str(info.value)
    # even when the sidecar is made to agree with the damaged bytes (hand-edited), the
    # reader names the shard instead of letting h5py's OSError through
    side = directory / "shard-00000.json"
    meta = json.loads(side.read_text())
    meta["sha256"] = sha256_file(h5)
    side.write_text(json.dumps(meta))
    read_verify.forget_verified()
    with pytest.raises(CacheError) as info:
        FeatureStore(directory)
    message = str(info.value)
    assert "shard-00000.h5" in message and "not a readable HDF5 file" in message
    assert "shard-00000.json" in message  # what to remove so that mer extract redoes it


def test_mer_extract_repairs_what_the_reader_refused(cache):
    config_path, directory, ids = cache
    good = FeatureStore(directory).get(ids)["stats"].copy()
    flip_data_byte(directory / "shard-00001.h5")
    read_verify.forget_verified()
    with pytest.raises(CacheError):
        FeatureStore(directory)
    extract(load_config(config_path), progress=False)
    np.testing.assert_array_equal(FeatureStore(directory).get(ids)["stats"], good)


def test_mer_train_refuses_a_corrupt_shard_with_the_extract_command(tmp_path):
    from kit.train_corpus import extract_all, make_corpus as make_train_corpus

    from mer.cli import cli

    read_verify.forget_verified()
    config_path, _ = make_train_corpus(tmp_path, n=48, dims={"text": 4})
    extract_all(config_path)
    directory = _encoder_dir(config_path, "text")
    with h5py.File(directory / "shard-00000.h5", "r") as f:
        name = next(k for k in f if k not in ("ids", "ok"))
        offset = int(f[name].id.get_offset()) + 3
    with open(directory / "shard-00000.h5", "r+b") as fh:  # float32 0.2 -> ~1e4-size values
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x0C]))
    read_verify.forget_verified()
    result = CliRunner().invoke(cli, ["train", "-c", str(config_path), "--quiet", "--set", "train.epochs=1"])
    assert result.exit_code == 2, result.output
    assert "shard-00000.h5" in result.output and f"mer extract -c {config_path}" in result.output
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("model.pt"))


def test_a_reader_after_mer_extract_hashes_nothing(cache, monkeypatch):
    """mer extract hashed every shard it kept or wrote: it leaves the record, so the first
    reader (a new process) does not hash the shards again."""
    _, directory, ids = cache
    record = json.loads((directory / read_verify.RECORD_NAME).read_text())
    assert sorted(record["shards"]) == ["shard-00000", "shard-00001", "shard-00002"]
    hashed: list[str] = []
    real = read_verify.sha256_file
    monkeypatch.setattr(read_verify, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    read_verify.forget_verified()
    FeatureStore(directory).get(ids)
    assert hashed == []
