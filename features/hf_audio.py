"""``hf-audio``: speech encoders by name or path, pooled over the frames of the real audio.

Two kinds of model, told apart by their feature extractor:

* raw-waveform models (Wav2Vec2 incl. XLS-R, HuBERT, WavLM, data2vec-audio), fed
  ``input_values``; described below;
* models fed ``input_features`` by their own feature extractor: Whisper (the encoder of a
  ``WhisperModel``, log-mel padded to 30 s) and Wav2Vec2-BERT (fbank); see
  :mod:`mer.features.speech_features`. Their frames of padding are never pooled, and a clip
  longer than the extractor's fixed length (Whisper's 30 s) is encoded in windows.

Preprocessing of raw-waveform models follows the model's own feature extractor settings (sampling rate,
``do_normalize``, ``return_attention_mask``, ``padding_value``) but is applied here,
vectorised, in the prefetch threads: ``do_normalize`` is zero mean / unit variance over
the whole clip, exactly ``Wav2Vec2FeatureExtractor.zero_mean_unit_var_norm`` (tested
against the processor), without the processor's per-call overhead.

Pooling is the mean over the model's VALID frames (lengths from the model's
``_get_feat_extract_output_lengths``), so a padded clip pools the same frames it would
alone. A clip longer than ``max_seconds`` is encoded in equal consecutive windows whose
frames are concatenated before pooling: never truncated. Normalisation is over the whole
clip, before windowing (the utterance is the unit, as in the methods).

Padding: models that read an attention mask and use layer norm in their conv feature
encoder give the same valid frames padded or not (within float error). Group-norm
models (wav2vec2-base, HuBERT-base) normalise each conv channel over TIME, so zero
padding changes every frame even with a mask; they, and any model whose feature
extractor uses no attention mask, are only ever run on inputs of identical length
(``equal_cost_only`` in the batch policy, and again inside :meth:`encode`).

Batch policy: on CPU one clip per batch by default (measured: batching a speech encoder
on CPU is slower than one clip at a time: padding and attention memory cost more than
the batching saves); on CUDA a budget of padded seconds.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mer.features.audio_io import audio_samples, load_audio, row_window
from mer.features.base import OutputSpec, SampleError
from mer.features.batching import BatchPolicy, make_batches
from mer.features.hf_base import HFModelEncoder
from mer.features.hf_common import ModelOptions, hidden_stack, masked_sum
from mer.features.speech_features import FeatureLayout, probe_layout, stack_windows, window_features

#: Wav2Vec2FeatureExtractor's variance epsilon (zero_mean_unit_var_norm)
NORM_EPS = 1e-7


@dataclass
class Options(ModelOptions):
    encoder: str = "hf-audio"
    #: manifest column with the audio path (start/end columns give the window)
    column: str = "audio"
    #: longer clips are encoded in equal consecutive windows of at most this many seconds
    #: (and at most the feature extractor's fixed length, e.g. Whisper's 30 s)
    max_seconds: float = 30.0
    #: also store the last layer's frame sequence (ragged (T, D))
    store_frames: bool = False
    #: speed only: clips per batch; 0 = device default (1 on CPU, 32 on CUDA)
    max_batch: int = 0
    #: speed only: padded seconds per batch (items x longest clip)
    max_batch_seconds: float = 200.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be > 0, got {self.max_seconds}")
        if self.max_batch < 0 or self.max_batch_seconds <= 0:
            raise ValueError("max_batch must be >= 0 (0 = device default) and max_batch_seconds > 0")


@dataclass
class PreparedClip:
    """A decoded, normalised clip and its windows, ready for the model."""

    samples: np.ndarray  # float32 (N,)
    bounds: list[tuple[int, int]]  # window [start, end) sample indices
    frames: list[int]  # valid output frames per window
    #: ``input_features`` models: each window's features (batch axis removed, as the extractor made
    #: them, its own padding included) and its valid feature frames; empty for waveform models
    features: list[np.ndarray] = field(default_factory=list)
    feature_frames: list[int] = field(default_factory=list)


def normalise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over the clip: Wav2Vec2FeatureExtractor's formula."""
    mean = x.mean(dtype=np.float64)
    var = x.var(dtype=np.float64)
    return ((x - mean) / math.sqrt(var + NORM_EPS)).astype(np.float32)


def window_bounds(n: int, max_samples: int) -> list[tuple[int, int]]:
    """Split ``n`` samples into the fewest windows of at most ``max_samples``, of equal size.

    Equal sizes (instead of full windows plus a remainder) avoid a last window too short
    for the model's receptive field and keep window lengths alike for batching.
    """
    count = max(1, math.ceil(n / max_samples))
    size = math.ceil(n / count)
    return [(i * size, min(n, (i + 1) * size)) for i in range(count)]


def check_environment() -> None:
    """transformers imports torchaudio for speech models when it is installed; a broken one crashes."""
    from mer.features.environment import check_torchaudio

    problem = check_torchaudio()
    if problem:
        raise RuntimeError(problem)


class HFAudioEncoder(HFModelEncoder):
    family = "hf-audio"
    code_version = "1"
    columns = ("audio",)
    speed_only_options = ("max_batch", "max_batch_seconds")

    def __init__(self, options: Options):
        super().__init__(options)
        self._extractor: Any = None
        #: None for raw-waveform models, else how the extractor lays out input_features
        self._layout: FeatureLayout | None = None
        self._lock = threading.Lock()

    # --- lazily resolved pieces ------------------------------------------------------
    def _before_transformers(self) -> None:
        check_environment()

    def _check_config(self, config: Any) -> None:
        if getattr(config, "add_adapter", False):
            raise ValueError(f"{self.options.model}: models with an adapter after the encoder (add_adapter=True) are not supported")

    def _ensure_extractor(self) -> Any:
        with self._lock:
            if self._extractor is None:
                check_environment()
                from transformers import AutoFeatureExtractor

                fe = AutoFeatureExtractor.from_pretrained(self.path, revision=self.options.revision or None)
                inputs = list(getattr(fe, "model_input_names", []))
                if inputs[:1] == ["input_features"]:
                    if getattr(fe, "dither", 0.0):
                        raise ValueError(f"{self.options.model}: its feature extractor adds random dither "
                                         f"(dither={fe.dither}), so features would differ on every run; set "
                                         f'"dither": 0.0 in its preprocessor_config.json')
                    self._layout = probe_layout(fe, int(fe.sampling_rate), self.options.model)
                elif getattr(fe, "feature_size", None) != 1 or not hasattr(fe, "do_normalize"):
                    raise ValueError(f"{self.options.model}: hf-audio encodes raw-waveform models (Wav2Vec2, HuBERT, WavLM, "
                                     f"data2vec-audio) and models fed input_features by their feature extractor "
                                     f"(Whisper, Wav2Vec2-BERT); its feature extractor is {type(fe).__name__}")
                self._extractor = fe
        return self._extractor

    @property
    def sampling_rate(self) -> int:
        return int(self._ensure_extractor().sampling_rate)

    @property
    def layout(self) -> FeatureLayout | None:
        """How ``input_features`` are laid out; None for a raw-waveform model."""
        self._ensure_extractor()
        return self._layout

    @property
    def uses_attention_mask(self) -> bool:
        return bool(getattr(self._ensure_extractor(), "return_attention_mask", False))

    @property
    def padding_sensitive(self) -> bool:
        """True when zero padding changes valid frames, mask or not: group-norm conv features,
        no attention mask, or a stack of positional convolutions (data2vec-audio's five: the
        encoder zeroes padded frames only before the first, so later ones read what the first
        made of the padding; a test shows the change).

        Fixed-length models (Whisper) are never padded by batching: every window already has
        the extractor's length.
        """
        layout = self.layout
        if layout is not None:
            return not layout.fixed_samples and not self.uses_attention_mask
        config = self._ensure_config()
        norm = getattr(config, "feat_extract_norm", "layer")
        # data2vec-audio names its stack's depth num_conv_pos_embeddings (Wav2Vec2's kernel size)
        # and its kernel conv_pos_kernel_size
        stacked = hasattr(config, "conv_pos_kernel_size") and int(getattr(config, "num_conv_pos_embeddings", 1)) > 1
        return norm == "group" or stacked or not self.uses_attention_mask

    @property
    def window_samples(self) -> int:
        """The longest window: ``max_seconds``, and never more than a fixed-length extractor takes."""
        longest = max(1, int(self.options.max_seconds * self.sampling_rate))
        layout = self.layout
        return min(longest, layout.fixed_samples) if layout is not None and layout.fixed_samples else longest

    # --- interface -------------------------------------------------------------------
    def load(self, device: Any) -> None:
        self._ensure_config()
        self._ensure_extractor()
        model = self._load_model(device)
        if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
            model = model.get_encoder()  # Whisper: the encoder; the decoder is never run
        if not hasattr(model, "_get_feat_extract_output_lengths"):
            raise ValueError(f"{self.options.model}: {type(model).__name__} is not a speech encoder "
                             "(no _get_feat_extract_output_lengths)")
        self._model = model
        self.device = device

    def outputs(self) -> list[OutputSpec]:
        config = self._ensure_config()
        specs = [OutputSpec("pooled", self.pooled_shape(), attrs={"layers": self.layer_indices, "sampling_rate": self.sampling_rate})]
        if self.options.store_frames:
            specs.append(OutputSpec("frames", (int(config.hidden_size),), ragged=True, attrs={"layer": config.num_hidden_layers}))
        return specs

    def batch_policy(self) -> BatchPolicy:
        items = self.options.max_batch or (32 if self.on_cuda() else 1)
        return BatchPolicy(max_items=items, max_cost=self.options.max_batch_seconds * self.sampling_rate,
                           equal_cost_only=self.padding_sensitive)

    def cost(self, row: dict) -> float:
        """Exact number of samples after resampling (header only): equal cost = equal length."""
        start, end = row_window(row)
        try:
            return float(audio_samples(row.get(self.options.column), self.sampling_rate, start, end))
        except SampleError:
            return 0.0  # prepare() raises and records the same error

    def prepare(self, row: dict) -> PreparedClip:
        if self._model is None:
            raise RuntimeError("hf-audio: prepare() before load()")
        path = row.get(self.options.column)
        start, end = row_window(row)
        samples = load_audio(path, self.sampling_rate, start, end)
        bounds = window_bounds(len(samples), self.window_samples)
        if self._layout is not None:
            pairs = [window_features(self._extractor, samples[a:b], self.sampling_rate, str(path)) for a, b in bounds]
            valid = [n for _, n in pairs]
            return PreparedClip(samples, bounds, self.frame_counts(valid), [f for f, _ in pairs], valid)
        if self._extractor.do_normalize:
            samples = normalise(samples)
        frames = self.frame_counts([b - a for a, b in bounds])
        if min(frames) < 1:
            raise SampleError("features", f"{path}: {len(samples) / self.sampling_rate:.3f} s of audio is shorter than the "
                              f"model's receptive field ({self.receptive_field()} samples at {self.sampling_rate} Hz)")
        return PreparedClip(samples, bounds, frames)

    def frame_counts(self, lengths: list[int]) -> list[int]:
        """Valid output frames for inputs of these lengths (the model's own formula): lengths in
        samples for raw-waveform models, in feature frames for ``input_features`` models."""
        import torch

        out = self._model._get_feat_extract_output_lengths(torch.tensor(lengths, dtype=torch.long))
        return [int(v) for v in out.tolist()]

    def receptive_field(self) -> int:
        config = self._ensure_config()
        field_ = 1
        for kernel, stride in reversed(list(zip(config.conv_kernel, config.conv_stride))):
            field_ = (field_ - 1) * stride + kernel
        return field_

    def encode(self, batch: list[PreparedClip]) -> list[dict[str, np.ndarray]]:
        import torch

        from mer.features.device import inference, to_numpy

        if self._model is None:
            raise RuntimeError("hf-audio: encode() before load()")
        config = self._config
        layers = self.layer_indices
        need_all = layers != [config.num_hidden_layers]
        # (clip, window start, window end, valid frames, window index)
        windows = [(i, a, b, n, w) for i, clip in enumerate(batch) for w, ((a, b), n) in enumerate(zip(clip.bounds, clip.frames))]
        sums: list[Any] = [0.0] * len(batch)
        counts = [0] * len(batch)
        frames: list[dict[int, np.ndarray]] = [{} for _ in batch]  # window start -> (n, D)
        # model calls: the batch policy applied to windows (equal lengths only where padding matters)
        groups = make_batches({str(j): self._window_cost(w[2] - w[1]) for j, w in enumerate(windows)}, self.batch_policy())
        for group in groups:
            members = [windows[int(j)] for j in group]
            kwargs = self._model_inputs(batch, members)
            with inference(self.device, self.options.autocast):
                out = self._model(**kwargs, output_hidden_states=need_all)
                states = hidden_stack(out, layers, config.num_hidden_layers)
                n_frames = torch.tensor([m[3] for m in members], device=states[0].device)
                if int(n_frames.max()) > states[0].shape[1]:
                    raise RuntimeError(f"model returned {states[0].shape[1]} frames, expected {int(n_frames.max())}")
                frame_mask = torch.arange(states[0].shape[1], device=n_frames.device)[None, :] < n_frames[:, None]
                pooled = to_numpy(torch.stack([masked_sum(h, frame_mask) for h in states], dim=1))  # (B, k, D)
                last = to_numpy(out.last_hidden_state) if self.options.store_frames else None
            for row, (i, a, _, n, _) in enumerate(members):
                sums[i] = sums[i] + pooled[row].astype(np.float64)
                counts[i] += n
                if last is not None:
                    frames[i][a] = last[row, :n]
        results = []
        for i in range(len(batch)):
            vector = (sums[i] / counts[i]).astype(np.float32)
            result = {"pooled": vector[0] if self.options.layers == "last" else vector}
            if self.options.store_frames:
                # groups run in length order: put the windows back in time order
                result["frames"] = np.concatenate([frames[i][a] for a in sorted(frames[i])], axis=0)
            results.append(result)
        return results

    def _window_cost(self, samples: int) -> float:
        """What a window costs a batch: its samples, or the fixed length every window is padded to."""
        layout = self._layout
        return float(layout.fixed_samples) if layout is not None and layout.fixed_samples else float(samples)

    def _model_inputs(self, batch: list[PreparedClip], members: list[tuple[int, int, int, int, int]]) -> dict[str, Any]:
        """The model's keyword inputs for these windows, padded to the longest with a mask."""
        import torch

        from mer.features.device import host_tensor, to_device

        if self._layout is not None:
            values, mask = stack_windows([batch[i].features[w] for i, _, _, _, w in members],
                                         [batch[i].feature_frames[w] for i, _, _, _, w in members], self._layout)
            kwargs = {"input_features": to_device(torch.from_numpy(values), self.device)}
            if not self._layout.fixed_samples and self.uses_attention_mask:
                kwargs["attention_mask"] = to_device(torch.from_numpy(mask), self.device)
            return kwargs
        lengths = [b - a for _, a, b, _, _ in members]
        longest = max(lengths)
        # pinned on CUDA: to_device copies them asynchronously, with no staging copy first
        values = host_tensor((len(members), longest), float(self._extractor.padding_value), torch.float32, self.device)
        mask = host_tensor((len(members), longest), 0, torch.long, self.device)
        for row, (i, a, b, _, _) in enumerate(members):
            values[row, : b - a] = torch.from_numpy(batch[i].samples[a:b])
            mask[row, : b - a] = 1
        kwargs = {"input_values": to_device(values, self.device)}
        if self.uses_attention_mask:
            kwargs["attention_mask"] = to_device(mask, self.device)
        return kwargs


ENCODER = HFAudioEncoder
