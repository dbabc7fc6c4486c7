"""Opening media with PyAV, shared by the audio (:mod:`.av_audio`) and video (:mod:`.video_io`) readers.

One place turns a path into an open container and its first stream of a kind, with the same
reasons for a file that cannot be read (missing, a directory, a FIFO, no permission: see
:mod:`.file_check`), a file FFmpeg cannot open, and a container without that kind of stream.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from mer.features.base import SampleError
from mer.features.file_check import unreadable_reason


def import_av():
    try:
        import av
    except ImportError:
        raise ImportError(
            "decoding audio or video from media containers (.mp4, .flv, ...) needs PyAV: "
            "pip install 'mer[video]' (or pip install av)"
        ) from None
    return av


def is_set(value: float | None) -> bool:
    """A window bound given in the manifest (not empty, not NaN)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def open_stream(path: Path, kind: Literal["audio", "video"]) -> tuple[Any, Any, Any]:
    """(the av module, the open container, its first ``kind`` stream); SampleError otherwise."""
    av = import_av()
    reason = unreadable_reason(path, f"{kind} file" if kind == "video" else "media file")
    if reason:
        raise SampleError("read", f"{path}: {reason}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise SampleError("decode", f"{path}: cannot open {'video' if kind == 'video' else 'media'} file: {exc}") from None
    streams = container.streams.video if kind == "video" else container.streams.audio
    if not streams:
        container.close()
        raise SampleError("decode", f"{path}: no {kind} stream (streams: {[s.type for s in container.streams]})")
    return av, container, streams[0]


def stated_duration(container: Any, stream: Any) -> float | None:
    """Seconds the stream (else the container) states in its metadata; None when neither does."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000.0
    return None
