"""``hf-video``: Hugging Face video encoders (VideoMAE-style: fixed-length frame clips) over a video.

The window's frames are sampled at ``fps`` (optionally the face crop; see
:mod:`mer.features.hf_visual`) and cut into consecutive clips of the model's ``num_frames``
(16 for VideoMAE); a last, shorter clip is completed by repeating its last frame (so a 1-second
utterance is still encoded, as video models are usually applied). Each clip goes through the
model's own processor and the model; a clip's embedding is the mean over its tokens (VideoMAE
has no CLS token; its classifier pools the same way), ``pooled`` the mean over the clips, per
selected layer. ``store_frames`` keeps the per-clip sequence (ragged (C, D)) and each clip's
start time.

The default ``fps`` of 8 matches how VideoMAE's Kinetics checkpoints were trained (16 frames at a
stride of 4 of 25-30 fps video: about 2 s per clip). ``max_clips`` caps the clips per video: the
rate is lowered so they spread over the whole window.

Batching: clips are independent model inputs of identical shape, so the clips of several videos
share model calls of at most ``max_batch_clips``; batched output equals one-at-a-time (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mer.features.base import OutputSpec, SampleError
from mer.features.batching import BatchPolicy
from mer.features.hf_visual import (VisualEncoder, VisualOptions, check_positive, sample_frames,
                                    window_fps)
from mer.features.video_io import video_info


@dataclass
class Options(VisualOptions):
    encoder: str = "hf-video"
    #: frames per second sampled from the video (clips are the model's num_frames long)
    fps: float = 8.0
    #: at most this many clips per video (the rate is lowered to spread them over the window); 0 = no cap
    max_clips: int = 16
    #: speed only: videos per batch (0 = device default: 1 on CPU, 8 on CUDA) and clips per model call
    max_batch: int = 0
    max_batch_clips: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("fps", self.fps)
        if self.max_clips < 0 or self.max_batch < 0 or self.max_batch_clips < 1:
            raise ValueError("max_clips and max_batch must be >= 0, max_batch_clips >= 1")


@dataclass
class PreparedClips:
    starts: np.ndarray        # (C,) start time of each clip, seconds
    pixel_values: np.ndarray  # (C, num_frames, 3, H, W) float32


def cut_clips(frames: list[np.ndarray], num_frames: int) -> list[list[np.ndarray]]:
    """Consecutive clips of ``num_frames``; the last one completed by repeating its last frame."""
    clips = [frames[i:i + num_frames] for i in range(0, len(frames), num_frames)]
    last = clips[-1]
    clips[-1] = last + [last[-1]] * (num_frames - len(last))
    return clips


class HFVideoEncoder(VisualEncoder):
    family = "hf-video"
    code_version = "1"
    speed_only_options = ("max_batch", "max_batch_clips")

    def load(self, device: Any) -> None:
        super().load(device)
        if not getattr(self.visual.config, "num_frames", 0):
            raise ValueError(f"{self.options.model}: hf-video needs a video model whose config states num_frames "
                             f"(VideoMAE-style); {type(self.visual.config).__name__} does not")

    @property
    def num_frames(self) -> int:
        return int(self.visual.config.num_frames)

    def outputs(self) -> list[OutputSpec]:
        dim = int(self.visual.config.hidden_size)
        specs = [OutputSpec("pooled", self.pooled_shape(), attrs={"layers": self.layer_indices,
                                                                   "num_frames": self.num_frames})]
        if self.options.store_frames:
            specs += [OutputSpec("frames", (dim,), ragged=True, attrs={"layer": self.visual.num_layers, "unit": "clip"}),
                      OutputSpec("time", (), ragged=True, dtype="float32", attrs={"unit": "seconds", "of": "clip start"})]
        return specs

    def batch_policy(self) -> BatchPolicy:
        cuda = self.device is not None and getattr(self.device, "type", "cpu") == "cuda"
        return BatchPolicy(max_items=self.options.max_batch or (8 if cuda else 1))

    def _max_frames(self) -> int:
        return self.options.max_clips * self.num_frames

    def cost(self, row: dict) -> float:
        """Clips to encode, from the container's stated duration (no decoding)."""
        try:
            info = video_info(row.get(self.options.column))
            rate = window_fps(row, self.options.column, self.options.fps, self._max_frames())
        except SampleError:
            return 0.0  # prepare() raises and records the same error
        return float(np.ceil(info.duration * rate / self.num_frames))

    def prepare(self, row: dict) -> PreparedClips:
        if self.visual.model is None:
            raise RuntimeError("hf-video: prepare() before load()")
        times, frames = sample_frames(row, self.options.column, self.options.fps, self._max_frames(), self.options.face())
        clips = cut_clips(frames, self.num_frames)
        pixels = self.visual.processor(clips, return_tensors="np")["pixel_values"]
        starts = times[:: self.num_frames]
        return PreparedClips(np.asarray(starts, dtype=np.float32), np.asarray(pixels, dtype=np.float32))

    def encode(self, batch: list[PreparedClips]) -> list[dict[str, np.ndarray]]:
        return self.encode_inputs([v.pixel_values for v in batch], [v.starts for v in batch],
                                  self.options.max_batch_clips, "mean")


ENCODER = HFVideoEncoder
