"""Batches from ragged sequences kept on the device: whole clips and random temporal crops.

A modality's sequences live as ONE flat tensor of frames ``values`` (F, D) plus ``offsets``
(N+1,): sample i is ``values[offsets[i]:offsets[i+1]]``. A batch is built by index
arithmetic on the device — every (sample, view, step) gets the flat frame index it reads,
one gather fetches them all, and steps past a clip's end are zeroed — so there is no
per-sample Dataset, no Python collate and no host round trip.

* :func:`pad_rows`: whole clips, padded to the longest clip of the batch (evaluation);
* :func:`random_crops`: ``views`` independent random windows of ``crop`` frames per clip;
  a clip shorter than ``crop`` is used whole, padded, with its true length in ``lengths``;
* :func:`draw_windows` + :func:`aligned_crops`: MPUC-MER's views (methods.md §2): one random
  time window in SECONDS per (clip, view), cut from every modality at that modality's frame
  rate, so that view v of the audio and view v of the face show the same moment.

Padding is always exactly zero and ``lengths`` says how much of each row is real, which is
what the masked encoders (:mod:`mer.train.models.masking`) need.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class Padded(NamedTuple):
    """A padded batch of sequences: ``values`` (..., T, D), zero past ``lengths`` (...,)."""

    values: Tensor
    lengths: Tensor


def row_lengths(offsets: Tensor, idx: Tensor) -> Tensor:
    """(B,) number of frames of rows ``idx``."""
    return offsets[idx + 1] - offsets[idx]


def gather_windows(values: Tensor, offsets: Tensor, idx: Tensor, start: Tensor, length: Tensor, width: int) -> Tensor:
    """Windows ``[start, start + length)`` (relative to each row's first frame) of rows ``idx``.

    ``start`` and ``length`` are (B, ...) long tensors; the result is (B, ..., width, D) with
    the steps at or past ``length`` set to zero.
    """
    extra = start.dim() - 1
    base = offsets[idx].view((-1,) + (1,) * extra) + start  # (B, ...)
    steps = torch.arange(width, device=values.device)
    pos = base.unsqueeze(-1) + steps  # (B, ..., width)
    inside = steps < length.unsqueeze(-1)
    if values.shape[0] == 0:  # no frame anywhere (every row absent)
        return values.new_zeros(tuple(pos.shape) + tuple(values.shape[1:]))
    frames = values[pos.clamp(0, values.shape[0] - 1)]
    keep = inside.view(tuple(inside.shape) + (1,) * (values.dim() - 1))
    return torch.where(keep, frames, torch.zeros((), dtype=values.dtype, device=values.device))


def pad_rows(values: Tensor, offsets: Tensor, idx: Tensor) -> Padded:
    """Whole clips of rows ``idx``: (B, T_max, D) with T_max = the longest (at least 1)."""
    lengths = row_lengths(offsets, idx)
    width = max(int(lengths.max()) if len(lengths) else 0, 1)
    start = torch.zeros_like(lengths)
    return Padded(gather_windows(values, offsets, idx, start, lengths, width), lengths)


def random_crops(
    values: Tensor,
    offsets: Tensor,
    idx: Tensor,
    crop: int,
    views: int = 2,
    generator: torch.Generator | None = None,
) -> Padded:
    """``views`` independent uniform random windows of ``crop`` frames per row.

    Returns values (B, views, crop, D) and lengths (B, views) = min(T_i, crop). Every start in
    [0, T_i − crop] is equally likely (one ``torch.rand`` draw per view, on ``generator``,
    which must live on the values' device).
    """
    if crop < 1:
        raise ValueError(f"random_crops: crop must be >= 1, got {crop}")
    lengths = row_lengths(offsets, idx)
    slack = (lengths - crop).clamp(min=0)  # (B,)
    u = torch.rand((len(idx), views), generator=generator, device=values.device)
    start = torch.floor(u * (slack + 1).unsqueeze(1).to(u.dtype)).long()
    start = torch.minimum(start, slack.unsqueeze(1))  # u < 1, but guard the float edge
    length = lengths.clamp(max=crop).unsqueeze(1).expand(-1, views)
    return Padded(gather_windows(values, offsets, idx, start, length, crop), length.contiguous())


# --------------------------------------------------------------------------- time-aligned views


def draw_windows(duration: Tensor, seconds: float, views: int = 2,
                 generator: torch.Generator | None = None) -> Tensor:
    """(B, views) start times in seconds: uniform in [0, max(duration − seconds, 0)].

    ``duration`` (B,) float is what every modality of the clip covers; a clip shorter than the
    window starts at 0 (and each modality is then used whole). One ``torch.rand`` draw per view
    on ``generator`` (which must live on ``duration``'s device).
    """
    if not seconds > 0:
        raise ValueError(f"draw_windows: the window must be > 0 seconds, got {seconds}")
    slack = (duration - seconds).clamp(min=0.0)
    u = torch.rand((len(duration), views), generator=generator, device=duration.device, dtype=duration.dtype)
    return u * slack.unsqueeze(1)


def window_frames(t0: Tensor, span: Tensor, seconds: float, rate: float, lengths: Tensor) -> tuple[Tensor, Tensor, int]:
    """Frame ``start`` (B, V), ``length`` (B, V) and the padded width of windows ``[t0, t0 + span)``.

    ``span`` (B,) is the window in seconds, ``seconds`` capped at what every modality of the
    clip covers. Frame k of a modality at ``rate`` frames per second sits at k / rate, so the
    window starts at frame round(t0 · rate) and spans round(span · rate) frames (at least 1,
    at most the clip's); the width is that of a full window, round(seconds · rate). A window
    that would run past a clip's last frame (rounding) is shifted back to end there.
    """
    width = max(int(round(seconds * rate)), 1)
    n = lengths.unsqueeze(1)
    length = torch.round(span * rate).long().clamp(min=1, max=width).unsqueeze(1)
    length = torch.minimum(length, n).expand_as(t0)
    start = torch.round(t0 * rate).long()
    start = torch.minimum(start, n - length).clamp(min=0)
    return start, length.contiguous(), width


def aligned_crops(values: Tensor, offsets: Tensor, idx: Tensor, t0: Tensor, span: Tensor, seconds: float,
                  rate: float) -> Padded:
    """The windows ``[t0, t0 + span)`` (B, V) of rows ``idx`` of one modality at ``rate`` fps.

    Returns values (B, V, width, D) and lengths (B, V): one gather for the whole batch.
    """
    start, length, width = window_frames(t0, span, seconds, rate, row_lengths(offsets, idx))
    return Padded(gather_windows(values, offsets, idx, start, length, width), length)
