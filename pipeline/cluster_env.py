"""The environment of the worker processes of a local Dask cluster.

Why this exists: ``distributed``'s Nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in every worker
it spawns (``distributed.nanny.pre-spawn-environ``), to hand freed memory back to the OS.
Setting that variable also switches off glibc's dynamic mmap threshold, so every tensor
larger than 128 KiB is mmap'ed and unmapped again on each use: page faults on every forward
and backward pass, which made training in a worker much slower than in a plain process.
With the variable gone, a worker trains as fast as a plain process (the measurements are in
bench/README.md, "Decisions and the measurements behind them"). The thread limits Dask sets
(OMP/MKL/OpenBLAS = 1) are kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

#: variables removed from Dask's worker environment (see the module docstring)
DROPPED = ("MALLOC_TRIM_THRESHOLD_",)


def worker_environ(**overrides: str) -> dict:
    """Dask's configured pre-spawn environment without :data:`DROPPED`, plus ``overrides``."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    return {**{k: v for k, v in env.items() if k not in DROPPED}, **overrides}


@contextlib.contextmanager
def torch_friendly_workers(**overrides: str) -> Iterator[None]:
    """Start LocalCluster workers inside this block to give them :func:`worker_environ`
    (``overrides``, e.g. ``OMP_NUM_THREADS="2"``, are added to it)."""
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ(**overrides)}):
        yield
