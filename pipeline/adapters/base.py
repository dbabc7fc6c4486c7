"""What every adapter returns, and the errors it raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mer.pipeline.manifest import Manifest


class LayoutError(FileNotFoundError):
    """The corpus on disk is not laid out as the adapter expects.

    The message names the expected path and shows the expected layout.
    """

    def __init__(self, adapter: str, missing: str | Path, layout: str):
        self.missing = str(missing)
        super().__init__(f"{adapter}: expected {missing} but it does not exist.\nExpected layout:\n{layout.rstrip()}")


@dataclass(frozen=True)
class Skip:
    """One sample an adapter did not keep, and why. Written to ``skipped.csv``."""

    id: str
    source: str
    reason: str


@dataclass(frozen=True)
class Protocol:
    """How an adapter made a manifest's splits: what a run's protocol card says about them.

    ``speaker_independent`` is the protocol's claim that no group (speaker, actor, session,
    video) is in two splits; training checks the claim on the actual splits and refuses a run
    that breaks it. A protocol that does not make the claim (MELD's standard split: the main
    characters speak in every split) says False, and the card says so.
    """

    #: the protocol and fold, e.g. ``fold3``, ``loao-7``, ``kfold fold_2 of 5``, ``standard``
    name: str
    #: what the ``group`` column holds: actor, speaker, session, video, ...
    group: str = "group"
    speaker_independent: bool = True


@dataclass
class AdapterResult:
    manifest: Manifest
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skipped_table(self) -> pd.DataFrame:
        return pd.DataFrame([s.__dict__ for s in self.skipped], columns=["id", "source", "reason"])

    def skipped_summary(self) -> str:
        if not self.skipped:
            return "skipped: none"
        counts = self.skipped_table()["reason"].value_counts()
        return "skipped: " + "; ".join(f"{n} × {reason}" for reason, n in counts.items())

    def write_skipped(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.skipped_table().to_csv(path, index=False)
        return path
