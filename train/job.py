"""What a training stage is handed: its own section and its data, never the whole experiment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mer.pipeline.manifest import Manifest
from mer.train.config import TrainConfig
from mer.train.data import ModalitySource


@dataclass
class TrainJob:
    """One ``mer train`` (or ablation cell), assembled by the application layer."""

    #: the ``train`` section
    train: TrainConfig
    #: the manifest the caches were built from, and where it is
    manifest: Manifest
    manifest_path: Path
    #: where each modality's cache is, in the order the model takes them
    sources: dict[str, ModalitySource]
    #: the resolved experiment config as plain data: written as the run's config.yaml and kept
    #: in model.pt so that a run says exactly what made it
    record: dict[str, Any]
