"""Audio tracks of video containers (MELD's ``.mp4``) through PyAV, for the audio loader.

libsndfile (soundfile) cannot open MP4/MKV/WebM; PyAV bundles FFmpeg's decoders, so no
system ffmpeg is needed. It is an optional extra (``pip install 'mer[video]'``): the import
is lazy and its absence is a clear error naming the extra.

Semantics match :func:`mer.features.audio_io.load_audio`: mono float32 (channels averaged),
resampled with soxr at the same quality, ``[start, end)`` seconds measured from the first
sample of the audio stream, an ``end`` up to ``END_TOLERANCE_S`` past the end is clamped,
and every problem is a :class:`SampleError` naming the file (``read`` / ``decode``).

Seeking: for a window starting later than ``SEEK_MIN_S`` the demuxer seeks to
``start - PREROLL_S`` (a keyframe at or before it) and decodes from there; the pre-roll lets
transform codecs such as AAC, whose first frame after a seek is incomplete, settle before
the window begins. Short clips (MELD's utterances) are decoded whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soxr

from mer.features.base import SampleError
from mer.features.av_container import is_set, open_stream, stated_duration

RESAMPLE_QUALITY = "HQ"
END_TOLERANCE_S = 0.05
SEEK_MIN_S = 5.0
PREROLL_S = 0.5
#: container extensions to route here (everything libsndfile cannot read that has audio)
EXTENSIONS = (".mp4", ".m4a", ".mkv", ".webm", ".mov", ".avi", ".aac", ".flv")

_INT_SCALE = {"s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0}


def _to_float(frame) -> np.ndarray:
    """(channels, samples) float32 from any PyAV audio frame format."""
    arr = frame.to_ndarray()
    fmt = frame.format.name
    base = fmt.rstrip("p")
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        arr = arr.reshape(-1, channels).T
    if base == "u8":
        out = (arr.astype(np.float32) - 128.0) / 128.0
    elif base in ("flt", "dbl"):
        out = arr.astype(np.float32)
    elif base in _INT_SCALE:
        out = (arr.astype(np.float64) / _INT_SCALE[base]).astype(np.float32)
    else:
        raise SampleError("decode", f"unsupported sample format {fmt!r}")
    return out


def av_duration(path: str | Path) -> float:
    """Seconds of audio from the container's metadata (no decoding; for ``cost()``)."""
    path = Path(path)
    _, container, stream = open_stream(path, "audio")
    try:
        seconds = stated_duration(container, stream)
    finally:
        container.close()
    if seconds is None:
        raise SampleError("read", f"{path}: the container does not state its duration")
    return seconds


def decode_av(path: str | Path, target_sr: int, start: float | None = None, end: float | None = None) -> np.ndarray:
    """Mono float32 samples of ``[start, end)`` seconds of the first audio stream at ``target_sr``."""
    path = Path(path)
    start = float(start) if is_set(start) else None
    end = float(end) if is_set(end) else None
    if start is not None and start < 0:
        raise SampleError("read", f"{path}: window start {start:.3f} s is negative")
    av, container, stream = open_stream(path, "audio")
    chunks: list[np.ndarray] = []
    try:
        tb = stream.time_base
        origin = float(stream.start_time * tb) if stream.start_time is not None and tb is not None else 0.0
        sr = stream.codec_context.sample_rate or stream.rate
        seek_to = None
        if start is not None and start > SEEK_MIN_S and tb is not None:
            seek_to = max(0.0, start - PREROLL_S)
            container.seek(int((origin + seek_to) / tb), stream=stream, backward=True, any_frame=False)
        first_time = None
        n_samples = 0
        for frame in container.decode(stream):
            if first_time is None:
                if frame.time is not None:
                    first_time = float(frame.time) - origin
                elif seek_to is None:
                    first_time = 0.0
                else:
                    raise SampleError("decode", f"{path}: frames carry no timestamps; cannot seek to {start:.3f} s")
                sr = frame.sample_rate
            chunks.append(_to_float(frame))
            n_samples += chunks[-1].shape[1]
            if end is not None and first_time + n_samples / sr >= end + PREROLL_S:
                break
    except av.error.FFmpegError as exc:
        raise SampleError("decode", f"{path}: cannot decode audio: {exc}") from None
    finally:
        container.close()
    if not chunks:
        raise SampleError("decode", f"{path}: zero-length audio (no frames could be decoded)")
    data = np.concatenate(chunks, axis=1)
    if not np.isfinite(data).all():
        raise SampleError("decode", f"{path}: {int((~np.isfinite(data)).sum())} NaN/inf sample value(s)")
    mono = data[0] if data.shape[0] == 1 else data.mean(axis=0, dtype=np.float32)
    # place the window: sample i of `mono` is at first_time + i / sr seconds of the stream
    total = first_time + len(mono) / sr
    lo = 0 if start is None else int(round((start - first_time) * sr))
    if start is not None and start >= total:
        raise SampleError("read", f"{path}: window start {start:.3f} s is at or past the end of the audio ({total:.3f} s)")
    if end is not None and end > total + END_TOLERANCE_S:
        raise SampleError("read", f"{path}: window end {end:.3f} s is past the end of the audio ({total:.3f} s)")
    hi = len(mono) if end is None else min(len(mono), int(round((end - first_time) * sr)))
    lo = max(lo, 0)
    if hi <= lo:
        raise SampleError("read", f"{path}: empty window [{start}, {end}) s (audio is {total:.3f} s)")
    mono = mono[lo:hi]
    if sr != target_sr:
        mono = soxr.resample(np.ascontiguousarray(mono), sr, target_sr, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(mono, dtype=np.float32)
