"""Small synthetic videos for the video and face tests, written with PyAV.

A real face moved by a known offset per frame (scikit-image's ``astronaut``, pasted pixel-exact
onto a plain canvas) lets the tests check detection, tracking and frame timing without any
corpus; solid-grey frames whose level is the frame index let them check which source frame a
resampled output shows. All clips are a few frames of a few hundred pixels: cheap in CI.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

#: the astronaut crop pasted onto the canvas: rows, columns of skimage.data.astronaut() (the face
#: is about 110 px wide in it, well above the HOG detector's 80 px minimum)
FACE_CROP = (slice(20, 240), slice(120, 320))


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float = 25.0, times: Sequence[float] | None = None,
                codec: str = "libx264", container: str | None = None, audio: np.ndarray | None = None,
                sr: int = 16000) -> Path:
    """Encode RGB uint8 frames. ``times`` (seconds) gives each frame its own timestamp (variable frame
    rate); otherwise frame k is at k / fps. ``libx264`` is encoded near-lossless (crf 1); ``ffv1``
    is lossless. ``audio`` (mono float32 at ``sr``) adds an AAC track, as in a full-AV clip."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(frames)
    height, width = frames[0].shape[:2]
    time_base = Fraction(1, 1000)
    with av.open(str(path), "w", format=container) as out:
        rate = Fraction(fps).limit_denominator(1001)
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p" if codec in ("libx264", "mpeg4") else "bgr0" if codec == "ffv1" else "rgb24"
        if codec == "libx264":
            stream.options = {"crf": "1", "preset": "ultrafast"}
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        astream = out.add_stream("aac", rate=sr, layout="mono") if audio is not None else None
        for k, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            t = times[k] if times is not None else k / fps
            frame.pts = int(round(t / time_base))
            frame.time_base = time_base
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
        if astream is not None:
            for i in range(0, len(audio), 1024):
                chunk = np.zeros((1, 1024), np.float32)
                chunk[0, : len(audio[i:i + 1024])] = audio[i:i + 1024]
                aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                aframe.sample_rate, aframe.pts = sr, i
                for packet in astream.encode(aframe):
                    out.mux(packet)
            for packet in astream.encode(None):
                out.mux(packet)
    return path


def grey_frames(n: int, size: tuple[int, int] = (64, 48)) -> list[np.ndarray]:
    """Frame k is a solid grey of level 20 * k (k < 13): decoded level // 20 names the source frame."""
    width, height = size
    return [np.full((height, width, 3), 20 * k, np.uint8) for k in range(n)]


def face_image() -> np.ndarray:
    from skimage import data

    return data.astronaut()[FACE_CROP]


def moving_face_frames(n: int, step: tuple[int, int], start: tuple[int, int] = (20, 20), size: tuple[int, int] = (320, 288),
                       face: np.ndarray | None = None, extra: Sequence[tuple[np.ndarray, tuple[int, int]]] = ()) -> list[np.ndarray]:
    """``n`` frames with the face pasted at ``start + k * step`` (x, y pixels) on a grey canvas of
    ``size`` (width, height); ``extra`` pastes further (image, (x, y)) still images first."""
    face = face_image() if face is None else face
    width, height = size
    out = []
    for k in range(n):
        canvas = np.full((height, width, 3), 128, np.uint8)
        for image, (ex, ey) in extra:
            canvas[ey:ey + image.shape[0], ex:ex + image.shape[1]] = image
        x, y = start[0] + k * step[0], start[1] + k * step[1]
        canvas[y:y + face.shape[0], x:x + face.shape[1]] = face
        out.append(canvas)
    return out
