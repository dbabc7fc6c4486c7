"""The manifest: one row per sample, the one table every later stage joins on.

Every stage joins on ``id``, never on row position (the original projects silently
misaligned rows that way). A manifest is written as CSV with a JSON sidecar that holds
its fingerprint, a hash of its content, so that caches and runs can say which manifest
they were built from.

Columns (all strings unless noted; empty string = absent):

=============  ===============================================================
``id``         unique, stable across runs
``label``      the class name; empty = unlabeled. Multi-label corpora join the
               present classes with ``;`` (e.g. ``happy;sad``) and also carry one
               ``target_<name>`` column per target (see below)
``group``      speaker or session, for speaker-independent splits
``split``      ``train`` / ``val`` / ``test`` (or empty); ``fold_<k>`` columns hold
               alternative protocols with the same values
``text``       the transcript string itself
``audio``      path to an audio file; ``start`` / ``end`` seconds (floats, optional)
``eda``, ``temp``, ``ibi``, ``bvp``, ``hr``
               paths to Empatica E4 CSVs; ``bio_format`` is ``e4`` (plain export)
               or ``kemdy20`` (datetime + segment-tag columns); ``bio_tag`` is the
               tag that marks this sample's rows; ``bio_start`` / ``bio_end`` a
               unix-time window, the fallback when a file has no tags
``landmarks``  path to an OpenFace 2 CSV
``video``      path to a video file (MP4, AVI, MKV, MOV, FLV, WebM); ``start`` / ``end``
               give the window, as for ``audio``
``target_*``   extra numeric targets (valence, arousal, sentiment, emotion
               intensities), floats
=============  ===============================================================
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("id", "label", "group", "split")
PATH_COLUMNS = ("audio", "eda", "temp", "ibi", "bvp", "hr", "landmarks", "video")
FLOAT_COLUMNS = ("start", "end", "bio_start", "bio_end")
STRING_COLUMNS = ("id", "label", "group", "split", "text", "bio_format", "bio_tag") + PATH_COLUMNS
SPLITS = ("train", "val", "test", "")
TARGET_PREFIX = "target_"
FOLD_PREFIX = "fold_"
#: the version of the manifest columns and their meaning; recorded with every manifest and part of
#: its dataset key, so a manifest written under another format is rebuilt, never misread
MANIFEST_FORMAT = 1


class ManifestError(ValueError):
    """A manifest problem; the message names the file, the column and the offending rows."""


def _rows_preview(df: pd.DataFrame, mask: np.ndarray | pd.Series, column: str, limit: int = 5) -> str:
    """Human-readable list of the first offending rows: file line numbers (header = line 1)."""
    idx = np.flatnonzero(np.asarray(mask))
    parts = []
    for i in idx[:limit]:
        sample_id = df["id"].iloc[i] if "id" in df.columns else "?"
        value = df[column].iloc[i] if column in df.columns else ""
        parts.append(f"row {i + 2} (id={sample_id!r}, {column}={value!r})")
    more = f" and {len(idx) - limit} more" if len(idx) > limit else ""
    return "; ".join(parts) + more


def normalise(df: pd.DataFrame, source: str = "<memory>") -> pd.DataFrame:
    """Canonical dtypes: strings for reference columns (NaN → ''), floats for times/targets."""
    df = df.copy()
    for col in df.columns:
        if col in FLOAT_COLUMNS or col.startswith(TARGET_PREFIX):
            raw = df[col].replace("", np.nan)
            values = pd.to_numeric(raw, errors="coerce").astype("float64")
            bad = (raw.notna() & values.isna()).to_numpy()
            if bad.any():
                raise ManifestError(f"{source}: column '{col}' must be numeric: {_rows_preview(df, bad, col)}")
            df[col] = values
        else:
            df[col] = df[col].fillna("").astype(str)
            if col in ("id", "label", "group", "split") or col.startswith(FOLD_PREFIX):
                df[col] = df[col].str.strip()
    return df


def fingerprint(df: pd.DataFrame) -> str:
    """A hash of the content, independent of row and column order."""
    canon = df.sort_values("id", kind="stable")[sorted(df.columns)]
    data = canon.to_csv(index=False, lineterminator="\n", float_format="%.6f")
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


@dataclass
class Manifest:
    """A validated manifest table plus where it came from."""

    df: pd.DataFrame
    source: str = "<memory>"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.df = normalise(self.df, self.source)
        self.df = self.df.sort_values("id", kind="stable").reset_index(drop=True)

    # --- accessors -------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        return self.df["id"].tolist()

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.df)

    def __len__(self) -> int:
        return len(self.df)

    def has(self, column: str) -> np.ndarray:
        """Boolean mask: rows whose ``column`` reference is present."""
        if column not in self.df.columns:
            return np.zeros(len(self.df), dtype=bool)
        col = self.df[column]
        if col.dtype.kind == "f":
            return col.notna().to_numpy()
        return (col != "").to_numpy()

    def targets(self) -> list[str]:
        return [c[len(TARGET_PREFIX):] for c in self.df.columns if c.startswith(TARGET_PREFIX)]

    def rows(self, ids: Iterable[str] | None = None) -> list[dict]:
        """Rows as dicts, in the order of ``ids`` (all rows by default)."""
        if ids is None:
            return self.df.to_dict("records")
        indexed = self.df.set_index("id", drop=False)
        return indexed.loc[list(ids)].to_dict("records")

    def split_ids(self, split: str, column: str = "split") -> list[str]:
        return self.df.loc[self.df[column] == split, "id"].tolist()

    # --- I/O ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write ``path`` (CSV) and ``<path>.json`` with the fingerprint; atomically."""
        from mer.pipeline.cache import write_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # write_atomic: unique tmp names (concurrent `mer extract --modality ...` runs each save
        # the manifest), and a full disk is one CacheFull message with the tmp file removed
        write_atomic(path, self.df.to_csv(index=False, lineterminator="\n").encode("utf-8"))
        meta = {"fingerprint": self.fingerprint, "samples": len(self), "columns": list(self.df.columns)}
        meta.update(self.extra)
        write_atomic(path.with_name(path.name + ".json"),
                     (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode("utf-8"))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Manifest":
        """Read a manifest written by :meth:`save` (paths are already absolute or cwd-relative)."""
        path = Path(path)
        if not path.is_file():
            raise ManifestError(f"{path}: manifest not found")
        df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
        manifest = cls(df, source=str(path))
        validate(manifest.df, str(path), check_files=False)
        return manifest

    # --- summaries ---------------------------------------------------------------------
    def summary(self, modalities: dict[str, str] | None = None) -> str:
        """Samples per split, per label and per group, and modality coverage."""
        df = self.df
        lines = [f"manifest {self.source}: {len(df)} samples, fingerprint {self.fingerprint}"]
        table = pd.crosstab(df["label"].replace("", "<unlabeled>"), df["split"].replace("", "<none>"), margins=True, margins_name="all")
        lines.append("label × split:")
        lines.extend("  " + line for line in table.to_string().splitlines())
        groups = df.groupby("split")["group"].nunique()
        lines.append("groups per split: " + ", ".join(f"{k or '<none>'}={v}" for k, v in groups.items()))
        per_group = df["group"].value_counts().sort_index()
        lines.append(f"samples per group ({len(per_group)} groups): " + _group_sizes(per_group))
        columns = modalities or {c: c for c in ("text", "audio", "eda", "temp", "ibi", "bvp", "hr", "landmarks", "video") if c in df.columns}
        if columns:
            cover = []
            for name, col in columns.items():
                n = int(self.has(col).sum())
                cover.append(f"{name}: {n} present, {len(df) - n} missing")
            lines.append("modalities: " + "; ".join(cover))
        return "\n".join(lines)


def validate(df: pd.DataFrame, source: str, check_files: bool = True) -> None:
    """Raise one ManifestError naming the file, the column and the first offending rows."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{source}: missing required column(s) {missing}; found columns {list(df.columns)}")
    empty_id = (df["id"] == "").to_numpy()
    if empty_id.any():
        raise ManifestError(f"{source}: column 'id' is empty in {_rows_preview(df, empty_id, 'id')}")
    dup = df["id"].duplicated(keep=False).to_numpy()
    if dup.any():
        raise ManifestError(f"{source}: column 'id' has duplicate values: {_rows_preview(df, dup, 'id')}")
    for col in ["split"] + [c for c in df.columns if c.startswith(FOLD_PREFIX)]:
        bad = (~df[col].isin(SPLITS)).to_numpy()
        if bad.any():
            raise ManifestError(f"{source}: column '{col}' must be one of train/val/test/empty: {_rows_preview(df, bad, col)}")
    for col in ("start", "end"):
        if col in df.columns and df[col].dtype.kind == "f":
            bad = (df[col] < 0).to_numpy()
            if bad.any():
                raise ManifestError(f"{source}: column '{col}' has negative seconds: {_rows_preview(df, bad, col)}")
    if "start" in df.columns and "end" in df.columns:
        bad = (df["end"] <= df["start"]).to_numpy()
        if bad.any():
            raise ManifestError(f"{source}: 'end' must be after 'start': {_rows_preview(df, bad, 'end')}")
    if check_files:
        for col in PATH_COLUMNS:
            if col not in df.columns:
                continue
            present = (df[col] != "").to_numpy()
            exists = np.array([Path(p).is_file() if p else True for p in df[col]])
            bad = present & ~exists
            if bad.any():
                raise ManifestError(f"{source}: column '{col}' names missing file(s): {_rows_preview(df, bad, col)}")


#: up to this many groups the summary lists every group's size; beyond, a digest
LISTED_GROUPS = 24


def _group_sizes(per_group: pd.Series) -> str:
    """Every group's size, or for many groups (MELD has 304 speakers) min / median / max and
    the smallest groups, which are the ones that matter for speaker-independent splits."""
    if len(per_group) <= LISTED_GROUPS:
        return ", ".join(f"{k}={v}" for k, v in per_group.items())
    smallest = per_group.sort_values(kind="stable").head(5)
    return (f"min {per_group.min()}, median {per_group.median():g}, max {per_group.max()}; smallest: "
            + ", ".join(f"{k}={v}" for k, v in smallest.items()))
