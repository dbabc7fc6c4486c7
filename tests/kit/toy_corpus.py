"""Tiny WAV corpora and configs for the extraction tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

LABELS = ("angry", "happy", "neutral", "sad")


def write_wavs(directory: Path, ids: list[str], sr: int = 8000, seed: int = 0) -> dict[str, Path]:
    """One 16-bit mono WAV per id, lengths 0.05-0.3 s, content seeded by the id's position."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for k, sample_id in enumerate(ids):
        rng = np.random.default_rng([seed, k])
        n = int(sr * rng.uniform(0.05, 0.3))
        data = (0.2 * np.sin(np.arange(n) * (0.01 + 0.002 * k)) + 0.05 * rng.standard_normal(n)).astype(np.float32)
        path = directory / f"{sample_id}.wav"
        sf.write(path, data, sr, subtype="PCM_16")
        paths[sample_id] = path
    return paths


def write_manifest(path: Path, rows: list[dict]) -> Path:
    """A generic-adapter CSV: id,label,group,split + whatever columns the rows carry."""
    import pandas as pd

    df = pd.DataFrame(rows)
    for column, default in (("label", ""), ("group", "g0"), ("split", "train")):
        if column not in df.columns:
            df[column] = default
    df = df.fillna("")
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def make_corpus(root: Path, n: int, seed: int = 0, prefix: str = "utt") -> tuple[Path, list[str]]:
    """``n`` WAVs under ``root/wav`` and ``root/corpus.csv`` listing them; returns (csv, ids)."""
    ids = [f"{prefix}{k:03d}" for k in range(n)]
    paths = write_wavs(root / "wav", ids, seed=seed)
    rows = [{"id": i, "label": LABELS[k % len(LABELS)], "group": f"spk{k % 3}", "split": "train",
             "audio": str(paths[i])} for k, i in enumerate(ids)]
    return write_manifest(root / "corpus.csv", rows), ids


def write_config(path: Path, manifest: Path, cache_root: Path, *, shard_size: int = 4, dtype: str = "float16",
                 features: dict | None = None, extract: dict | None = None, corpus: str = "toy") -> Path:
    config = {
        "dataset": {"name": "generic", "manifest": str(manifest), "corpus": corpus},
        "cache": {"root": str(cache_root), "dtype": dtype, "shard_size": shard_size},
        "features": features if features is not None else {"audio": {"encoder": "kit.toy"}},
        "extract": {"device": "cpu", "prefetch": 2, "io_threads": 2, **(extract or {})},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
