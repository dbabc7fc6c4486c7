"""``face-landmarks``: raw video -> per-frame 2-D facial landmarks, (T, 51, 2), plus a validity mask.

The same output as the OpenFace CSV encoder (``landmarks``), computed from the video itself with
nothing but ``pip install 'mer[face]'``: dlib's HOG face detector and 68-point shape predictor
(:mod:`mer.features.face_track`), the 68-point iBUG scheme OpenFace uses. Node ``i`` is point
``i + 17`` (jaw dropped), each clip is min-max normalised over its valid frames exactly as
:func:`mer.features.landmarks.normalise_clip` does, and frames without the tracked face are
zeros marked False in ``valid``, so the MPUC-MER graph net and everything downstream read these
features unchanged.

Frames are decoded with PyAV at ``fps`` (timestamps, not frame counting; see
:mod:`mer.features.video_io`) in the row's ``start``/``end`` window. Also stored per frame: the
face ``box`` (left, top, right, bottom in the decoded frame's pixels), the detector's
``confidence`` (its SVM score), ``detected`` (the detector found the face on that frame, as
opposed to tracked it from the previous frame) and ``time`` (seconds into the video).

A clip without a face on any frame is a recorded failure (stage ``features``, "no face"), never
an all-zero sequence.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mer.features.audio_io import row_window
from mer.features.base import Encoder, OutputSpec, SampleError
from mer.features.batching import BatchPolicy
from mer.features.face_track import TrackerSettings, model_identity, shape_predictor, track_frames
from mer.features.landmarks import POINTS, normalise_clip
from mer.features.video_io import iter_frames, video_info


@dataclass
class Options:
    encoder: str = "face-landmarks"
    #: frames per second sampled from the video (timestamps); 0 = the file's own frames
    fps: float = 30.0
    #: run the face detector every k-th frame and track the face in between (1 = every frame)
    detect_every: int = 5
    #: frames are scaled to this longer side for detection only (landmarks use full resolution)
    detect_max_side: int = 640
    #: detector upsampling: 1 finds faces down to ~40 px at 2-4x the cost
    upsample: int = 0
    #: detections scoring below this are ignored (dlib's adjust_threshold; 0 = its default)
    min_score: float = 0.0
    #: manifest column with the video path (start/end columns give the window)
    column: str = "video"

    def __post_init__(self) -> None:
        if self.fps < 0:
            raise ValueError(f"fps must be >= 0 (0 = native frames), got {self.fps}")
        self.tracker()  # validates detect_every, detect_max_side, upsample

    def tracker(self) -> TrackerSettings:
        return TrackerSettings(detect_every=self.detect_every, detect_max_side=self.detect_max_side,
                               upsample=self.upsample, min_score=self.min_score)


class FaceLandmarksEncoder(Encoder):
    family = "face-landmarks"
    code_version = "1"
    columns = ("video",)

    def __init__(self, options: Options):
        super().__init__(options)
        self.columns = (options.column,)

    def identity(self) -> dict[str, Any]:
        """The predictor model and the dlib version (its detector is built into the library)."""
        return model_identity()

    def load(self, device: Any) -> None:
        shape_predictor()  # load the model once, before the prefetch threads start
        self.device = device

    def outputs(self) -> list[OutputSpec]:
        # fps: the frame rate MPUC-MER's time-aligned views need (absent for native frame rates, which vary)
        rate = {"fps": float(self.options.fps)} if self.options.fps else {}
        return [OutputSpec("frames", (len(POINTS), 2), ragged=True,
                           attrs={"points": list(POINTS), "coords": ["x", "y"], **rate}),
                OutputSpec("valid", (), ragged=True, dtype="bool"),
                OutputSpec("box", (4,), ragged=True, dtype="float32", attrs={"coords": ["left", "top", "right", "bottom"]}),
                OutputSpec("confidence", (), ragged=True, dtype="float32"),
                OutputSpec("detected", (), ragged=True, dtype="bool"),
                OutputSpec("time", (), ragged=True, dtype="float32", attrs={"unit": "seconds"})]

    def batch_policy(self) -> BatchPolicy:
        return BatchPolicy(max_items=32)

    def cost(self, row: dict) -> float:
        """Frames to process, from the container's stated duration (no decoding)."""
        start, end = row_window(row)
        try:
            info = video_info(row.get(self.options.column))
        except SampleError:
            return 0.0  # prepare() raises and records the same error
        seconds = (min(end, info.duration) if end is not None else info.duration) - (start or 0.0)
        return max(0.0, seconds) * (self.options.fps or info.fps or 30.0)

    def prepare(self, row: dict) -> dict[str, np.ndarray]:
        path = row.get(self.options.column)
        start, end = row_window(row)
        times: list[float] = []

        def frames():
            for frame in iter_frames(path, self.options.fps or None, start, end):
                times.append(frame.time)
                yield frame.rgb

        track = track_frames(frames(), self.options.tracker())
        if not track.valid.any():
            raise SampleError("features", f"{path}: no face found in any of {len(track.valid)} frames")
        kept = track.points[:, list(POINTS), :].astype(np.float64)
        coords = normalise_clip(kept[..., 0], kept[..., 1], track.valid, str(path))
        return {"frames": coords, "valid": track.valid, "box": track.box, "confidence": track.confidence,
                "detected": track.detected, "time": np.asarray(times, dtype=np.float32)}

    def encode(self, batch: list[Any]) -> list[dict[str, np.ndarray]]:
        return list(batch)


ENCODER = FaceLandmarksEncoder
