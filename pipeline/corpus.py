"""From a config to a manifest on disk: run the adapter, write manifest + skipped.csv.

Every command that needs the samples goes through :func:`prepare_manifest`, so the
manifest every stage joins on is always written next to its outputs with its fingerprint.
"""

from __future__ import annotations

from pathlib import Path

from mer.pipeline.adapters import AdapterResult, build_manifest
from mer.pipeline.config import ExperimentConfig


def manifest_path(config: ExperimentConfig) -> Path:
    """``<cache root>/<corpus>/manifest.csv``: beside the features built from it."""
    return Path(config.cache.root) / config.corpus / "manifest.csv"


def prepare_manifest(config: ExperimentConfig, out: str | Path | None = None) -> tuple[AdapterResult, Path]:
    """Run the corpus adapter and write ``manifest.csv`` (+ ``.json``) and ``skipped.csv``."""
    result = build_manifest(config.dataset)
    path = Path(out) if out else manifest_path(config)
    result.manifest.extra.setdefault("dataset", config.dataset.name)
    result.manifest.save(path)
    result.write_skipped(path.with_name("skipped.csv"))
    return result, path
