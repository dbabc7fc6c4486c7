"""The user's own manifest: a CSV or JSONL file with the manifest columns.

Relative paths resolve against the manifest file's folder (so a corpus folder can be
moved as a whole). A missing column, a duplicate id or a missing file is one clear error
naming the file, the column and the first offending rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mer.pipeline.adapters.base import AdapterResult
from mer.pipeline.manifest import PATH_COLUMNS, Manifest, ManifestError, normalise, validate


@dataclass
class Config:
    name: str = "generic"
    #: path to the CSV (.csv/.tsv) or JSON-lines (.jsonl) manifest
    manifest: str = ""
    #: cache namespace; default: the manifest file's stem
    corpus: str = ""

    def __post_init__(self) -> None:
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
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
    except ValueError as exc:
        raise ManifestError(f"{path}: cannot parse as {suffix or 'CSV'}: {exc}") from None


def resolve_paths(df: pd.DataFrame, base: Path) -> pd.DataFrame:
    df = df.copy()
    for col in PATH_COLUMNS:
        if col in df.columns:
            df[col] = [str((base / p).resolve()) if p and not Path(p).is_absolute() else p for p in df[col].astype(str)]
    return df


def load_generic(path: str | Path) -> Manifest:
    path = Path(path)
    df = normalise(resolve_paths(read_table(path), path.parent), str(path))
    # validate in the file's own row order, so that row numbers in errors match the file
    validate(df, str(path), check_files=True)
    return Manifest(df, source=str(path))


def build(config: Config) -> AdapterResult:
    return AdapterResult(manifest=load_generic(config.manifest))
