"""The environment of the worker processes of a local Dask cluster.

Why this exists: ``distributed``'s Nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in every worker
it spawns (``distributed.nanny.pre-spawn-environ``), to hand freed memory back to the OS.
Setting that variable also switches off glibc's dynamic mmap threshold, so every tensor
larger than 128 KiB is mmap'ed and unmapped again on each use: page faults on every forward
and backward pass. Measured on a 2-core CPU (2026-11-22): 150 forward + backward passes of
a small Transformer layer took 6.18 s in a worker against 2.86 s in the parent, and 3.68 s
in a worker without the variable. Removing it also cut one ``mer ablate --workers 1`` run's
system time from 12 s to 3.4 s. With it gone, a worker is no slower than a plain process: two
15-epoch demo LMR-CL runs side by side took 10.4-12.2 s each in 2 Dask workers against 13.9-14.0 s
each in 2 plain processes (quiet 2-core CPU, 2026-11-22; an earlier 55 s vs 32 s gap did not
reproduce on the quiet machine). The thread limits Dask sets (OMP/MKL/OpenBLAS = 1) are kept.
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
