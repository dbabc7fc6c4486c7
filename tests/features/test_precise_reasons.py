"""Each bad input gets its own accurate reason, and no message carries a file's content
(issue 15, items 12 and 13): a directory, a symlink loop, a FIFO, a device and an unreadable
file are told apart; inf is not called NaN; IBI values <= 0 are a recorded failure; an invalid
UTF-8 byte is located by its offset in the file, its line and its row; a header that is not an
E4 header is described, not quoted."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mer.features.audio_io import audio_seconds, load_audio
from mer.features.base import SampleError
from mer.features.e4 import Options, clear_caches
from mer.features.e4_io import read_signal
from mer.features.file_check import unreadable_reason
from mer.features.registry import build_encoder
from mer.pipeline.manifest import ManifestError

START = 1595487394.0


@pytest.fixture(autouse=True)
def _fresh():
    clear_caches()
    yield
    clear_caches()


def _audio_reason(path: Path) -> str:
    with pytest.raises(SampleError) as info:
        load_audio(path, 16000)
    assert info.value.stage == "read"
    with pytest.raises(SampleError) as again:
        audio_seconds(path)  # cost() sees the same reason
    assert again.value.message == info.value.message
    return info.value.message


def test_each_unreadable_audio_path_has_its_own_reason(tmp_path):
    folder = tmp_path / "clip.wav"
    folder.mkdir()
    loop = tmp_path / "loop.wav"
    loop.symlink_to(tmp_path / "loop2.wav")
    (tmp_path / "loop2.wav").symlink_to(loop)
    dangling = tmp_path / "dangling.wav"
    dangling.symlink_to(tmp_path / "nowhere.wav")
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    expected = {
        folder: "is a directory, not an audio file",
        loop: "symbolic link loop: the path never reaches an audio file",
        dangling: "audio file not found: a symbolic link whose target does not exist",
        fifo: "is a named pipe (FIFO), not a regular audio file",
        Path("/dev/zero"): "is a device file, not a regular audio file",
        tmp_path / "missing.wav": "audio file not found",
        tmp_path / "file.txt" / "x.wav": "audio file not found: a part of the path is a file, not a folder",
    }
    (tmp_path / "file.txt").write_text("x")
    for path, reason in expected.items():
        assert _audio_reason(path) == f"{path}: {reason}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_an_unreadable_file_says_permission_denied(tmp_path):
    path = tmp_path / "locked.wav"
    sf.write(path, np.zeros(1600, np.float32), 16000)
    path.chmod(0)
    try:
        assert _audio_reason(path) == f"{path}: permission denied: the audio file is not readable by this user"
    finally:
        path.chmod(0o644)


def test_a_readable_regular_file_has_no_reason(tmp_path):
    path = tmp_path / "ok.wav"
    sf.write(path, np.zeros(1600, np.float32), 16000)
    assert unreadable_reason(path, "audio file") is None


def _plain_signal(path: Path, values: list[str], rate: float = 4.0) -> Path:
    path.write_text(f"{START:.6f}\n{rate:.6f}\n" + "".join(f"{v}\n" for v in values))
    return path


def _prepare(tmp_path: Path, **paths: Path):
    encoder = build_encoder(Options(signals=list(paths)))
    encoder.load(None)
    row = {"id": "x", "bio_format": "e4", "bio_start": START + 10, "bio_end": START + 20,
           **{k: str(v) for k, v in paths.items()}}
    return encoder.prepare(row)


def test_inf_is_reported_as_inf_and_nan_as_nan(tmp_path):
    values = [f"{33.0 + 0.01 * (i % 7):.2f}" for i in range(200)]
    values[50] = "inf"  # 12.5 s: inside [10, 20) s; line 50 + 2 header lines + 1
    values[60] = values[61] = "nan"
    path = _plain_signal(tmp_path / "TEMP.csv", values)
    with pytest.raises(SampleError) as info:
        _prepare(tmp_path, temp=path)
    assert info.value.stage == "features"
    assert info.value.message == (f"{path}: 2 NaN value(s) (first at line 63); 1 inf value(s) (first at line 53) "
                                  f"in segment [{START + 10}, {START + 20})")


def test_negative_ibi_values_are_a_recorded_failure(tmp_path):
    offsets = [10.0 + 0.8 * k for k in range(14)]
    ibis = [0.8] * 14
    ibis[5] = -0.8  # a corrupt interval: line 5 + 1 header line + 1
    path = tmp_path / "IBI.csv"
    path.write_text(f"{START:.6f}, IBI\n" + "".join(f"{t:.6f},{v:.6f}\n" for t, v in zip(offsets, ibis)))
    with pytest.raises(SampleError) as info:
        _prepare(tmp_path, ibi=path)
    assert info.value.stage == "features"
    assert info.value.message == f"{path}: 1 IBI value(s) <= 0 s (first at line 7) in segment [{START + 10}, {START + 20})"


SECRET = "root:x:0:0:SECRETLINE:/root:/bin/bash"


@pytest.mark.parametrize("content", [f"{SECRET}\n4.0\n1.0\n", f"{START}\n{SECRET}\n1.0\n",
                                     f"{START}\n4.0\n1.0\n{SECRET}\n"])
def test_messages_never_quote_the_file(tmp_path, content):
    """A manifest path such as eda=../../etc/passwd must not put its lines into failures.jsonl."""
    path = tmp_path / "passwd"
    path.write_text(content)
    with pytest.raises(SampleError) as info:
        read_signal(path, "e4")
    assert str(path) in info.value.message
    assert "SECRETLINE" not in info.value.message and "root:x" not in info.value.message


def test_invalid_utf8_is_located_in_the_file_not_the_chunk(tmp_path):
    from mer.pipeline.adapters.generic import read_table

    rows = [f"u{i:03d},neutral,g{i % 5},train,{'a fairly long transcript ' * 10}" for i in range(300)]
    raw = ("id,label,group,split,text\n" + "\n".join(rows) + "\n").encode("utf-8")
    line_42 = raw.split(b"\n")[42]  # row 42 (line 43)
    offset = raw.index(line_42) + 20
    raw = raw[:offset] + b"\xff" + raw[offset + 1:]
    path = tmp_path / "m.csv"
    path.write_bytes(raw)
    with pytest.raises(ManifestError) as info:
        read_table(path)
    assert str(info.value) == (f"{path}: not UTF-8 text (invalid start byte at byte {offset:,} (line 43, row 42)); "
                               f"re-save it as UTF-8")
    assert offset > 10_000
