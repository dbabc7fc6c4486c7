"""``hf-vision``: any Hugging Face image encoder (CLIP vision tower, DINOv2, ViT, SigLIP...) over video frames.

Frames are sampled at ``fps`` (optionally the face crop; see :mod:`mer.features.hf_visual`),
preprocessed by the model's own image processor (resize, crop, normalisation as the checkpoint
was trained) in the prefetch threads, and encoded as images. A frame's embedding is its ``token``:
``cls`` (token 0: the CLS token of ViT/CLIP/DINOv2) or ``mean`` (all tokens); ``pooled`` is the
mean over the clip's frames, per selected layer (``layers: all`` = embeddings + every layer).
``store_frames`` also keeps the last layer's per-frame sequence and the frame times.

Batching: frames are independent images, so the frames of several clips are concatenated into
one model call of at most ``max_batch_frames`` images; there is no padding, and batched output
equals one-at-a-time (tested). On CPU one clip per batch by default, 16 clips on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from mer.features.base import OutputSpec, SampleError
from mer.features.batching import BatchPolicy
from mer.features.hf_visual import (VisualEncoder, VisualOptions, check_positive, sample_frames,
                                    window_fps)
from mer.features.video_io import video_info


@dataclass
class Options(VisualOptions):
    encoder: str = "hf-vision"
    #: frames per second sampled from the video
    fps: float = 2.0
    #: at most this many frames per clip (the rate is lowered to spread them over the window); 0 = no cap
    max_frames: int = 64
    #: cls: token 0 of each frame; mean: the mean over all tokens
    token: Literal["cls", "mean"] = "cls"
    #: speed only: clips per batch (0 = device default: 1 on CPU, 16 on CUDA) and images per model call
    max_batch: int = 0
    max_batch_frames: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("fps", self.fps)
        if self.max_frames < 0 or self.max_batch < 0 or self.max_batch_frames < 1:
            raise ValueError("max_frames and max_batch must be >= 0, max_batch_frames >= 1")


@dataclass
class PreparedFrames:
    times: np.ndarray         # (T,) seconds
    pixel_values: np.ndarray  # (T, 3, H, W) float32, the processor's output


class HFVisionEncoder(VisualEncoder):
    family = "hf-vision"
    code_version = "1"
    speed_only_options = ("max_batch", "max_batch_frames")

    def outputs(self) -> list[OutputSpec]:
        dim = int(self.visual.config.hidden_size)
        specs = [OutputSpec("pooled", self.pooled_shape(), attrs={"layers": self.layer_indices,
                                                                   "token": self.options.token})]
        if self.options.store_frames:
            specs += [OutputSpec("frames", (dim,), ragged=True, attrs={"layer": self.visual.num_layers}),
                      OutputSpec("time", (), ragged=True, dtype="float32", attrs={"unit": "seconds"})]
        return specs

    def batch_policy(self) -> BatchPolicy:
        cuda = self.device is not None and getattr(self.device, "type", "cpu") == "cuda"
        return BatchPolicy(max_items=self.options.max_batch or (16 if cuda else 1))

    def cost(self, row: dict) -> float:
        """Frames to encode, from the container's stated duration (no decoding)."""
        try:
            info = video_info(row.get(self.options.column))
            rate = window_fps(row, self.options.column, self.options.fps, self.options.max_frames)
        except SampleError:
            return 0.0  # prepare() raises and records the same error
        return info.duration * rate

    def prepare(self, row: dict) -> PreparedFrames:
        if self.visual.model is None:
            raise RuntimeError("hf-vision: prepare() before load()")
        times, frames = sample_frames(row, self.options.column, self.options.fps, self.options.max_frames,
                                      self.options.face())
        pixels = self.visual.processor(images=frames, return_tensors="np")["pixel_values"]
        return PreparedFrames(times, np.asarray(pixels, dtype=np.float32))

    def encode(self, batch: list[PreparedFrames]) -> list[dict[str, np.ndarray]]:
        return self.encode_inputs([c.pixel_values for c in batch], [c.times for c in batch],
                                  self.options.max_batch_frames, self.options.token)


ENCODER = HFVisionEncoder
