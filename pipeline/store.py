"""Reading the feature cache: aligned arrays for any list of ids.

>>> store = FeatureStore.open("cache", "demo", "audio", "logmel-1a2b3c4d5e6f")
>>> batch = store.get(["spk1_003", "spk2_001", "missing_id"])
>>> batch["pooled"].shape          # fixed output: (3, *shape) float32, zeros where absent
>>> batch["frames"][0]             # ragged output: a Ragged; sample 0's (T_0, *shape) frames
>>> batch.present                  # [True, True, False]: absent AND failed samples are False

The store reads only complete shards: sidecar present, size as recorded, and the sha256 of
the bytes equal to the sidecar's (once per shard per process, see :mod:`.read_verify`). A
shard whose bytes disagree with its sidecar, or that is not a readable HDF5 file, is refused
with a :class:`CacheError` naming it and the repair; a shard whose write never finished is
skipped (the cache is then incomplete, and ``is_complete`` says so). It builds an id ->
(shard, row) index once from the shards' ``ids`` datasets, and in :meth:`FeatureStore.get`
reads each shard at most once. Float
outputs come back as float32 whatever the cache dtype; other dtypes as stored.
``dask_array`` gives a lazy view (one chunk per shard) for caches larger than memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import h5py
import numpy as np

from mer.features.base import OutputSpec
from mer.pipeline.cache import CacheError, ShardProblem, read_spec, scan, shard_name
from mer.pipeline.layout import encoder_dir
from mer.pipeline.read_verify import verify_for_read
from mer.pipeline.shard import read_ids, spec_from_dict

if TYPE_CHECKING:
    from mer.pipeline.config import PipelineConfig

log = logging.getLogger("mer.store")

#: read a contiguous span of rows and pick from it when at least this share of the span is wanted
DENSE_READ = 0.25
#: shard problems that mean damaged bytes (refused), not an unfinished write (skipped)
DAMAGED = ("corrupt", "size")
#: what repairs a damaged shard (train adds the exact command with the config and modality)
REPAIR = "re-run `mer extract` with the config that built this cache"


def open_shard(path: str | Path) -> h5py.File:
    """Open a shard for reading; a file HDF5 cannot open is a :class:`CacheError` naming it
    and its repair, not h5py's ``OSError`` (the reason is HDF5's, never the file's bytes)."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        path = Path(path)
        reason = str(exc).split("(", 1)[-1].rstrip(")") if "(" in str(exc) else str(exc)
        raise CacheError(f"{path}: not a readable HDF5 file ({reason}); remove it and its sidecar "
                         f"{path.with_suffix('.json').name}, then {REPAIR}") from None


def damaged_message(directory: Path, problems: list[ShardProblem]) -> str:
    """One line per damaged shard: name, what disagrees, and the repair."""
    lines = []
    for p in sorted(problems, key=lambda p: p.index):
        if p.kind == "corrupt":
            lines.append(f"  {p.path.name}: sha256 {p.actual} != {p.expected} in its sidecar")
        else:
            lines.append(f"  {p.path.name}: {p.actual} bytes != {p.expected} in its sidecar")
    return (f"{directory}: {len(problems)} shard(s) damaged since they were written; refusing to read them:\n"
            + "\n".join(lines) + f"\n  {REPAIR}: it redoes them")


@dataclass
class Ragged:
    """Variable-length sequences, flat: sample i is ``values[offsets[i]:offsets[i + 1]]``."""

    values: Any  # np.ndarray (sum T_i, *shape), or a dask array from FeatureStore.dask_array
    offsets: np.ndarray  # (N + 1,) int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int):
        return self.values[int(self.offsets[i]):int(self.offsets[i + 1])]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def padded(self, max_len: int | None = None, pad_value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """(N, T, *shape) array padded (or cut) to ``max_len`` (default: the longest), and its (N, T) mask."""
        values = np.asarray(self.values)
        lengths = self.lengths
        t = int(lengths.max(initial=0)) if max_len is None else int(max_len)
        n = len(self)
        out = np.full((n, t, *values.shape[1:]), pad_value, dtype=values.dtype)
        mask = np.arange(t)[None, :] < np.minimum(lengths, t)[:, None]
        rows, cols = np.nonzero(mask)
        out[rows, cols] = values[self.offsets[rows] + cols]
        return out, mask


@dataclass
class StoreBatch:
    """Arrays aligned with ``ids``: ``batch[name]`` is an ndarray (fixed) or :class:`Ragged`."""

    ids: list[str]
    present: np.ndarray  # bool (N,): extracted successfully
    failed: np.ndarray  # bool (N,): extraction failed (recorded in failures.jsonl)
    arrays: dict[str, Any]
    spec: dict[str, Any]

    def __getitem__(self, name: str):
        return self.arrays[name]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def missing(self) -> np.ndarray:
        """Not in the cache at all (absent modality, or not extracted yet)."""
        return ~self.present & ~self.failed


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + l)`` for every (s, l), vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    nonzero = lengths > 0
    starts, lengths = np.asarray(starts, dtype=np.int64)[nonzero], lengths[nonzero]
    ends = np.cumsum(lengths)
    step = np.ones(total, dtype=np.int64)
    step[0] = starts[0]
    step[ends[:-1]] = starts[1:] - (starts[:-1] + lengths[:-1]) + 1
    return np.cumsum(step)


def _read_rows(dataset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """``dataset[rows]`` for sorted unique ``rows``: one contiguous read when dense, else fancy."""
    if len(rows) == 0:
        return np.zeros((0, *dataset.shape[1:]), dtype=dataset.dtype)
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    if len(rows) >= DENSE_READ * (hi - lo):
        return dataset[lo:hi][rows - lo]
    return dataset[rows]


def _read_ragged(group: h5py.Group, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of sorted unique ``rows`` concatenated, and their lengths."""
    offsets = group["offsets"][:]
    values = group["values"]
    starts, ends = offsets[rows], offsets[rows + 1]
    lengths = ends - starts
    if len(rows) == 0 or lengths.sum() == 0:
        return np.zeros((0, *values.shape[1:]), dtype=values.dtype), lengths
    lo, hi = int(starts.min()), int(ends.max())
    if lengths.sum() >= DENSE_READ * (hi - lo):
        span = values[lo:hi]
        return span[_ranges(starts - lo, lengths)], lengths
    parts = [values[int(s):int(e)] for s, e in zip(starts, ends) if e > s]
    return np.concatenate(parts, axis=0), lengths


def _out_dtype(spec: OutputSpec, stored: np.dtype) -> np.dtype:
    return np.dtype(np.float32) if np.dtype(stored).kind == "f" else np.dtype(stored)


class FeatureStore:
    """Read access to one encoder directory ``<root>/<corpus>/<modality>/<encoder key>/``."""

    def __init__(self, path: str | Path, *, verify: bool = True):
        """``verify=False`` checks sizes only: for tools that look at a cache they will repair,
        never for reading features to use."""
        self.path = Path(path)
        if not self.path.is_dir():
            raise CacheError(f"{self.path}: no such feature cache directory (run mer extract first)")
        if not (self.path / "spec.json").exists():
            raise CacheError(f"{self.path}: no spec.json: not a mer feature cache, or its extraction never started")
        spec = read_spec(self.path)  # CacheError naming what makes it unusable
        self.spec: dict[str, Any] = spec
        self.outputs: list[OutputSpec] = [spec_from_dict(o) for o in (spec.get("outputs") or [])]
        self._output = {o.name: o for o in self.outputs}
        self._stored_dtype = {o["name"]: np.dtype(o.get("stored_dtype") or "float32")
                              for o in (spec.get("outputs") or [])}
        state = verify_for_read(self.path) if verify else scan(self.path, verify=False)
        damaged = [p for p in state.problems.values() if p.kind in DAMAGED]
        if damaged:
            raise CacheError(damaged_message(self.path, damaged))
        for problem in state.problems.values():
            log.warning("%s: skipping %s: %s", self.path, problem.path.name, problem.detail)
        self._shard_paths: list[Path] = []
        self._shard_ok: list[np.ndarray] = []
        self._shard_ids: list[list[str]] = []
        index: dict[str, tuple[int, int]] = {}
        for position, shard in enumerate(sorted(state.complete)):
            path = self.path / f"{shard_name(shard)}.h5"
            with open_shard(path) as f:
                ids = read_ids(f)
                ok = f["ok"][:].astype(bool)
            self._shard_paths.append(path)
            self._shard_ok.append(ok)
            self._shard_ids.append(ids)
            for row, sample_id in enumerate(ids):
                if sample_id in index:
                    log.warning("%s: id %r is in two shards; using the later one (%s)", self.path, sample_id,
                                path.name)
                index[sample_id] = (position, row)
        self._index = index

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, corpus: str, modality: str, key: str, *, verify: bool = True) -> "FeatureStore":
        return cls(encoder_dir(root, corpus, modality, key), verify=verify)

    @classmethod
    def for_config(cls, config: "PipelineConfig", modality: str, *, verify: bool = True) -> "FeatureStore":
        """The store of ``config.features[modality]`` (the encoder is built for its key, not loaded)."""
        from mer.features.registry import build_encoder

        if modality not in config.features:
            raise KeyError(f"no encoder configured for modality {modality!r}; features: {', '.join(config.features)}")
        key = build_encoder(config.features[modality]).key()
        return cls(config.layout.encoder_dir(modality, key), verify=verify)

    # --- what is there -------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        """Every stored id (successful or failed), in shard order."""
        return [i for position, ids in enumerate(self._shard_ids) for row, i in enumerate(ids)
                if self._index[i] == (position, row)]

    @property
    def key(self) -> str:
        return self.spec.get("key", self.path.name)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self._index

    def output(self, name: str) -> OutputSpec:
        if name not in self._output:
            raise KeyError(f"{self.path}: no output {name!r}; outputs: {', '.join(self._output)}")
        return self._output[name]

    def is_complete(self, manifest, present: Callable[[dict], bool] | None = None) -> bool:
        """Is every sample of ``manifest`` that has this modality in a complete shard?

        ``present`` defaults to the encoder's default rule (its first column non-empty, as
        recorded in spec.json); pass ``encoder.present`` for an encoder that overrides it.
        """
        if present is None:
            columns = self.spec.get("columns") or []
            if not columns:
                raise CacheError(f"{self.path}/spec.json names no columns; pass present=encoder.present")
            wanted = np.asarray(manifest.ids, dtype=object)[manifest.has(columns[0])]
        else:
            wanted = [r["id"] for r in manifest.rows() if present(r)]
        return all(i in self._index for i in wanted)

    # --- reading -------------------------------------------------------------------------------
    def _locate(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        shard = np.full(len(ids), -1, dtype=np.int64)
        row = np.zeros(len(ids), dtype=np.int64)
        for j, sample_id in enumerate(ids):
            loc = self._index.get(sample_id)
            if loc is not None:
                shard[j], row[j] = loc
        return shard, row

    def get(self, ids: Iterable[str], outputs: Iterable[str] | None = None) -> StoreBatch:
        """Aligned arrays for ``ids`` in that order (duplicates allowed); each shard read once."""
        ids = list(ids)
        n = len(ids)
        names = list(outputs) if outputs is not None else [o.name for o in self.outputs]
        specs = [self.output(name) for name in names]
        shard, row = self._locate(ids)
        stored = shard >= 0
        ok = np.zeros(n, dtype=bool)
        for s in np.unique(shard[stored]):
            sel = shard == s
            ok[sel] = self._shard_ok[s][row[sel]]
        arrays: dict[str, Any] = {}
        fixed = [s for s in specs if not s.ragged]
        ragged = [s for s in specs if s.ragged]
        for spec in fixed:
            arrays[spec.name] = np.zeros((n, *spec.shape), dtype=_out_dtype(spec, self._stored_dtype[spec.name]))
        pieces: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {s.name: [] for s in ragged}
        lengths = {s.name: np.zeros(n, dtype=np.int64) for s in ragged}
        for s in np.unique(shard[stored]):
            where = np.flatnonzero(shard == s)
            unique_rows, inverse = np.unique(row[where], return_inverse=True)
            with open_shard(self._shard_paths[s]) as f:
                for spec in fixed:
                    data = _read_rows(f[spec.name], unique_rows)
                    arrays[spec.name][where] = data[inverse]
                for spec in ragged:
                    values, lens = _read_ragged(f[spec.name], unique_rows)
                    lengths[spec.name][where] = lens[inverse]
                    pieces[spec.name].append((where, inverse, values, lens))
        for spec in ragged:
            out_lengths = lengths[spec.name]
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(out_lengths, out=offsets[1:])
            values = np.zeros((int(offsets[-1]), *spec.shape), dtype=_out_dtype(spec, self._stored_dtype[spec.name]))
            for where, inverse, shard_values, lens in pieces[spec.name]:
                shard_offsets = np.zeros(len(lens) + 1, dtype=np.int64)
                np.cumsum(lens, out=shard_offsets[1:])
                want = lens[inverse]
                src = _ranges(shard_offsets[inverse], want)
                dst = _ranges(offsets[where], want)
                values[dst] = shard_values[src]
            arrays[spec.name] = Ragged(values, offsets)
        return StoreBatch(ids=ids, present=stored & ok, failed=stored & ~ok, arrays=arrays, spec=self.spec)

    def dask_array(self, name: str, ids: Iterable[str] | None = None):
        """A lazy ``dask.array`` of output ``name`` for ``ids`` (default: :attr:`ids`), one chunk
        per shard; equal to ``get(ids)[name]``. A ragged output gives a :class:`Ragged` whose
        ``values`` is the dask array (offsets are computed now: they are small)."""
        import dask
        import dask.array as da

        spec = self.output(name)
        ids = self.ids if ids is None else list(ids)
        n = len(ids)
        dtype = _out_dtype(spec, self._stored_dtype[name])
        shard, row = self._locate(ids)
        order_parts: list[np.ndarray] = []
        chunks = []
        lengths = np.zeros(n, dtype=np.int64)
        for s in np.unique(shard[shard >= 0]):
            where = np.flatnonzero(shard == s)
            rows = row[where]
            if spec.ragged:
                with open_shard(self._shard_paths[s]) as f:
                    offsets = f[name]["offsets"][:]
                lens = offsets[rows + 1] - offsets[rows]
                lengths[where] = lens
                shape = (int(lens.sum()), *spec.shape)
            else:
                shape = (len(rows), *spec.shape)
            part = dask.delayed(_read_chunk)(str(self._shard_paths[s]), name, spec.ragged, rows, dtype)
            chunks.append(da.from_delayed(part, shape=shape, dtype=dtype))
            order_parts.append(where)
        missing = np.flatnonzero(shard < 0)
        if not spec.ragged and len(missing):
            chunks.append(da.zeros((len(missing), *spec.shape), dtype=dtype, chunks=(len(missing), *spec.shape)))
            order_parts.append(missing)
        if not chunks:
            empty = da.zeros((0 if spec.ragged else n, *spec.shape), dtype=dtype)
            return Ragged(empty, np.zeros(n + 1, dtype=np.int64)) if spec.ragged else empty
        stacked = da.concatenate(chunks, axis=0)
        position = np.concatenate(order_parts)  # stacked item k belongs to request position position[k]
        if not spec.ragged:
            if np.array_equal(position, np.arange(n)):
                return stacked
            inverse = np.empty(n, dtype=np.int64)
            inverse[position] = np.arange(n)
            return stacked[inverse]
        # ragged: permute whole sequences; their element ranges in ``stacked`` follow ``position``
        stacked_lengths = lengths[position]
        stacked_offsets = np.zeros(len(position) + 1, dtype=np.int64)
        np.cumsum(stacked_lengths, out=stacked_offsets[1:])
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        inverse = np.empty(n, dtype=np.int64)
        inverse[position] = np.arange(len(position))
        present_pos = np.flatnonzero(shard >= 0)
        src = _ranges(stacked_offsets[inverse[present_pos]], lengths[present_pos])
        if np.array_equal(src, np.arange(int(stacked_offsets[-1]))):
            return Ragged(stacked, offsets)
        return Ragged(stacked[src], offsets)


def _read_chunk(path: str, name: str, ragged: bool, rows: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Rows of one shard in the given order (a dask task: opens the file itself, picklable)."""
    unique_rows, inverse = np.unique(rows, return_inverse=True)
    with open_shard(path) as f:
        if not ragged:
            return _read_rows(f[name], unique_rows)[inverse].astype(dtype, copy=False)
        values, lens = _read_ragged(f[name], unique_rows)
    shard_offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=shard_offsets[1:])
    return values[_ranges(shard_offsets[inverse], lens[inverse])].astype(dtype, copy=False)
