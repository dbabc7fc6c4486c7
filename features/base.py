"""The one small interface every encoder family implements.

The extraction orchestrator (``mer.pipeline.extract``) only talks to this interface:

1. ``cost(row)``      a cheap size estimate (seconds of audio, characters of text) read
                      without decoding, used to sort samples into length buckets;
2. ``prepare(row)``   CPU work for one sample (decode, resample, clean, statistics); runs
                      in a prefetch thread pool while the model works, so it must be
                      thread-safe; bad input raises :class:`SampleError`;
3. ``encode(batch)``  the model on one batch of prepared samples, returning one dict of
                      numpy arrays per sample, shaped as :meth:`outputs` declares.

An encoder's :meth:`key` hashes everything that changes its output (family, options,
model identity and weights, preprocessing, the version of its code), so the same key
means the same features and a fine-tuned checkpoint lands in a new cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mer.features.batching import BatchPolicy


class SampleError(Exception):
    """Bad input for one sample: recorded in ``failures.jsonl``; the run goes on.

    ``stage`` says where it failed (``read``, ``decode``, ``clean``, ``features``, ...).
    """

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage
        self.message = message


class EncoderUnavailable(RuntimeError):
    """This encoder cannot run here: its features are made by another command (e.g. the ``csd``
    family, written by ``mer import-csd``). Stops the run; the message says what to run instead."""


@dataclass(frozen=True)
class OutputSpec:
    """One array an encoder produces per sample.

    ``ragged=False``: every sample has exactly ``shape``; stored as an (N, *shape) dataset.
    ``ragged=True``: each sample is (T_i, *shape) with its own T_i; stored flat plus offsets.
    ``dtype="float"`` follows the cache's float dtype (float16 by default); any other value
    (``"bool"``, ``"int32"``, ``"float32"``) is stored exactly.
    ``attrs`` name the axes (layer names, feature names) and land in the HDF5 attributes.
    """

    name: str
    shape: tuple[int, ...]
    ragged: bool = False
    dtype: str = "float"
    attrs: dict[str, Any] = field(default_factory=dict)


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of a canonical JSON rendering."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class Encoder(ABC):
    """Base class; subclasses set ``family``, ``code_version``, ``columns``, ``Options``."""

    family: ClassVar[str]
    #: Bump when a change to the encoder's code changes its output: the key changes with it.
    code_version: ClassVar[str] = "1"
    #: Manifest columns the encoder reads; a sample is present when the first is non-empty.
    columns: ClassVar[tuple[str, ...]]

    def __init__(self, options: Any):
        self.options = options
        self.device = None

    # --- identity --------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Model identity that is not in the options (name, revision, weights hash)."""
        return {}

    def options_material(self) -> dict[str, Any]:
        """The key material that the config alone decides (no weights hashed, no hub asked)."""
        opts = dataclasses.asdict(self.options) if dataclasses.is_dataclass(self.options) else dict(self.options)
        # options that only change speed, never output, are left out of the key
        for name in getattr(self, "speed_only_options", ()):
            opts.pop(name, None)
        return {"family": self.family, "code_version": self.code_version, "options": opts}

    def key_material(self) -> dict[str, Any]:
        return {**self.options_material(), "identity": self.identity()}

    def key(self) -> str:
        return f"{self.family}-{stable_hash(self.key_material(), 12)}"

    # --- lifecycle -------------------------------------------------------------------
    def load(self, device: Any) -> None:
        """Load weights onto ``device`` (a torch.device). Encoders without a model keep this."""
        self.device = device

    @abstractmethod
    def outputs(self) -> list[OutputSpec]:
        """What one sample produces; valid after :meth:`load`."""

    def batch_policy(self) -> BatchPolicy:
        """How to batch on the loaded device. Default: one sample per batch."""
        return BatchPolicy(max_items=1)

    def present(self, row: dict) -> bool:
        value = row.get(self.columns[0], "")
        return value is not None and value == value and str(value) != ""

    def cost(self, row: dict) -> float:
        """Cheap size estimate used for length bucketing. Default: 1."""
        return 1.0

    @abstractmethod
    def prepare(self, row: dict) -> Any:
        """CPU preprocessing of one manifest row; thread-safe; raises SampleError."""

    @abstractmethod
    def encode(self, batch: list[Any]) -> list[dict[str, np.ndarray]]:
        """Run the model on prepared samples; one output dict per sample."""
