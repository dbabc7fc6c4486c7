"""Video frames from MP4/AVI/MKV/MOV/FLV/WebM through PyAV (``mer[video]``), streamed, at a chosen fps.

Why timestamps and not frame counting: variable-frame-rate files exist (phone recordings,
screen captures, FLV), and "every n-th frame" then drifts from real time. Target times are
``start + k / fps``; the frame shown at time ``t`` is the last decoded frame whose presentation
time is ``<= t`` (the frame on screen then), so a 29.97 fps clip resampled to 15 fps keeps every
other frame and a 24 fps clip resampled to 30 fps repeats some; a target before the first frame
gets the first frame. ``fps=None`` keeps the file's own frames in the window.

Times are seconds from the start of the video stream (its ``start_time``), as
:mod:`mer.features.av_audio` measures audio from the start of the audio stream; the ``[start,
end)`` window is in those seconds. An ``end`` up to one frame plus ``END_TOLERANCE_S`` past the
last frame is clamped (transcript times are rounded); beyond it the window is an error, never
silently shortened.

Streaming: :func:`iter_frames` is a generator holding one decoded frame at a time, so a
one-hour video never sits in memory; only frames that are emitted are converted to RGB (and
scaled down, with FFmpeg's swscale, when ``max_side`` asks for it). A window later than
``SEEK_MIN_S`` seeks to the keyframe before it instead of decoding from the beginning.

Every problem is a :class:`SampleError` naming the file (``read``: missing file or window
outside the video; ``decode``: unreadable container, no video stream, corrupt frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from mer.features.av_container import is_set, open_stream, stated_duration
from mer.features.base import SampleError

#: video container extensions the adapters recognise
EXTENSIONS = (".mp4", ".m4v", ".avi", ".mkv", ".mov", ".flv", ".webm", ".mpg", ".mpeg", ".wmv")
END_TOLERANCE_S = 0.05
SEEK_MIN_S = 5.0


@dataclass(frozen=True)
class VideoInfo:
    """What the container states about its first video stream (no decoding)."""

    width: int
    height: int
    #: average frame rate (frames / s); 0.0 when the container does not state one
    fps: float
    #: seconds; 0.0 when unknown
    duration: float


@dataclass(frozen=True)
class Frame:
    """One output frame: its target time (seconds from the stream start), the source frame's
    own presentation time, and the RGB pixels (H, W, 3) uint8."""

    time: float
    source_time: float
    rgb: np.ndarray


def video_info(path: str | Path) -> VideoInfo:
    """Size, average fps and duration from the container's metadata (for ``cost()``)."""
    path = Path(str(path))
    _, container, stream = open_stream(path, "video")
    try:
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        duration = stated_duration(container, stream) or 0.0
        return VideoInfo(int(stream.codec_context.width), int(stream.codec_context.height), fps, duration)
    finally:
        container.close()


def scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled so that the longer side is at most ``max_side`` (even numbers kept
    as they are; never upscaled)."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def iter_frames(path: str | Path, fps: float | None = None, start: float | None = None, end: float | None = None,
                max_side: int | None = None) -> Iterator[Frame]:
    """RGB frames of ``[start, end)`` seconds of the first video stream, at ``fps`` (None = native).

    A generator: frames are decoded as they are consumed. Raises SampleError as described in the
    module docstring; a window with no frame at all is an error too.
    """
    path = Path(str(path))
    start = float(start) if is_set(start) else None
    end = float(end) if is_set(end) else None
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0 or None, got {fps}")
    if start is not None and start < 0:
        raise SampleError("read", f"{path}: window start {start:.3f} s is negative")
    if start is not None and end is not None and end <= start:
        raise SampleError("read", f"{path}: empty window [{start}, {end}) s")
    av, container, stream = open_stream(path, "video")
    try:
        yield from _frames(av, container, stream, path, fps, start, end, max_side)
    finally:
        container.close()


def _frames(av, container, stream, path: Path, fps: float | None, start: float | None, end: float | None,
            max_side: int | None) -> Iterator[Frame]:
    tb = stream.time_base
    origin = float(stream.start_time * tb) if stream.start_time is not None and tb is not None else 0.0
    rate = stream.average_rate or stream.guessed_rate
    native_step = 1.0 / float(rate) if rate else None
    if start is not None and start > SEEK_MIN_S and tb is not None:
        container.seek(int((origin + start) / tb), stream=stream, backward=True, any_frame=False)
    size: tuple[int, int] | None = None
    first = 0.0 if start is None else start
    next_target = first  # resampled mode: the next target time
    n_target = 0
    previous = None  # (time, av frame) of the last decoded frame at or before the next target
    cached: tuple[object, np.ndarray] | None = None  # (frame, rgb) of the last conversion: repeats are free
    last_time = None
    emitted = 0
    index = 0
    reached_end = False  # decoding stopped at the window's end (not at the stream's)

    def rgb(frame) -> np.ndarray:
        nonlocal size, cached
        if cached is not None and cached[0] is frame:
            return cached[1]
        if size is None:
            size = scaled_size(frame.width, frame.height, max_side)
        if (frame.width, frame.height) == size:
            array = frame.to_ndarray(format="rgb24")
        else:
            array = frame.reformat(width=size[0], height=size[1], format="rgb24").to_ndarray()
        cached = (frame, array)
        return array

    try:
        for frame in container.decode(stream):
            if frame.time is not None:
                t = float(frame.time) - origin
            elif native_step is not None:
                t = index * native_step  # no timestamps: the stated rate is all there is
            else:
                raise SampleError("decode", f"{path}: frames carry no timestamps and the stream states no frame rate")
            index += 1
            if last_time is not None and t <= last_time:
                continue  # a duplicate or out-of-order timestamp (broken muxing): keep the first
            last_time = t
            if fps is None:
                if start is not None and t < start - 1e-6:
                    continue
                if end is not None and t >= end - 1e-6:
                    reached_end = True
                    break
                emitted += 1
                yield Frame(t, t, rgb(frame))
                continue
            # resampled: every target before this frame's time shows the previous frame (or this
            # one, when the target precedes the first frame of the stream)
            while t > next_target + 1e-6 and (end is None or next_target < end - 1e-6):
                shown = previous if previous is not None else (t, frame)
                emitted += 1
                yield Frame(next_target, shown[0], rgb(shown[1]))
                n_target += 1
                next_target = first + n_target / fps
            if end is not None and next_target >= end - 1e-6:
                reached_end = True
                break
            previous = (t, frame)
    except av.error.FFmpegError as exc:
        raise SampleError("decode", f"{path}: cannot decode video: {exc}") from None
    if last_time is None:
        raise SampleError("decode", f"{path}: no video frame could be decoded")
    stream_end = last_time + (native_step or 0.0)
    if end is not None and not reached_end and end > stream_end + END_TOLERANCE_S:
        raise SampleError("read", f"{path}: window end {end:.3f} s is past the end of the video ({stream_end:.3f} s)")
    if fps is not None and previous is not None and not reached_end:
        # targets after the last frame's time, up to the end of the stream (or the window)
        stop = stream_end if end is None else min(end, stream_end)
        while next_target < stop - 1e-6:
            emitted += 1
            yield Frame(next_target, previous[0], rgb(previous[1]))
            n_target += 1
            next_target = first + n_target / fps
    if emitted == 0:
        where = f"window [{start}, {end}) s" if start is not None or end is not None else "file"
        raise SampleError("read", f"{path}: no video frame in the {where} (video ends at {stream_end:.3f} s)")


def read_frames(path: str | Path, fps: float | None = None, start: float | None = None, end: float | None = None,
                max_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All frames of the window at once: (T,) float64 times and (T, H, W, 3) uint8 (short clips only)."""
    frames = list(iter_frames(path, fps, start, end, max_side))
    return np.array([f.time for f in frames]), np.stack([f.rgb for f in frames])
