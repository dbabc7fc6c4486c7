"""What ``hf-vision`` and ``hf-video`` share: frames sampled from a video (optionally the face crop),
the model's own image processor, and the model with its layer selection.

Frames are decoded with PyAV at ``fps`` (timestamps, :mod:`mer.features.video_io`) in the row's
``start``/``end`` window. ``max_frames`` caps the frames of one clip: when the window holds more
at ``fps``, the rate is lowered for that clip so the frames stay evenly spread over the whole
window (never truncated to its beginning); a long video never sits in memory as raw frames, only
as processed model inputs.

Face crop (``face_crop: true``): the face is found on every sampled frame by
:mod:`mer.features.face_track` (frames are too far apart to track between), the crop is the face
box grown by ``face_margin`` on every side, made square and clamped to the image; frames without
the face are left out (their times tell which were kept), and a clip without a face on any frame
is a recorded failure. The crop settings are options, so they are in the cache key, and the dlib
version and landmark model are in the identity.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from mer.features.audio_io import row_window
from mer.features.base import Encoder, SampleError
from mer.features.hf_common import (ModelOptions, hidden_stack, load_pretrained, model_identity, resolve_layers,
                                    resolve_model)
from mer.features.video_io import iter_frames, video_info


@dataclass(frozen=True)
class FaceCrop:
    #: grow the face box by this fraction of its side on every side (context: hair, chin)
    margin: float = 0.25
    #: detector settings (see mer.features.face_track.TrackerSettings)
    detect_max_side: int = 640
    upsample: int = 0


@dataclass
class VisualOptions(ModelOptions):
    """What ``hf-vision`` and ``hf-video`` share after :class:`ModelOptions`: the video column,
    the optional face crop and the stored per-frame (per-clip) sequence."""

    #: manifest column with the video path (start/end columns give the window)
    column: str = "video"
    #: encode the face crop instead of the whole frame
    face_crop: bool = False
    #: face crop: grow the face box by this fraction of its side on every side
    face_margin: float = 0.25
    #: also store the last layer's per-frame (hf-vision) / per-clip (hf-video) embeddings and their times
    store_frames: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.face_margin < 0:
            raise ValueError(f"face_margin must be >= 0, got {self.face_margin}")

    def face(self) -> FaceCrop | None:
        return FaceCrop(margin=self.face_margin) if self.face_crop else None


def window_fps(row: dict, column: str, fps: float, max_frames: int) -> float:
    """``fps``, lowered so that the window holds at most ``max_frames`` frames (0 = no cap)."""
    if not max_frames:
        return fps
    start, end = row_window(row)
    duration = video_info(row.get(column)).duration
    seconds = (min(end, duration) if end is not None and duration else end or duration) - (start or 0.0)
    if seconds > 0 and seconds * fps > max_frames:
        return max_frames / seconds
    return fps


def square_crop(rgb: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    """The face box grown by ``margin`` per side, made square around its centre, clamped (shifted)
    into the image; a face larger than the image gets the whole image side."""
    height, width = rgb.shape[:2]
    side = max(box[2] - box[0], box[3] - box[1]) * (1 + 2 * margin)
    side = int(round(min(side, width, height)))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    left = int(round(min(max(cx - side / 2, 0), width - side)))
    top = int(round(min(max(cy - side / 2, 0), height - side)))
    return rgb[top:top + side, left:left + side]


def sample_frames(row: dict, column: str, fps: float, max_frames: int,
                  face: FaceCrop | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(times, RGB frames or face crops) of a row's video window."""
    path = row.get(column)
    start, end = row_window(row)
    rate = window_fps(row, column, fps, max_frames)
    tracker = None
    if face is not None:
        from mer.features.face_track import FaceTracker, TrackerSettings

        tracker = FaceTracker(TrackerSettings(detect_every=1, detect_max_side=face.detect_max_side, upsample=face.upsample))
    times, frames, seen = [], [], 0
    for frame in iter_frames(path, rate, start, end):
        seen += 1
        if max_frames and len(frames) >= max_frames:
            break  # the stated duration was short of the real one: keep the cap
        image = frame.rgb
        if tracker is not None:
            _, box, _, _ = tracker.step(image)
            if box is None:
                continue
            image = square_crop(image, box, face.margin)
        times.append(frame.time)
        frames.append(image)
    if not frames:
        raise SampleError("features", f"{path}: no face found in any of {seen} sampled frames" if tracker is not None
                          else f"{path}: no frame decoded")
    return np.asarray(times, dtype=np.float32), frames


class VisualModel:
    """A Hugging Face vision/video model, its image processor and identity, loaded once, thread-safe."""

    def __init__(self, spec: str, revision: str):
        self.spec, self.revision = spec, revision
        self.path = resolve_model(spec)
        self._lock = threading.Lock()
        self._processor: Any = None
        self._identity: dict[str, Any] | None = None
        self.model: Any = None
        self.config: Any = None

    def identity(self, face: FaceCrop | None) -> dict[str, Any]:
        if self._identity is None:
            self._identity = model_identity(self.spec, self.revision)
        if face is None:
            return self._identity
        from mer.features.face_track import model_identity as face_identity

        return {**self._identity, **face_identity()}

    @property
    def processor(self) -> Any:
        with self._lock:
            if self._processor is None:
                from transformers import AutoImageProcessor

                self._processor = AutoImageProcessor.from_pretrained(self.path, revision=self.revision or None)
        return self._processor

    def load(self, device: Any) -> None:
        from transformers import AutoModel

        model = load_pretrained(AutoModel, self.path, self.revision)
        # a full CLIP/SigLIP checkpoint: keep its vision tower (the text tower needs input_ids)
        if hasattr(model, "vision_model") and not hasattr(model.config, "num_hidden_layers"):
            model = model.vision_model
        self.config = model.config
        self.model = model.eval().to(device)
        self.processor  # noqa: B018  (load it before the prefetch threads use it)

    @property
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)


def pool_tokens(states: list[Any], token: str) -> Any:
    """(B, k, D) float32 from k hidden states (B, N, D): token 0 (CLS) or the mean over tokens."""
    import torch

    rows = [h[:, 0] if token == "cls" else h.float().mean(dim=1) for h in states]
    return torch.stack([r.float() for r in rows], dim=1)


def check_positive(name: str, value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value}")


class VisualEncoder(Encoder):
    """What ``hf-vision`` and ``hf-video`` share: the model (:class:`VisualModel`), its identity
    (the face-crop settings included), loading, and the shape of the pooled output."""

    columns = ("video",)

    def __init__(self, options: VisualOptions):
        super().__init__(options)
        self.columns = (options.column,)
        self.visual = VisualModel(options.model, options.revision)

    def identity(self) -> dict[str, Any]:
        return self.visual.identity(self.options.face())

    def load(self, device: Any) -> None:
        self.visual.load(device)
        self.device = device

    @property
    def layer_indices(self) -> list[int]:
        return resolve_layers(self.options.layers, self.visual.num_layers)

    def pooled_shape(self) -> tuple[int, ...]:
        """(D,) for ``layers: last``, else (L, D) over the selected hidden states."""
        dim = int(self.visual.config.hidden_size)
        return (dim,) if self.options.layers == "last" else (len(self.layer_indices), dim)

    def encode_inputs(self, inputs: list[np.ndarray], times: list[np.ndarray], step: int,
                      token: str) -> list[dict[str, np.ndarray]]:
        """Encode each sample's model inputs (frames for hf-vision, clips for hf-video), concatenated
        over the batch and cut into model calls of ``step`` (no padding: batched equals one at a
        time); a sample's ``pooled`` vector is the mean of its inputs' ``token`` embeddings, and
        ``store_frames`` keeps the last layer's per-input sequence with its ``times``."""
        import torch

        from mer.features.device import inference, to_device, to_numpy

        layers = self.layer_indices
        n_layers = self.visual.num_layers
        need_all = layers != [n_layers]
        stacked = np.concatenate(inputs, axis=0)
        pooled, last = [], []
        for i in range(0, len(stacked), step):
            chunk = to_device(torch.from_numpy(np.ascontiguousarray(stacked[i:i + step])), self.device)
            with inference(self.device, self.options.autocast):
                out = self.visual.model(pixel_values=chunk, output_hidden_states=need_all)
                pooled.append(to_numpy(pool_tokens(hidden_stack(out, layers, n_layers), token)))  # (n, k, D)
                if self.options.store_frames:
                    last.append(to_numpy(pool_tokens([out.last_hidden_state], token))[:, 0])
        per_input = np.concatenate(pooled, axis=0)
        sequences = np.concatenate(last, axis=0) if last else None
        results, offset = [], 0
        for sample_inputs, sample_times in zip(inputs, times):
            n = len(sample_inputs)
            vector = per_input[offset:offset + n].astype(np.float64).mean(axis=0).astype(np.float32)
            result = {"pooled": vector[0] if self.options.layers == "last" else vector}
            if sequences is not None:
                result["frames"] = sequences[offset:offset + n]
                result["time"] = sample_times
            results.append(result)
            offset += n
        return results
