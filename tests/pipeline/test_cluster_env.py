"""Local Dask workers start without MALLOC_TRIM_THRESHOLD_ (it makes every large tensor an
mmap; see mer.pipeline.cluster_env) and keep Dask's thread limits."""

from __future__ import annotations

import os

import dask

from mer.pipeline.cluster_env import torch_friendly_workers, worker_environ


def test_worker_environ_drops_only_the_malloc_trim_threshold():
    with dask.config.set({"distributed.nanny.pre-spawn-environ": {"MALLOC_TRIM_THRESHOLD_": 65536,
                                                                  "OMP_NUM_THREADS": 1, "X": "y"}}):
        assert worker_environ() == {"OMP_NUM_THREADS": 1, "X": "y"}


def _environ() -> dict:
    return {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")}


def test_a_local_cluster_started_inside_has_no_malloc_trim_threshold():
    from distributed import Client, LocalCluster

    saved = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    with torch_friendly_workers():
        cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with Client(cluster) as client:
            env = client.submit(_environ, pure=False).result()
    finally:
        cluster.close()
        if saved is None:
            os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)  # the nanny copies its environ into ours
    assert env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"}
