"""What a training stage is handed: its own section and its data, never the whole experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mer.pipeline.adapters.base import Protocol
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
    #: what the dataset section's split is (for the protocol card); None: the manifest's split column
    protocol: Protocol | None = None
    #: the adapter that built the manifest and the dataset key of its section (for the card)
    adapter: str = ""
    dataset_key: str = ""
    #: notes for the run log (e.g. that the manifest was rebuilt for this dataset section)
    notes: list[str] = field(default_factory=list)
