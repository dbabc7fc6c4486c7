"""The user's own manifest: a CSV or JSONL file with the manifest columns.

Relative paths resolve against the manifest file's folder (so a corpus folder can be
moved as a whole). ``fold: k`` fills ``split`` from the file's ``fold_<k>`` column (the
folds of ``mer train --folds``); ``speaker_independent: false`` declares a split whose groups
may share splits (training refuses such a split otherwise). A missing column or a duplicate id is one clear error naming the file,
the column and the first offending rows; so is a missing file, unless ``missing_files:
record`` (see :class:`Config`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mer.pipeline.adapters.base import AdapterResult, Protocol
from mer.pipeline.manifest import FOLD_PREFIX
from mer.pipeline.manifest import PATH_COLUMNS, Manifest, ManifestError, _rows_preview, normalise, validate


@dataclass
class Config:
    name: str = "generic"
    #: path to the CSV (.csv/.tsv) or JSON-lines (.jsonl) manifest
    manifest: str = ""
    #: cache namespace; default: the manifest file's stem
    corpus: str = ""
    #: a path column naming a file that does not exist. ``error`` (default): the manifest is
    #: refused with one error listing the rows (a typo in a path is caught before any work).
    #: ``record``: the row is kept and the path too, so the encoder of that column records the
    #: sample as a failure in its failures.jsonl (stage ``read``, "<path>: ... not found") while
    #: the sample's other modalities are extracted, the failure counts against
    #: ``--max-failures``, and ``mer extract --retry-failures`` picks the file up once it exists.
    #: (Dropping the row into skipped.csv instead would also throw away its other modalities.)
    #: The adapter's notes name the rows either way.
    missing_files: Literal["error", "record"] = "error"
    #: 0: the ``split`` column is the split; k >= 1: ``split`` is taken from the ``fold_<k>`` column
    fold: int = 0
    #: the splits keep every group (speaker/session) in one split; false: they may not (the
    #: protocol card says so and training does not refuse a group found in two splits)
    speaker_independent: bool = True

    def __post_init__(self) -> None:
        if self.fold < 0:
            raise ValueError(f"fold must be 0 (the split column) or a fold_<k> number >= 1, got {self.fold}")
        if not self.manifest:
            raise ValueError("dataset.manifest is required for the generic adapter")
        if not self.corpus:
            self.corpus = Path(self.manifest).stem


def read_table(path: Path) -> pd.DataFrame:
    """CSV, TSV or JSONL into a string-typed frame (no NaN guessing)."""
    if not path.is_file():
        raise ManifestError(f"{path}: manifest file not found")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(path, lines=True, dtype=False)
            return df.astype(object).where(df.notna(), "")
        sep = "\t" if suffix == ".tsv" else ","
        return pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, encoding="utf-8")
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text ({utf8_position(path)}); re-save it as UTF-8") from None
    except ValueError as exc:
        raise ManifestError(f"{path}: cannot parse as {suffix or 'CSV'}: {exc}") from None


def utf8_position(path: Path) -> str:
    """Where the first invalid UTF-8 byte of ``path`` is: byte offset in the FILE, line and
    row. Why not the decoder's own offset: pandas decodes in chunks, so its ``start`` counts
    from the chunk (a byte at 12,815 was reported at 3). Rows are counted by the csv module,
    so a quoted field spanning lines is one row (row 1 = the first row after the header)."""
    import csv
    import io

    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
        return "no invalid byte found on re-reading"
    except UnicodeDecodeError as exc:
        offset, reason = exc.start, exc.reason
    line_start = raw.rfind(b"\n", 0, offset) + 1
    line = raw.count(b"\n", 0, offset) + 1
    records = sum(1 for _ in csv.reader(io.StringIO(raw[:line_start].decode("utf-8"), newline="")))
    return f"{reason} at byte {offset:,} (line {line}, row {records})"


def resolve_paths(df: pd.DataFrame, base: Path) -> pd.DataFrame:
    df = df.copy()
    for col in PATH_COLUMNS:
        if col in df.columns:
            df[col] = [str((base / p).resolve()) if p and not Path(p).is_absolute() else p for p in df[col].astype(str)]
    return df


def missing_file_notes(df: pd.DataFrame, source: str) -> list[str]:
    """One line per path column that names files which do not exist (file row numbers)."""
    notes = []
    for col in PATH_COLUMNS:
        if col not in df.columns:
            continue
        present = (df[col] != "").to_numpy()
        exists = np.array([Path(p).is_file() if p else True for p in df[col]], dtype=bool)
        bad = present & ~exists
        if bad.any():
            notes.append(f"{source}: column '{col}' names {int(bad.sum())} missing file(s), kept "
                         f"(missing_files: record; each is recorded as a failure by its encoder): "
                         f"{_rows_preview(df, bad, col)}")
    return notes


def read_generic(path: str | Path, missing_files: str = "error") -> tuple[Manifest, list[str]]:
    """The manifest, and notes (the rows with missing files when ``missing_files='record'``)."""
    if missing_files not in ("error", "record"):
        raise ValueError(f"missing_files must be 'error' or 'record', got {missing_files!r}")
    path = Path(path)
    df = normalise(resolve_paths(read_table(path), path.parent), str(path))
    # validate in the file's own row order, so that row numbers in errors match the file
    check = missing_files == "error"
    validate(df, str(path), check_files=check)
    notes = [] if check else missing_file_notes(df, str(path))
    return Manifest(df, source=str(path)), notes


def load_generic(path: str | Path) -> Manifest:
    """The manifest of ``path``; a missing file is an error."""
    return read_generic(path)[0]


#: the dataset field that selects a fold (``mer train --folds``)
FOLD_FIELD = "fold"


def fold_numbers(columns) -> list[int]:
    """The k of every ``fold_<k>`` column, sorted."""
    return sorted(int(c[len(FOLD_PREFIX):]) for c in columns
                  if c.startswith(FOLD_PREFIX) and c[len(FOLD_PREFIX):].isdigit())


def protocol(config: Config) -> Protocol:
    name = f"{FOLD_PREFIX}{config.fold} column" if config.fold else "the manifest's split column"
    return Protocol(name, "group", config.speaker_independent)


def folds(config: Config, manifest: Manifest) -> list[tuple[str, int]]:
    """One fold per ``fold_<k>`` column of the manifest."""
    numbers = fold_numbers(manifest.df.columns)
    if not numbers:
        raise ValueError(f"{config.manifest} has no {FOLD_PREFIX}<k> column: it holds one split")
    return [(f"fold{k}", k) for k in numbers]


def build(config: Config, progress: bool = True) -> AdapterResult:
    manifest, notes = read_generic(config.manifest, config.missing_files)
    if config.fold:
        column = f"{FOLD_PREFIX}{config.fold}"
        if column not in manifest.df.columns:
            raise ManifestError(f"{config.manifest}: dataset.fold={config.fold} needs a column {column!r}; "
                                f"fold columns: {[f'{FOLD_PREFIX}{k}' for k in fold_numbers(manifest.df.columns)]}")
        manifest.df["split"] = manifest.df[column]
        notes.append(f"split = {column}")
    return AdapterResult(manifest=manifest, notes=notes)
