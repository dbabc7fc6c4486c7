"""All device handling in one place: choosing the device, autocast, host→device copies.

Encoders and the trainer never test ``torch.cuda.is_available()`` themselves; they call
these helpers, which are exercised with ``device=cpu`` in the tests and do the right
thing on CUDA (pinned memory + non-blocking copies, bf16/fp16 autocast).
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Iterator, Literal

import torch

if TYPE_CHECKING:
    import numpy as np

AutocastMode = Literal["none", "bf16", "fp16"]


def usable_cpus() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or taskset's
    limit), which is what thread and worker counts must divide, not ``os.cpu_count()``."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → first CUDA device when there is one, else CPU; ``cuda`` without CUDA is an error."""
    if name in ("auto", ""):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but torch.cuda.is_available() is False (torch {torch.__version__})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {name!r} requested but MPS is not available")
    return device


def worker_device(device: torch.device, worker: int | None) -> torch.device:
    """The GPU of worker ``worker`` (0, 1, ...) of a multi-GPU machine: a ``cuda`` device without
    an index becomes ``cuda:<worker mod GPU count>``; any other device, or no worker index, is kept."""
    if device.type != "cuda" or device.index is not None or worker is None:
        return device
    return torch.device("cuda", worker % max(1, torch.cuda.device_count()))


def autocast(device: torch.device, mode: AutocastMode = "none") -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA when asked; a no-op on CPU or with ``none``.

    On CPU we deliberately do not autocast: outputs must match the fp32 reference within
    1e-4 and CPU bf16 matmuls are not faster on most machines.
    """
    if mode == "none" or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def host_tensor(shape: tuple[int, ...], fill: float, dtype: torch.dtype, device: torch.device | None) -> torch.Tensor:
    """A host tensor filled with ``fill``, to be filled further and copied to ``device``.

    For a CUDA device it is allocated in pinned (page-locked) memory, so that :func:`to_device`
    starts the copy asynchronously at once instead of first copying the batch into a pinned
    staging buffer; on CPU it is an ordinary tensor.
    """
    pinned = device is not None and device.type == "cuda"
    return torch.full(shape, fill, dtype=dtype, pin_memory=pinned)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to ``device``: pinned + non-blocking on CUDA, a no-op on CPU."""
    if device.type == "cuda":
        if not tensor.is_pinned():
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=True)
    return tensor.to(device)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """float32 numpy on the host, whatever dtype autocast produced."""
    return tensor.detach().to(device="cpu", dtype=torch.float32).numpy()


@contextlib.contextmanager
def inference(device: torch.device, mode: AutocastMode = "none") -> Iterator[None]:
    """``torch.inference_mode`` plus optional autocast: the context every encoder runs in."""
    with torch.inference_mode(), autocast(device, mode):
        yield


def grad_scaler(device: torch.device, mode: AutocastMode = "none") -> "torch.amp.GradScaler":
    """A GradScaler that scales only for fp16 autocast on CUDA (bf16 and fp32 need none).

    A disabled scaler is a transparent pass-through (``scale(loss)`` returns ``loss``,
    ``step(opt)`` calls ``opt.step()``), so the training loop has one code path.
    """
    enabled = mode == "fp16" and device.type == "cuda"
    return torch.amp.GradScaler(device.type if device.type == "cuda" else "cpu", enabled=enabled)


def rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """The torch generators a training step draws from (CPU, and the CUDA device's): for checkpoints."""
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned (dropout then draws exactly as before the checkpoint)."""
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
