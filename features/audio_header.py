"""How many frames an audio file's header promises, read from the header bytes themselves.

Why: libsndfile clamps a WAV's (and AIFF's, AU's) data length to the bytes actually present,
so a file cut short after an intact header reports fewer frames and decodes "fine" as a
shorter clip. Only the header's own number tells that data is missing. For FLAC the
STREAMINFO total is what libsndfile reports and a cut file fails at decoding, so it (like
OGG/MP3, whose headers promise no length) needs nothing here.

Only the first chunks are read (up to the data chunk); nothing of the file's content is kept
or echoed. ``None`` means "no promise to check": an unknown format, a compressed WAV codec
(frames are not bytes / block_align), or a length a streaming writer left unset.
"""

from __future__ import annotations

import struct
from pathlib import Path

#: WAV format tags whose frames are exactly data bytes / block_align
_PCM_TAGS = {0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE}
#: AU (Sun .snd) encodings -> bytes per sample
_AU_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}
_UNSET32 = 0xFFFFFFFF
#: stop looking for the data chunk after this many chunks (a malformed header, not worth more)
_MAX_CHUNKS = 64


def promised_frames(path: str | Path) -> int | None:
    """Frames the header of ``path`` promises, or None when it promises nothing checkable."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12:
            return None
        if head[:4] in (b"RIFF", b"RIFX", b"RF64", b"BW64") and head[8:12] == b"WAVE":
            return _wav_frames(fh, big_endian=head[:4] == b"RIFX", rf64=head[:4] in (b"RF64", b"BW64"))
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _aiff_frames(fh)
        if head[:4] == b".snd":
            fh.seek(0)
            return _au_frames(fh.read(24))
    return None


def _chunks(fh, endian: str):
    for _ in range(_MAX_CHUNKS):
        header = fh.read(8)
        if len(header) < 8:
            return
        chunk_id, size = header[:4], struct.unpack(f"{endian}I", header[4:])[0]
        start = fh.tell()
        yield chunk_id, size, start
        fh.seek(start + size + (size & 1))  # chunks are padded to an even size


def _wav_frames(fh, big_endian: bool, rf64: bool) -> int | None:
    endian = ">" if big_endian else "<"
    block_align = tag = None
    ds64_data: int | None = None
    for chunk_id, size, start in _chunks(fh, endian):
        if chunk_id == b"ds64" and size >= 16:
            ds64_data = struct.unpack("<Q", fh.read(16)[8:16])[0]
        elif chunk_id == b"fmt " and size >= 14:
            body = fh.read(14)
            tag = struct.unpack(f"{endian}H", body[:2])[0]
            block_align = struct.unpack(f"{endian}H", body[12:14])[0]
        elif chunk_id == b"data":
            if rf64 and size == _UNSET32:
                size = ds64_data if ds64_data is not None else _UNSET32
            if tag not in _PCM_TAGS or not block_align or size in (0, _UNSET32):
                return None
            return size // block_align
    return None


def _aiff_frames(fh) -> int | None:
    for chunk_id, size, _ in _chunks(fh, ">"):
        if chunk_id == b"COMM" and size >= 6:
            return struct.unpack(">I", fh.read(6)[2:6])[0]
    return None


def _au_frames(header: bytes) -> int | None:
    if len(header) < 24:
        return None
    _, _, size, encoding, _, channels = struct.unpack(">4sIIIII", header)
    width = _AU_BYTES.get(encoding)
    if size == _UNSET32 or width is None or channels <= 0:
        return None
    return size // (width * channels)
