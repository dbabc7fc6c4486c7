"""Speech models fed ``input_features`` by their own feature extractor (Whisper, Wav2Vec2-BERT, ...).

Raw-waveform models (Wav2Vec2, HuBERT, WavLM, data2vec-audio) get their samples straight from
:mod:`mer.features.hf_audio`; these models get what their feature extractor makes of one window of
samples, and this module says how that output is laid out, once per model, by probing the
extractor on two lengths of silence instead of trusting class names:

* **fixed length** (Whisper): every input is padded to the extractor's ``n_samples`` (30 s for
  the released models) and the model refuses anything else. The valid frames are those the
  extractor's attention mask marks (the frames of the real audio); padding is never pooled.
  Every window has the same shape, so batching never pads anything further.
* **variable length** (Wav2Vec2-BERT / SeamlessM4T fbank): one frame sequence per window;
  batches are padded with the extractor's ``padding_value`` and the frame attention mask.

The extractor runs per window in the prefetch threads; it is pure numpy/torch on its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mer.features.base import SampleError


@dataclass(frozen=True)
class FeatureLayout:
    """Where the frames are in one window's ``input_features`` and how windows are batched."""

    #: the axis of the frames in one window's array (batch axis removed): 0 (T, F) or 1 (F, T)
    time_axis: int
    #: samples every window is padded to (Whisper's ``n_samples``); 0 = variable length
    fixed_samples: int
    #: value the extractor pads features with
    padding_value: float


def probe_layout(extractor: Any, sampling_rate: int, name: str) -> FeatureLayout:
    """Run the extractor on 1 s and 2 s of silence: the axis that grows is the time axis; when
    nothing grows the extractor pads to a fixed length, and the time axis is the one the frame
    attention mask covers."""
    one, two = (_call(extractor, np.zeros(n * sampling_rate, np.float32), sampling_rate, name) for n in (1, 2))
    (a, mask_a), (b, _) = one, two
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{name}: its feature extractor returned input_features of shape {a.shape}; "
                         f"hf-audio expects one 2-D array per clip")
    if mask_a is None:
        raise ValueError(f"{name}: its feature extractor returns no attention mask, so the frames of the real "
                         f"audio cannot be told from padding")
    grown = [axis for axis in (0, 1) if a.shape[axis] != b.shape[axis]]
    if len(grown) == 1:
        return FeatureLayout(grown[0], 0, float(getattr(extractor, "padding_value", 0.0)))
    fixed = int(getattr(extractor, "n_samples", 0) or 0)
    matching = [axis for axis in (0, 1) if a.shape[axis] == len(mask_a)]
    if grown or len(matching) != 1 or fixed <= 0:
        raise ValueError(f"{name}: cannot tell the time axis of its input_features ({a.shape} for 1 s, "
                         f"{b.shape} for 2 s, mask of {len(mask_a)} frames)")
    return FeatureLayout(matching[0], fixed, float(getattr(extractor, "padding_value", 0.0)))


def window_features(extractor: Any, samples: np.ndarray, sampling_rate: int, where: str) -> tuple[np.ndarray, int]:
    """One window's ``input_features`` (batch axis removed, float32) and its number of valid frames
    (the extractor's mask is a prefix of ones: it pads on the right).

    An extractor that rejects the window (too short for one analysis frame, ...) is a
    :class:`SampleError` for this sample, naming the file.
    """
    try:
        features, mask = _call(extractor, samples, sampling_rate, where)
    except (ValueError, RuntimeError) as exc:
        raise SampleError("features", f"{where}: the model's feature extractor rejected "
                                      f"{len(samples) / sampling_rate:.3f} s of audio ({exc})") from None
    valid = int(mask.sum()) if mask is not None else 0
    if valid < 1:
        raise SampleError("features", f"{where}: {len(samples) / sampling_rate:.3f} s of audio gives no frame of "
                                      f"the model's features")
    return features, valid


def stack_windows(arrays: list[np.ndarray], valid: list[int], layout: FeatureLayout) -> tuple[np.ndarray, np.ndarray]:
    """(B, ...) features padded along the time axis with the extractor's padding value, and the
    (B, T) frame mask: 1 for each window's ``valid`` frames, 0 for padding (the extractor's own,
    e.g. SeamlessM4T's pad to an even number of fbank frames, and the batch's)."""
    longest = max(a.shape[layout.time_axis] for a in arrays)
    other = arrays[0].shape[1 - layout.time_axis]
    shape = (len(arrays), longest, other) if layout.time_axis == 0 else (len(arrays), other, longest)
    values = np.full(shape, layout.padding_value, dtype=np.float32)
    mask = np.zeros((len(arrays), longest), dtype=np.int64)
    for row, (array, count) in enumerate(zip(arrays, valid)):
        n = array.shape[layout.time_axis]
        if layout.time_axis == 0:
            values[row, :n] = array
        else:
            values[row, :, :n] = array
        mask[row, :count] = 1
    return values, mask


def _call(extractor: Any, samples: np.ndarray, sampling_rate: int, where: str) -> tuple[np.ndarray, np.ndarray | None]:
    out = extractor(samples, sampling_rate=sampling_rate, return_tensors="np", return_attention_mask=True)
    if "input_features" not in out:
        raise ValueError(f"{where}: the feature extractor returned {sorted(out)}, not input_features")
    features = np.asarray(out["input_features"][0], dtype=np.float32)
    mask = out.get("attention_mask")
    return features, (np.asarray(mask[0]) if mask is not None else None)
