"""From a config to a manifest on disk: run the adapter, write manifest + skipped.csv.

Every command that needs the samples goes through :func:`prepare_manifest`, so the
manifest every stage joins on is always written next to its outputs with its fingerprint.
"""

from __future__ import annotations

from pathlib import Path

from mer.pipeline.adapters import AdapterResult, build_manifest
from mer.pipeline.config import PipelineConfig
from mer.pipeline.layout import SKIPPED_NAME


def manifest_path(config: PipelineConfig) -> Path:
    """``<cache root>/<corpus>/manifest.csv``: beside the features built from it."""
    return config.layout.manifest_path


def prepare_manifest(config: PipelineConfig, out: str | Path | None = None,
                     progress: bool = True) -> tuple[AdapterResult, Path]:
    """Run the corpus adapter and write ``manifest.csv`` (+ ``.json``) and ``skipped.csv``."""
    result = build_manifest(config.dataset, progress=progress)
    path = Path(out) if out else manifest_path(config)
    result.manifest.extra.setdefault("dataset", config.dataset.name)
    result.manifest.save(path)
    result.write_skipped(path.with_name(SKIPPED_NAME))
    return result, path
