"""Audio decoding for every audio encoder: soundfile (libsndfile) + soxr, no torchaudio.

Why these two: libsndfile reads WAV/FLAC/OGG (and MP3 with libsndfile >= 1.1) and can
seek, so a 3-second segment of a one-hour recording costs 3 seconds of decoding; soxr
is a fast, high-quality resampler without a torch dependency (torchaudio breaks
transformers in some environments, see ``mer.features.environment``).

Video containers libsndfile cannot open (``.mp4`` as MELD ships, ``.mkv``, ``.m4a``, ...;
see ``mer.features.av_audio.EXTENSIONS``) are routed to :mod:`mer.features.av_audio`
(PyAV, the optional extra ``mer[video]``) with the same semantics, so every audio
encoder reads them through these functions.

Every problem with a file is a :class:`SampleError` naming the file: stage ``read``
when the file or the requested window cannot be reached, ``decode`` when its content
is bad (unparseable, truncated, empty, NaN/inf samples). Truncation is checked twice: the
frames the header promises (:mod:`mer.features.audio_header`) against the frames libsndfile
reports, and the frames asked for against the frames decoded.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from mer.features import av_audio
from mer.features.audio_header import promised_frames
from mer.features.base import SampleError
from mer.features.file_check import unreadable_reason

#: resampler quality; "HQ" is soxr's recommended high quality (passband to ~0.95 Nyquist)
RESAMPLE_QUALITY = "HQ"
#: an ``end`` up to this many seconds past the end of the file is clamped (timestamps in
#: transcripts are rounded); beyond it the window is an error, never silently shortened
END_TOLERANCE_S = 0.05


def _is_set(value: float | None) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def is_container(path: str | Path) -> bool:
    """A media container whose audio track PyAV decodes (libsndfile cannot open it)."""
    return Path(str(path)).suffix.lower() in av_audio.EXTENSIONS


def _container_seconds(path: str | Path, start: float | None, end: float | None) -> float:
    """Window length from the container's stated duration (metadata only, no decoding)."""
    reason = unreadable_reason(str(path), "media file")
    if reason:
        raise SampleError("read", f"{path}: {reason}")
    duration = av_audio.av_duration(path)
    first = float(start) if _is_set(start) else 0.0
    last = min(float(end), duration) if _is_set(end) else duration
    if first >= duration or last <= first:
        raise SampleError("read", f"{path}: window [{start}, {end}) s is outside the audio ({duration:.3f} s)")
    return last - first


def _open_info(path: str | Path) -> sf._SoundFileInfo:
    path = Path(path)
    reason = unreadable_reason(path, "audio file")
    if reason:
        raise SampleError("read", f"{path}: {reason}")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as exc:  # LibsndfileError subclasses RuntimeError
        raise SampleError("decode", f"{path}: cannot read audio header: {exc}") from None
    promised = promised_frames(path)  # libsndfile clamps a cut WAV/AIFF/AU to what is there
    if promised is not None and promised > info.frames:
        raise SampleError("decode", f"{path}: truncated file: the header promises {promised} frames, the file "
                                    f"holds {info.frames}")
    return info


def _window(path: str | Path, frames: int, sr: int, start: float | None, end: float | None) -> tuple[int, int]:
    """``[first, last)`` frame indices of the requested window; errors for a window outside the file."""
    duration = frames / sr if sr else 0.0
    first = 0
    last = frames
    if _is_set(start):
        if start < 0:
            raise SampleError("read", f"{path}: window start {start:.3f} s is negative")
        first = int(round(start * sr))
        if first >= frames:
            raise SampleError("read", f"{path}: window start {start:.3f} s is at or past the end of the file ({duration:.3f} s)")
    if _is_set(end):
        if end > duration + END_TOLERANCE_S:
            raise SampleError("read", f"{path}: window end {end:.3f} s is past the end of the file ({duration:.3f} s)")
        last = min(frames, int(round(end * sr)))
    if last <= first:
        raise SampleError("read", f"{path}: empty window [{start}, {end}) s (file is {duration:.3f} s)")
    return first, last


def resampled_length(n_frames: int, sr: int, target_sr: int) -> int:
    """Number of samples soxr returns for ``n_frames`` input frames.

    python-soxr computes the output length as ``(size_t)(ilen * out_rate / in_rate + .5)``;
    reproducing it lets ``cost()`` give the exact sample count without decoding.
    """
    if sr == target_sr:
        return int(n_frames)
    return int(n_frames * float(target_sr) / float(sr) + 0.5)


def audio_seconds(path: str | Path, start: float | None = None, end: float | None = None) -> float:
    """Seconds of audio in the window, from the header only (for ``cost()``)."""
    if is_container(path):
        return _container_seconds(path, start, end)
    info = _open_info(path)
    first, last = _window(path, info.frames, info.samplerate, start, end)
    return (last - first) / info.samplerate


def audio_samples(path: str | Path, target_sr: int, start: float | None = None, end: float | None = None) -> int:
    """Length in samples that :func:`load_audio` will return, from the header only.

    Exact for files libsndfile reads. For video containers it is an estimate from the
    stated duration (codec frames and priming make the decoded length differ slightly);
    hf-audio therefore re-checks exact lengths before it batches padding-sensitive models.
    """
    if is_container(path):
        return int(round(_container_seconds(path, start, end) * target_sr))
    info = _open_info(path)
    first, last = _window(path, info.frames, info.samplerate, start, end)
    return resampled_length(last - first, info.samplerate, target_sr)


def load_audio(path: str | Path, target_sr: int, start: float | None = None, end: float | None = None) -> np.ndarray:
    """Mono float32 samples of ``[start, end)`` seconds of ``path`` at ``target_sr``.

    Only the window is decoded (seek + read). Channels are averaged. NaN ``start``/``end``
    (a manifest's empty cell) mean the file's beginning/end. Thread-safe: every call
    opens its own handle.
    """
    if is_container(path):
        return av_audio.decode_av(path, target_sr, start, end)
    info = _open_info(path)
    if info.frames <= 0:
        raise SampleError("decode", f"{path}: zero-length audio (header reports 0 frames)")
    sr = info.samplerate
    first, last = _window(path, info.frames, sr, start, end)
    want = last - first
    try:
        with sf.SoundFile(str(path)) as f:
            if first:
                f.seek(first)
            data = f.read(want, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise SampleError("decode", f"{path}: cannot decode audio: {exc}") from None
    if data.shape[0] == 0:
        raise SampleError("decode", f"{path}: zero-length audio (no frames could be decoded)")
    if data.shape[0] < want:
        raise SampleError("decode", f"{path}: truncated file: expected {want} frames from frame {first}, decoded {data.shape[0]}")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise SampleError("decode", f"{path}: {bad} NaN/inf sample value(s)")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if sr != target_sr:
        mono = soxr.resample(np.ascontiguousarray(mono), sr, target_sr, quality=RESAMPLE_QUALITY)
        if mono.shape[0] == 0:
            raise SampleError("decode", f"{path}: {want} frame(s) at {sr} Hz resample to zero samples at {target_sr} Hz")
    return np.ascontiguousarray(mono, dtype=np.float32)


def row_window(row: dict) -> tuple[float | None, float | None]:
    """``(start, end)`` of a manifest row; missing or NaN values mean the whole file."""
    start = row.get("start")
    end = row.get("end")
    return (float(start) if _is_set(start) and start != "" else None, float(end) if _is_set(end) and end != "" else None)
