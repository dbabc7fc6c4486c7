"""The trainer's user-facing errors, in a module without heavy imports (the CLI loads it
for every ``mer`` invocation; torch is imported only when a training command runs)."""

from __future__ import annotations

from mer.pipeline.cache import CacheError  # the one cache error: missing, incomplete or unusable caches

__all__ = ["CacheError", "DataError", "DataWarning", "TrainingError"]


class DataError(ValueError):
    """The manifest, the caches and the training config disagree (unknown label, no
    training sample, a model that cannot take the modalities, ...)."""


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, no validation sample, bad select_metric)."""


class DataWarning(UserWarning):
    """Something about the data the user should know (NaN features, carved val split, ...)."""
