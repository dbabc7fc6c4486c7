"""A file whose header is intact but whose data is cut short is a recorded failure, whatever
the container (issue 15, item 2): libsndfile clamps a cut WAV to the bytes present and used to
decode it as a shorter clip."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mer.features.audio_header import promised_frames
from mer.features.audio_io import audio_seconds, load_audio
from mer.features.base import SampleError

SR = 16000
N = 4000


def signal(channels: int = 1) -> np.ndarray:
    t = np.arange(N) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t)
    return np.stack([x * (c + 1) / channels for c in range(channels)], axis=1) if channels > 1 else x


CASES = [  # (file name, soundfile format, subtype, channels, bytes per frame)
    ("pcm16.wav", "WAV", "PCM_16", 1, 2),
    ("pcm24_stereo.wav", "WAV", "PCM_24", 2, 6),
    ("float.wav", "WAV", "FLOAT", 1, 4),
    ("ulaw.wav", "WAV", "ULAW", 1, 1),
    ("wavex.wav", "WAVEX", "PCM_16", 2, 4),
    ("rf64.wav", "RF64", "PCM_16", 1, 2),
    ("pcm16.aiff", "AIFF", "PCM_16", 1, 2),
    ("pcm16.au", "AU", "PCM_16", 2, 4),
]


def cut(path: Path, keep: float = 0.3) -> Path:
    """Keep the header and ``keep`` of the data (the data is the file's tail here)."""
    data = path.read_bytes()
    bytes_per_frame = next(c[4] for c in CASES if c[0] == path.name)
    header = len(data) - N * bytes_per_frame
    out = path.with_name("cut_" + path.name)
    out.write_bytes(data[:header + int(keep * N * bytes_per_frame)])
    return out


@pytest.mark.parametrize("name,fmt,subtype,channels,width", CASES)
def test_a_cut_file_is_a_decode_failure_naming_both_counts(tmp_path, name, fmt, subtype, channels, width):
    path = tmp_path / name
    sf.write(path, signal(channels), SR, format=fmt, subtype=subtype)
    assert promised_frames(path) == N
    assert len(load_audio(path, SR)) == N  # the intact file loads
    bad = cut(path)
    assert sf.info(str(bad)).frames < N  # libsndfile itself does not complain: it clamps
    for read in (lambda: load_audio(bad, SR), lambda: audio_seconds(bad)):
        with pytest.raises(SampleError) as info:
            read()
        assert info.value.stage == "decode"
        assert str(bad) in info.value.message and f"promises {N} frames" in info.value.message


def test_flac_cut_short_still_fails_at_decoding(tmp_path):
    path = tmp_path / "x.flac"
    sf.write(path, signal(), SR, format="FLAC")
    bad = tmp_path / "cut.flac"
    bad.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.3)])
    with pytest.raises(SampleError, match="truncated|cannot decode"):
        load_audio(bad, SR)


def _wav_with_chunk_after_data(path: Path) -> None:
    """A PCM WAV followed by a LIST chunk (players write them): the data size is smaller than
    the file, which is no truncation."""
    sf.write(path, signal(), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    extra = b"LIST" + struct.pack("<I", 10) + b"INFOabcdef"
    data += extra
    data[4:8] = struct.pack("<I", len(data) - 8)
    path.write_bytes(bytes(data))


def test_unset_sizes_and_trailing_chunks_are_not_truncation(tmp_path):
    trailing = tmp_path / "trailing.wav"
    _wav_with_chunk_after_data(trailing)
    assert promised_frames(trailing) == N and len(load_audio(trailing, SR)) == N
    streamed = tmp_path / "streamed.wav"  # a streaming writer leaves the sizes at 0xFFFFFFFF
    sf.write(streamed, signal(), SR, subtype="PCM_16")
    data = bytearray(streamed.read_bytes())
    data[4:8] = b"\xff\xff\xff\xff"
    data[40:44] = b"\xff\xff\xff\xff"
    streamed.write_bytes(bytes(data))
    assert promised_frames(streamed) is None
    assert promised_frames(tmp_path / "trailing.wav") == N
    other = tmp_path / "x.ogg"
    sf.write(other, signal(), SR, format="OGG", subtype="VORBIS")
    assert promised_frames(other) is None  # promises no frame count


def test_mer_extract_records_the_cut_wav_as_a_failure(tmp_path):
    from click.testing import CliRunner
    from kit.toy_corpus import write_config, write_manifest

    from mer.features.registry import build_encoder
    from mer.cli import cli
    from mer.config import load_config

    good = tmp_path / "pcm16.wav"
    sf.write(good, signal(), SR, subtype="PCM_16")
    bad = cut(good)
    csv = write_manifest(tmp_path / "m.csv", [{"id": "good", "audio": str(good)}, {"id": "cut", "audio": str(bad)}])
    config_path = write_config(tmp_path / "c.yaml", csv, tmp_path / "cache",
                               features={"audio": {"encoder": "logmel", "sample_rate": SR, "n_mels": 16}})
    result = CliRunner().invoke(cli, ["extract", "-c", str(config_path), "--no-progress"])
    assert result.exit_code == 1, result.output  # one failure, --max-failures 0
    config = load_config(config_path)
    directory = (Path(config.cache.root) / config.corpus / "audio"
                 / build_encoder(config.features["audio"]).key())
    lines = [json.loads(x) for x in (directory / "failures.jsonl").read_text().splitlines()]
    assert [(x["id"], x["stage"]) for x in lines] == [("cut", "decode")]
    assert f"promises {N} frames, the file holds {int(0.3 * N)}" in lines[0]["message"]
