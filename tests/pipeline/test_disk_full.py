"""A full disk during extraction (issue 15, item 5): one message naming the cache root and the
space needed, no partial file left, no crash, and a later run with space completes the cache
byte-identically. Runs on a small tmpfs, so only as root (skipped otherwise).

Why HDF5 never writes to the disk itself: on a full file system HDF5's close fails, the file
stays open inside the library and the process dies with a segmentation fault at exit
(``test_hdf5_on_a_full_disk_no_longer_crashes_the_process`` reproduces it on the old writer)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kit.toy_corpus import make_corpus, write_config

from mer.pipeline.cache import SPACE_MARGIN, sha256_file
from mer.config import load_config
from mer.pipeline.extract import extract

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                                reason="mounting a size-limited tmpfs needs root")


@contextlib.contextmanager
def tmpfs(path: Path, size: int):
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", f"mer-full-{uuid.uuid4().hex[:6]}",
                           str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def resize(path: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def fill(path: Path, leave: int) -> Path:
    """Fill the file system at ``path`` until ``leave`` bytes are free."""
    filler = path / "filler"
    st = os.statvfs(path)
    with open(filler, "ab") as fh:
        fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def env() -> dict[str, str]:
    repo = Path(__file__).resolve().parents[2]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "tests"),
                                                          os.environ.get("PYTHONPATH", "")])}


def hashes(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.glob("shard-*.h5"))}


def test_extract_on_a_full_disk_stops_with_one_message_then_completes(tmp_path):
    csv, _ = make_corpus(tmp_path / "corpus", 24)
    reference = write_config(tmp_path / "ref.yaml", csv, tmp_path / "ref_cache", shard_size=4)
    extract(load_config(reference), progress=False)
    from mer.features.registry import build_encoder

    config = load_config(reference)
    key = build_encoder(config.features["audio"]).key()
    expected = hashes(tmp_path / "ref_cache" / "toy" / "audio" / key)
    shard_bytes = max((tmp_path / "ref_cache" / "toy" / "audio" / key / n).stat().st_size for n in expected)
    assert len(expected) == 6

    with tmpfs(tmp_path / "small", 8 << 20) as root:
        config_path = write_config(tmp_path / "c.yaml", csv, root / "cache", shard_size=4)
        (root / "cache").mkdir()
        filler = fill(root, SPACE_MARGIN + 3 * shard_bytes + 64 * 1024)  # room for a few shards, not six
        proc = subprocess.run([sys.executable, "-m", "mer", "extract", "-c", str(config_path), "--no-progress"],
                              capture_output=True, text=True, env=env(), timeout=300)
        assert proc.returncode == 2, proc.stdout + proc.stderr  # not 139 (SIGSEGV), not a traceback
        assert "Traceback" not in proc.stderr
        message = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(message) == 1, proc.stderr
        assert f"no space left for the feature cache under {root / 'cache'}" in message[0]
        assert "needs about" in message[0] and "re-run mer extract" in message[0]
        directory = root / "cache" / "toy" / "audio" / key
        written = hashes(directory)
        assert 0 < len(written) < 6
        assert not [p.name for p in directory.iterdir() if ".tmp-" in p.name]
        for name, digest in written.items():  # whatever is there is complete and right
            assert (directory / name).with_suffix(".json").exists() and digest == expected[name]

        filler.unlink()
        resize(root, 64 << 20)
        again = subprocess.run([sys.executable, "-m", "mer", "extract", "-c", str(config_path), "--no-progress"],
                               capture_output=True, text=True, env=env(), timeout=300)
        assert again.returncode == 0, again.stderr
        assert hashes(directory) == expected


def test_enospc_past_the_space_check_is_the_same_message(tmp_path, monkeypatch):
    """The disk fills between the check and the write (another writer): same message, no tmp."""
    import mer.pipeline.shard_task as shard_task
    from click.testing import CliRunner

    from mer.cli import cli

    monkeypatch.setattr(shard_task, "ensure_space", lambda *a, **k: None)
    csv, _ = make_corpus(tmp_path / "corpus", 8)
    with tmpfs(tmp_path / "small", 4 << 20) as root:
        config_path = write_config(tmp_path / "c.yaml", csv, root / "cache", shard_size=4)
        (root / "cache").mkdir()
        result = CliRunner().invoke(cli, ["extract", "-c", str(config_path), "--no-progress"])
        assert result.exit_code == 0, result.output  # room enough: the baseline
        for p in (root / "cache").rglob("shard-*"):
            p.unlink()
        fill(root, 2048)
        result = CliRunner().invoke(cli, ["extract", "-c", str(config_path), "--no-progress"])
        assert result.exit_code == 2, result.output
        assert f"no space left for the feature cache under {root / 'cache'}" in result.output
        assert not [p for p in (root / "cache").rglob("*") if ".tmp-" in p.name]
        assert not list((root / "cache").rglob("shard-*.h5"))


_OLD_WRITER = '''
import os, sys, h5py, numpy as np
path, leave = sys.argv[1], int(sys.argv[2])
st = os.statvfs(os.path.dirname(path))
with open(os.path.join(os.path.dirname(path), "filler"), "wb") as fh:
    fh.write(b"\\0" * (st.f_bavail * st.f_frsize - leave))
from mer.pipeline.shard import write_h5, assemble
from mer.features.base import OutputSpec
spec = [OutputSpec("x", (64,), ragged=True), OutputSpec("p", (100,))]
rng = np.random.default_rng(0)
ids = [f"s{i}" for i in range(40)]
res = {i: {"x": rng.standard_normal((50, 64)).astype(np.float16), "p": rng.standard_normal(100).astype(np.float16)}
       for i in ids}
try:
    write_h5(path, assemble(ids, res, spec, "float16"), spec, {}, "float16")
except OSError as exc:
    print("ENOSPC" if exc.errno == 28 else f"errno {exc.errno}")
    sys.exit(3)
'''


@pytest.mark.parametrize("leave", [4096, 8192, 20000])
def test_hdf5_on_a_full_disk_no_longer_crashes_the_process(tmp_path, leave):
    with tmpfs(tmp_path / "small", 256 << 10) as root:
        proc = subprocess.run([sys.executable, "-c", _OLD_WRITER, str(root / "s.h5"), str(leave)],
                              capture_output=True, text=True, env=env(), timeout=120)
        assert proc.returncode == 3 and proc.stdout.strip() == "ENOSPC", (proc.returncode, proc.stderr[-2000:])
