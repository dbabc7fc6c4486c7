"""Small helpers shared by the corpus adapters (layout checks, splits, summaries).

Kept apart from :mod:`mer.pipeline.adapters.base` (the public interface) because these
are conveniences for adapter authors, not part of what an adapter returns.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from mer.pipeline.adapters.base import LayoutError, Skip

#: the standard value names of the ``split`` column
TRAIN, VAL, TEST = "train", "val", "test"


def resolve_under(root: Path, path: str) -> Path:
    """``path`` if absolute, else ``root / path`` (paths inside a corpus are root-relative)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def require_dir(adapter: str, path: Path, layout: str) -> Path:
    """The folder, or one LayoutError naming it and showing the expected layout."""
    if not path.is_dir():
        raise LayoutError(adapter, path, layout)
    return path


def require_file(adapter: str, path: Path, layout: str) -> Path:
    if not path.is_file():
        raise LayoutError(adapter, path, layout)
    return path


def apply_require(rows: list[dict], require: Sequence[str], source_key: str, skipped: list[Skip]) -> list[dict]:
    """Drop (with a recorded Skip) the rows that lack a column the user requires.

    ``require: [audio]`` means "a sample without audio is no sample for me"; the reason
    names the column (``missing audio``) so that skipped.csv says which file was absent.
    """
    if not require:
        return rows
    kept = []
    for row in rows:
        absent = [c for c in require if not str(row.get(c, "") or "")]
        if absent:
            skipped.append(Skip(row["id"], str(row.get(source_key, "")), f"missing {absent[0]}"))
        else:
            kept.append(row)
    return kept


def assign_split(groups: Iterable[str], test: set[str], val: set[str]) -> list[str]:
    """``test`` / ``val`` / ``train`` per row from group membership (test wins over val)."""
    return [TEST if g in test else VAL if g in val else TRAIN for g in groups]


def draw(pool: Iterable, n: int, seed: int) -> list:
    """``n`` items of ``pool`` drawn by ``numpy.random.default_rng(seed)``, returned sorted.

    The pool is sorted first, so the draw depends only on the pool's content and the seed
    (never on file-system order): the same corpus and seed give the same validation set.
    """
    items = sorted(pool)
    n = max(0, min(n, len(items)))
    if n == 0:
        return []
    picked = np.random.default_rng(seed).choice(len(items), size=n, replace=False)
    return sorted(items[i] for i in picked)


def unit_hash(text: str) -> float:
    """A stable number in [0, 1) from a string (sha256; independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def label_distribution(df: pd.DataFrame, split_column: str = "split") -> str:
    """``labels per split: train: neutral=30, happy=4 | val: ...`` (most frequent first)."""
    parts = []
    for split in (TRAIN, VAL, TEST, ""):
        sub = df.loc[df[split_column] == split, "label"]
        if sub.empty:
            continue
        counts = sub.replace("", "<unlabeled>").value_counts()
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        body = ", ".join(f"{k}={v}" for k, v in ordered)
        parts.append(f"{split or '<none>'} ({len(sub)}): {body}")
    return f"labels per {split_column}: " + " | ".join(parts)


def overlap_groups(df: pd.DataFrame, column: str = "split") -> dict[tuple[str, str], set[str]]:
    """Groups that appear in two different splits of ``column`` (empty dict = clean)."""
    out = {}
    names = [TRAIN, VAL, TEST]
    sets = {s: set(df.loc[df[column] == s, "group"]) for s in names}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = sets[a] & sets[b]
            if both:
                out[(a, b)] = both
    return out
