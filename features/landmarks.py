"""``landmarks``: OpenFace 2 CSV -> per-frame 2-D facial landmarks, (T, 51, 2), plus a validity mask.

The MPUC-MER graph net takes the 68 OpenFace points minus the 17 jaw points (0..16):
51 nodes, node ``i`` = OpenFace point ``i + 17``. Columns are selected BY NAME
(OpenFace headers carry leading spaces: `` x_0``), never by position.

A frame is valid when ``success == 1``, ``confidence >= min_confidence`` and all its
coordinates are finite. Each clip is min-max normalised into [0, 1] over its valid
frames, x and y separately (one min and max per axis over all points and frames, so the
face keeps its aspect within an axis). Invalid frames are stored as zeros and marked
False in ``valid``: the sequence keeps the video's frame count, so frame k stays frame k.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mer.features.base import Encoder, OutputSpec, SampleError
from mer.features.batching import BatchPolicy

#: OpenFace 2 points kept: 17..67 (the jaw line 0..16 is dropped)
POINTS = tuple(range(17, 68))
X_COLUMNS = tuple(f"x_{i}" for i in POINTS)
Y_COLUMNS = tuple(f"y_{i}" for i in POINTS)
REQUIRED = ("success", "confidence") + X_COLUMNS + Y_COLUMNS


@dataclass
class Options:
    encoder: str = "landmarks"
    #: frames whose OpenFace confidence is below this are invalid (success must also be 1)
    min_confidence: float = 0.0
    #: manifest column with the OpenFace CSV path
    column: str = "landmarks"

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")


def read_openface(path: str | Path) -> pd.DataFrame:
    """The required columns of an OpenFace CSV, header names stripped; SampleError when unusable."""
    path = Path(str(path))
    if not path.is_file():
        raise SampleError("read", f"{path}: landmark file not found")
    wanted = set(REQUIRED)
    try:
        df = pd.read_csv(path, usecols=lambda c: c.strip() in wanted)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SampleError("decode", f"{path}: cannot parse OpenFace CSV: {exc}") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise SampleError("decode", f"{path}: not an OpenFace 2 landmark CSV: missing column(s) {shown}")
    if len(df) == 0:
        raise SampleError("decode", f"{path}: no frames (header only)")
    return df


def landmark_sequence(df: pd.DataFrame, min_confidence: float, source: str = "<frame>") -> tuple[np.ndarray, np.ndarray]:
    """(T, 51, 2) float32 coordinates normalised per clip and (T,) bool validity."""
    try:
        x = df.loc[:, list(X_COLUMNS)].to_numpy(dtype=np.float64)
        y = df.loc[:, list(Y_COLUMNS)].to_numpy(dtype=np.float64)
        success = df["success"].to_numpy(dtype=np.float64)
        confidence = df["confidence"].to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise SampleError("decode", f"{source}: non-numeric landmark values: {exc}") from None
    valid = (success == 1) & (confidence >= min_confidence) & np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    if not valid.any():
        raise SampleError("features", f"{source}: no valid frame among {len(df)} (success == 1 and confidence >= {min_confidence})")
    return normalise_clip(x, y, valid, source), valid


def normalise_clip(x: np.ndarray, y: np.ndarray, valid: np.ndarray, source: str = "<frame>") -> np.ndarray:
    """(T, P) x and y pixel coordinates -> (T, P, 2) float32 min-max normalised over the valid frames.

    Shared with ``face-landmarks`` so that landmarks found in raw video are scaled exactly as the
    OpenFace CSV path scales them. Invalid frames are zeros.
    """
    coords = np.zeros((x.shape[0], x.shape[1], 2), dtype=np.float32)
    for axis, values in enumerate((x, y)):
        lo, hi = values[valid].min(), values[valid].max()
        if not hi > lo:
            raise SampleError("features", f"{source}: {'xy'[axis]} coordinates do not vary over the valid frames")
        coords[valid, :, axis] = (values[valid] - lo) / (hi - lo)
    return coords


class LandmarksEncoder(Encoder):
    family = "landmarks"
    code_version = "1"
    columns = ("landmarks",)

    def __init__(self, options: Options):
        super().__init__(options)
        self.columns = (options.column,)

    def outputs(self) -> list[OutputSpec]:
        return [OutputSpec("frames", (len(POINTS), 2), ragged=True, attrs={"points": list(POINTS), "coords": ["x", "y"]}),
                OutputSpec("valid", (), ragged=True, dtype="bool")]

    def batch_policy(self) -> BatchPolicy:
        return BatchPolicy(max_items=32)

    def prepare(self, row: dict) -> dict[str, np.ndarray]:
        path = row.get(self.options.column)
        frames, valid = landmark_sequence(read_openface(path), self.options.min_confidence, str(path))
        return {"frames": frames, "valid": valid}

    def encode(self, batch: list[Any]) -> list[dict[str, np.ndarray]]:
        return list(batch)


ENCODER = LandmarksEncoder
