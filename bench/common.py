"""Helpers shared by the benchmarks in ``bench/``: repetitions and their summary, the machine
record, the matmul FLOP/s reference, per-child peak RSS, plain-text tables and the JSON record.

Why a module of its own: every benchmark must report the same way (median of N repetitions
with min and max, the machine it ran on, the load average at the time), so that figures from
different scripts and different machines can be put side by side.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from mer.features.device import usable_cpus  # noqa: F401  (the bench scripts import it from here)

RESULTS = Path(__file__).resolve().parent / "results"


# --- repetitions -----------------------------------------------------------------------------

@dataclass
class Stat:
    """Median, min and max of repeated measurements (the raw values are kept for the record)."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(float(value))

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def min(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def max(self) -> float:
        return max(self.values) if self.values else float("nan")

    def map(self, fn: Callable[[float], float]) -> "Stat":
        """The same repetitions through ``fn`` (e.g. seconds -> items/s; min/max swap as they should)."""
        return Stat([fn(v) for v in self.values])

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        return {"median": round(self.median, digits), "min": round(self.min, digits), "max": round(self.max, digits),
                "n": len(self.values), "values": [round(v, digits) for v in self.values]}

    def fmt(self, spec: str = ".2f") -> str:
        """``median [min-max]``"""
        if not self.values:
            return "-"
        if len(self.values) == 1:
            return format(self.median, spec)
        return f"{self.median:{spec}} [{self.min:{spec}}-{self.max:{spec}}]"


def ratio(num: Stat, den: Stat) -> Stat:
    """Per-repetition ratios (repetitions were interleaved, so rep i of both ran under similar load)."""
    return Stat([a / b for a, b in zip(num.values, den.values) if b])


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# --- the machine -----------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return list(os.getloadavg()) if hasattr(os, "getloadavg") else []


def git_commit(repo: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def machine_info() -> dict[str, Any]:
    import numpy as np
    import torch

    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": loadavg(),
        "git_commit": git_commit(Path(__file__).resolve().parents[1]),
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if os.environ.get(k)},
    }


# --- the compute reference -------------------------------------------------------------------

def matmul_flops(n: int = 2048, reps: int = 7) -> Stat:
    """FLOP/s of an ``n x n`` fp32 matmul with torch's current thread setting (2 n^3 per product).

    The reference for "how much of the machine does the model use": a large square matmul is
    what the BLAS library runs closest to the hardware's peak.
    """
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up: thread pool, page faults
    stat = Stat()
    for _ in range(reps):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        stat.add(2.0 * n ** 3 / (time.perf_counter() - start))
    return stat


# --- child processes -------------------------------------------------------------------------

def _proc_status_bytes(field: str) -> int | None:
    """A kB field of ``/proc/self/status`` in bytes; None where /proc or the field is missing."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def peak_rss() -> int:
    """This process's peak resident set size in bytes: ``VmHWM`` of ``/proc/self/status``.

    Why not ``getrusage``: on Linux ``ru_maxrss`` survives ``execve``, so a child started by
    a big parent (fork/vfork + exec, as ``subprocess`` does) reports the PARENT's peak when it
    is larger (measured here: a 10 MiB child of a 426 MiB parent reports 426 MiB, and
    ``wait4``/``RUSAGE_CHILDREN`` report the same). ``VmHWM`` belongs to the new address
    space and starts at zero at exec. ``ru_maxrss`` is the fallback where /proc is missing.
    """
    hwm = _proc_status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def current_rss() -> int:
    """Resident set size now, in bytes (``VmRSS``; 0 where /proc is missing)."""
    return _proc_status_bytes("VmRSS") or 0


@dataclass
class ChildRun:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def run_child(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 900.0) -> ChildRun:
    """Run ``cmd`` to completion (the child reports its own figures on stdout, e.g. :func:`peak_rss`)."""
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), env=env, capture_output=True, text=True, timeout=timeout)
    return ChildRun(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start)


# --- output ----------------------------------------------------------------------------------

def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """A plain-text table, left-aligned first column, right-aligned others."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    out = [title] if title else []
    out += [line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]]
    return "\n".join(out)


def dir_bytes(path: str | Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in Path(path).rglob(pattern) if p.is_file())


def write_json(path: str | Path, record: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"
