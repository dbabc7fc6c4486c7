"""Measuring on a CUDA device (and, for ``--dry-run``, the same calls on the CPU): wall time
with the device synchronised, peak device memory, the busy fraction from the profiler, the
bf16/fp32 matmul reference, and forward FLOPs of a speech model at every clip length.

Why a module of its own: ``bench/gpu.py`` wraps every variant of every section in the same
measurement, and these pieces are tested on their own (``tests/bench/test_gpu_dry_run.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch


@dataclass
class Measured:
    """One measured call: wall seconds (device synchronised before and after), the peak device
    memory it allocated (bytes, CUDA only, else None), the busy fraction (None unless profiled)
    and what the call returned."""

    seconds: float
    peak_bytes: int | None
    result: Any = None
    busy: float | None = None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, fn: Callable[[], Any]) -> Measured:
    """Run ``fn`` once: its wall time with all queued device work finished, and its peak memory."""
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return Measured(seconds, peak, result)


def union_seconds(intervals: list[tuple[int, int]]) -> float:
    """Total length (seconds) of the union of ``[start_ns, end_ns)`` intervals: time in which at
    least one of them was running (overlapping kernels on several streams count once)."""
    total = 0
    end_so_far = None
    start_run = None
    for start, end in sorted(intervals):
        if end_so_far is None or start > end_so_far:
            if end_so_far is not None:
                total += end_so_far - start_run
            start_run, end_so_far = start, end
        else:
            end_so_far = max(end_so_far, end)
    if end_so_far is not None:
        total += end_so_far - start_run
    return total / 1e9


def busy_fraction(device: torch.device, fn: Callable[[], Any]) -> Measured:
    """Run ``fn`` under ``torch.profiler``; ``busy`` = the union of the device's activity
    intervals (CUDA: kernels, copies, memsets; CPU, for ``--dry-run``: torch operators) divided by
    the wall time of the call. A separate pass from the timed ones: the profiler's own overhead
    stays out of every throughput figure."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activity, kind = (ProfilerActivity.CUDA, DeviceType.CUDA) if cuda else (ProfilerActivity.CPU, DeviceType.CPU)
    with profile(activities=[activity]) as prof:
        run = measure(device, fn)
    events = prof.profiler.kineto_results.events()
    intervals = [(e.start_ns(), e.start_ns() + e.duration_ns()) for e in events
                 if e.device_type() == kind and e.duration_ns() > 0]
    run.busy = union_seconds(intervals) / run.seconds if run.seconds > 0 else float("nan")
    return run


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int = 10) -> dict[str, float]:
    """FLOP/s of an ``n x n`` by ``n x n`` product (2 n^3 per product) on ``device`` in ``dtype``:
    the best and the median of ``reps`` timed products after 3 warm-ups. The best is the
    reference the models' FLOP/s are divided by (what this device reaches on dense matmul)."""
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    out = torch.empty(n, n, device=device, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=out)
    rates = []
    for _ in range(reps):
        rates.append(2.0 * n ** 3 / measure(device, lambda: torch.mm(a, b, out=out)).seconds)
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "best": max(rates), "median": float(np.median(rates)),
            "reps": reps}


def frame_count(conv_kernel: list[int], conv_stride: list[int], samples: int) -> int:
    """Output frames of a Wav2Vec2-style conv front end (no padding) for ``samples`` inputs."""
    length = samples
    for kernel, stride in zip(conv_kernel, conv_stride):
        length = (length - kernel) // stride + 1
    return length


def speech_flops(model_dir: str, lengths: list[int], count: Callable[[list[int]], dict[int, int]],
                 exact_up_to: int = 12, points: int = 11) -> tuple[dict[int, int], dict]:
    """Forward FLOPs of a speech model for every length in ``lengths`` (input samples).

    ``count(lengths)`` counts exactly (one forward per length; seconds each for a large model).
    With at most ``max(exact_up_to, points)`` distinct lengths every one is counted. Otherwise ``points``
    lengths spread over the range are counted, alternately used to fit
    ``FLOPs = a + b n + c T + d T^2`` (T = output frames: linear layers scale with T, attention
    with T^2, the conv front end with n) and to check it: the record gives the largest relative
    error of the fit on the check lengths. Counted lengths keep their counted value.
    """
    from transformers import AutoConfig

    if points < 9:
        raise ValueError(f"speech_flops: points={points}; 5 fit points (4 coefficients) and 4 checks need 9")
    distinct = sorted(set(lengths))
    if len(distinct) <= max(exact_up_to, points):
        return count(distinct), {"method": "counted", "lengths": len(distinct)}
    config = AutoConfig.from_pretrained(model_dir)
    kernel, stride = list(config.conv_kernel), list(config.conv_stride)
    picks = [distinct[i] for i in np.unique(np.linspace(0, len(distinct) - 1, points).round().astype(int))]
    counted = count(picks)
    fit_ns, check_ns = picks[::2], picks[1::2]

    def design(ns: list[int]) -> np.ndarray:
        t = np.array([frame_count(kernel, stride, n) for n in ns], dtype=np.float64)
        return np.stack([np.ones(len(ns)), np.asarray(ns, np.float64), t, t * t], axis=1)

    x = design(fit_ns)
    scale = np.abs(x).max(axis=0)  # columns of 1 to ~1e5 squared: scaled, for a well-conditioned solve
    coef, *_ = np.linalg.lstsq(x / scale, np.array([counted[n] for n in fit_ns], np.float64), rcond=None)
    coef = coef / scale
    errors = [abs(float((design([n]) @ coef)[0]) / counted[n] - 1) for n in check_ns]
    flops = {n: int(round(v)) for n, v in zip(distinct, design(distinct) @ coef)}
    flops.update(counted)
    return flops, {"method": "fit a + b*samples + c*frames + d*frames^2", "lengths": len(distinct),
                   "counted": len(counted), "max_relative_error_on_checks": max(errors)}
