"""CMU Multimodal SDK "computational sequences" (``.csd``, HDF5): read, write, align.

The layout and its metadata encoding are described, and read, in :mod:`mer.features.csd_file`
(the ``csd`` encoder spec needs them too, and features never import the pipeline); this
module adds the per-video data, writing, and the alignment to labelled segments.

Reads are lazy: opening a sequence reads the metadata and the video list only; each video's
arrays are read when asked for, so a 20 GB feature file costs nothing until used.

Why not the SDK itself: ``mmsdk`` is not on PyPI, pins old dependencies and loads every
video into memory on open; the format is small enough to read directly with h5py.

Alignment (:func:`align_to_segments`) is what ``mer import-csd`` needs: for each labelled
segment ``(id, video, start, end)`` the feature rows whose interval overlaps ``[start, end)``,
as a per-sample ``(T, D)`` array, ready to be written as a sequence feature in the cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

# CsdError is raised here too and imported from here by the adapters and the CLI's error table
from mer.features.csd_file import CsdError, dimension_names, feature_dim, open_sequence, read_metadata


def interval_id(video: str, start: float, end: float, decimals: int = 3) -> str:
    """The sample id of one labelled interval: ``<video>[<start>-<end>]`` in seconds.

    Millisecond precision: stable across runs and float32/float64 readings of the same file.
    """
    return f"{video}[{start:.{decimals}f}-{end:.{decimals}f}]"


class CsdSequence:
    """One open computational sequence. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path, root: str | None = None):
        self.path = Path(path)
        self._file, self.name = open_sequence(self.path, root)
        group = self._file[self.name]
        self._data = group["data"]
        self.metadata: dict[str, Any] = read_metadata(group)
        self._videos = list(self._data.keys())

    # --- metadata ------------------------------------------------------------------------
    @property
    def dimension_names(self) -> list[str]:
        return dimension_names(self.metadata)

    @property
    def dim(self) -> int:
        """D, from the first video with features (every video of a sequence has the same D)."""
        return feature_dim(self._data, self.dimension_names)

    # --- data ----------------------------------------------------------------------------
    def videos(self) -> list[str]:
        return list(self._videos)

    def __len__(self) -> int:
        return len(self._videos)

    def __contains__(self, video: str) -> bool:
        return video in self._data

    def _video(self, video: str):
        if video not in self._data:
            raise KeyError(f"{self.path}: video {video!r} is not in '{self.name}/data'")
        group = self._data[video]
        if "features" not in group or "intervals" not in group:
            raise CsdError(f"{self.path}: '{self.name}/data/{video}' lacks 'features' or 'intervals'")
        return group

    def features(self, video: str) -> np.ndarray:
        """(T, D) as stored (float32 in the real files); a 1-D array reads as (T, 1)."""
        arr = np.asarray(self._video(video)["features"][()])
        return arr.reshape(-1, 1) if arr.ndim == 1 else arr

    def intervals(self, video: str) -> np.ndarray:
        """(T, 2) start and end seconds."""
        arr = np.asarray(self._video(video)["intervals"][()])
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise CsdError(f"{self.path}: '{self.name}/data/{video}/intervals' has shape {arr.shape}, expected (T, 2)")
        return arr

    def read(self, video: str) -> tuple[np.ndarray, np.ndarray]:
        """(features, intervals) of one video, checked to have the same number of rows."""
        feats, ivs = self.features(video), self.intervals(video)
        if len(feats) != len(ivs):
            raise CsdError(f"{self.path}: video {video!r} has {len(feats)} feature rows but {len(ivs)} intervals")
        return feats, ivs

    # --- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()
            self._file = None

    def __enter__(self) -> "CsdSequence":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CsdSequence({str(self.path)!r}, name={self.name!r}, videos={len(self._videos)})"


def read_csd(path: str | Path, root: str | None = None) -> CsdSequence:
    """Open a computational sequence (lazy); ``root`` picks the root group if there are several."""
    return CsdSequence(path, root)


def write_csd(path: str | Path, name: str, data: dict[str, tuple[np.ndarray, np.ndarray]],
              metadata: dict[str, Any] | None = None, compression: str | None = "gzip") -> Path:
    """Write a sequence the way the SDK does (readable by ``mmsdk`` and by :func:`read_csd`)."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"root name": name, **(metadata or {})}
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        root = f.create_group(name)
        grp = root.create_group("data")
        for video, (features, intervals) in data.items():
            features, intervals = np.asarray(features), np.asarray(intervals)
            if features.ndim != 2 or intervals.shape != (len(features), 2):
                raise ValueError(f"{video}: features must be (T, D) and intervals (T, 2); got "
                                 f"{features.shape} and {intervals.shape}")
            v = grp.create_group(video)
            v.create_dataset("features", data=features, compression=compression)
            v.create_dataset("intervals", data=intervals, compression=compression)
        md = root.create_group("metadata")
        for key, value in metadata.items():
            ds = md.create_dataset(key, (1,), dtype=h5py.string_dtype("utf-8"))
            ds[0] = json.dumps(value)
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------------------
# alignment
# --------------------------------------------------------------------------------------
def overlapping_rows(intervals: np.ndarray, start: float, end: float) -> np.ndarray:
    """Indices of rows whose interval overlaps ``[start, end)``.

    A row ``[a, b)`` overlaps when ``a < end`` and ``b > start``; a zero-length row (a point
    event, ``a == b``) belongs to the segment when ``start <= a < end``.
    """
    a, b = intervals[:, 0], intervals[:, 1]
    point = a == b
    hit = np.where(point, (a >= start) & (a < end), (a < end) & (b > start))
    return np.flatnonzero(hit)


@dataclass
class AlignedSegment:
    """One labelled segment's feature rows; ``problem`` is '' or why there are none."""

    id: str
    video: str
    features: np.ndarray
    intervals: np.ndarray
    problem: str = ""


def align_to_segments(seq: CsdSequence, segments: Iterable[tuple[str, str, float, float]]) -> Iterator[AlignedSegment]:
    """For each ``(id, video, start, end)``: the (T, D) feature rows overlapping the segment.

    Rows are in file order; intervals are clipped to the segment. A segment whose video is
    absent or which no row overlaps gets empty arrays and a ``problem`` (the importer records
    it as a per-sample failure). Videos are read once each, in the order first needed.
    """
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    dim = seq.dim
    for sample_id, video, start, end in segments:
        if video not in seq:
            yield AlignedSegment(sample_id, video, np.zeros((0, dim), np.float32), np.zeros((0, 2)),
                                 f"video {video!r} not in {seq.path.name}")
            continue
        if video not in cache:
            cache.clear()  # segments usually come grouped by video: keep one video in memory
            cache[video] = seq.read(video)
        feats, ivs = cache[video]
        rows = overlapping_rows(ivs, start, end)
        if len(rows) == 0:
            yield AlignedSegment(sample_id, video, feats[:0], ivs[:0], f"no rows of {seq.path.name} overlap "
                                 f"[{start:.3f}, {end:.3f}) of {video!r}")
            continue
        clipped = np.clip(ivs[rows], start, end)
        yield AlignedSegment(sample_id, video, feats[rows], clipped)
