"""Reading Empatica E4 CSV exports: the plain export and KEMDy20's tagged variant.

Two layouts exist (see ``shared/docs/datasets.md``):

=============  ===========================================  ==========================================
file           plain export (``fmt="e4"``)                  KEMDy20 variant (``fmt="kemdy20"``)
=============  ===========================================  ==========================================
EDA/TEMP/      line 1 ``<start unix time>`` (ACC: one per   line 1 ``<start unix time>,<datetime>``
BVP/HR         axis, only the first is read), line 2        line 2 ``4.000000,hz``
               ``<rate>``, then one value per line          rows ``value,<datetime>[,<SegmentID>]``
IBI            line 1 ``<start>, IBI``                      line 1 ``<start>,IBI,<datetime>``
               rows ``<s since start>,<IBI s>``             rows ``<s since start>,<IBI s>,<datetime>[,<SegmentID>]``
=============  ===========================================  ==========================================

Uniform signals (EDA 4 Hz, TEMP 4 Hz, BVP 64 Hz, HR 1 Hz) become :class:`E4Signal`; the
event-based IBI file becomes :class:`E4Events`. Per-row unix times are ``start + i / rate``
(uniform) or ``start + <seconds since start>`` (IBI). The KEMDy20 datetime column is local
wall-clock time of unknown zone; it is skipped by the parser and not used for alignment (the unix
start time plus the sample index is exact, and the segment tag is the corpus's alignment).

Why a cache: one KEMDy20 file holds all segments of one speaker and script (one plain export
holds a whole session), and the encoder's ``prepare`` runs once per segment in a thread pool,
so the same file would otherwise be parsed hundreds of times. :func:`read_signal` and
:func:`read_ibi` keep the last parsed files in a small thread-safe LRU keyed by
``(path, mtime, size)``: an edited file is re-read. Cached arrays are read-only because
they are shared between threads and segments.

Parsing uses pandas' C reader with explicit column names (``skiprows`` past the header),
never a Python loop over rows: a 1-hour BVP file has ~230k rows.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Hashable, Literal

import numpy as np
import pandas as pd

from mer.features.base import SampleError
from mer.features.file_check import unreadable_reason

Format = Literal["e4", "kemdy20"]
FORMATS: tuple[str, ...] = ("e4", "kemdy20")


# --------------------------------------------------------------------------------------
# containers
# --------------------------------------------------------------------------------------
def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _tag_index(tags: np.ndarray | None) -> dict[str, np.ndarray]:
    """``tag -> sorted row indices`` for every non-empty tag (one stable sort, no row loop)."""
    if tags is None or len(tags) == 0:
        return {}
    codes, uniques = pd.factorize(tags)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    return {
        str(tag): _readonly(order[bounds[k] : bounds[k + 1]])
        for k, tag in enumerate(uniques)
        if tag != ""
    }


@dataclass(frozen=True)
class E4Signal:
    """A uniformly sampled E4 signal (EDA, TEMP, BVP, HR), or some rows of one.

    ``rows`` are the indices of these rows in the file (``0..n-1`` for a whole file), so that
    per-file computations (the EDA decomposition) can be sliced for a segment.
    """

    path: str
    fmt: str
    #: unix time (UTC, s) of the file's first sample
    start: float
    #: samples per second
    rate: float
    values: np.ndarray
    #: unix time of each row
    times: np.ndarray
    rows: np.ndarray
    #: KEMDy20 segment tag of each row ('' where untagged); None for the plain export
    tags: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    @property
    def tagged(self) -> bool:
        """True when the file carries segment tags on at least one row.

        A KEMDy20-format file with no tag anywhere is aligned by time window instead.
        """
        return self.tags is not None and len(self.tag_index) > 0

    @cached_property
    def tag_index(self) -> dict[str, np.ndarray]:
        """Row positions of each tag, built once per (cached) file."""
        return _tag_index(self.tags)

    def take(self, positions: np.ndarray) -> "E4Signal":
        return E4Signal(
            path=self.path,
            fmt=self.fmt,
            start=self.start,
            rate=self.rate,
            values=self.values[positions],
            times=self.times[positions],
            rows=self.rows[positions],
            tags=None if self.tags is None else self.tags[positions],
        )


@dataclass(frozen=True)
class E4Events:
    """The event-based IBI file: one row per detected beat, or some rows of one.

    ``values`` is the inter-beat interval in seconds ending at that beat; ``times`` the unix
    time of the beat. Beats the device could not detect are simply absent, so two
    consecutive rows are consecutive beats only when ``times[i+1] - times[i] == values[i+1]``.
    """

    path: str
    fmt: str
    start: float
    values: np.ndarray
    times: np.ndarray
    rows: np.ndarray
    tags: np.ndarray | None = None
    #: IBI files have no sample rate; kept so both containers share an interface
    rate: float = field(default=math.nan)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def tagged(self) -> bool:
        """True when the file carries segment tags on at least one row.

        A KEMDy20-format file with no tag anywhere is aligned by time window instead.
        """
        return self.tags is not None and len(self.tag_index) > 0

    @cached_property
    def tag_index(self) -> dict[str, np.ndarray]:
        return _tag_index(self.tags)

    def take(self, positions: np.ndarray) -> "E4Events":
        return E4Events(
            path=self.path,
            fmt=self.fmt,
            start=self.start,
            values=self.values[positions],
            times=self.times[positions],
            rows=self.rows[positions],
            tags=None if self.tags is None else self.tags[positions],
        )


# --------------------------------------------------------------------------------------
# a small thread-safe LRU whose concurrent misses for one key compute once
# --------------------------------------------------------------------------------------
class LRUCache:
    """Least-recently-used cache; a miss computes under no lock, other threads wait for it.

    A failed computation is not cached: its exception reaches every waiting caller and the
    next call tries again.
    """

    def __init__(self, maxsize: int = 32):
        self.maxsize = maxsize
        self._items: OrderedDict[Hashable, Future] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], object]):
        with self._lock:
            future = self._items.get(key)
            if future is not None:
                self._items.move_to_end(key)
                self.hits += 1
                owner = False
            else:
                future = Future()
                self._items[key] = future
                self.misses += 1
                owner = True
                while len(self._items) > self.maxsize:
                    self._items.popitem(last=False)
        if owner:
            try:
                future.set_result(compute())
            except BaseException as exc:  # re-raised below and to every waiter; not swallowed
                with self._lock:
                    if self._items.get(key) is future:
                        del self._items[key]
                future.set_exception(exc)
        return future.result()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)


_FILES = LRUCache(maxsize=32)


def file_key(path: str) -> tuple[str, int, int]:
    """``(absolute path, mtime_ns, size)``: changes whenever the file does."""
    reason = unreadable_reason(path, "file")
    if reason:
        raise SampleError("read", f"{path}: {reason}")
    st = os.stat(path)
    return (os.path.abspath(path), st.st_mtime_ns, st.st_size)


def cache_clear() -> None:
    """Forget every parsed file (tests; long-lived processes that edit files in place)."""
    _FILES.clear()


def cache_info() -> dict[str, int]:
    return {"hits": _FILES.hits, "misses": _FILES.misses, "size": len(_FILES)}


# --------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------
def _check_format(fmt: str, path: str) -> None:
    if fmt not in FORMATS:
        raise SampleError("read", f"{path}: unknown E4 format {fmt!r}; expected one of {list(FORMATS)}")


def _header_lines(path: str, count: int) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            lines = [handle.readline() for _ in range(count)]
    except FileNotFoundError:
        raise SampleError("read", f"{path}: file not found") from None
    except OSError as exc:
        raise SampleError("read", f"{path}: cannot read file: {exc.strerror or type(exc).__name__}") from None
    return [line.rstrip("\r\n") for line in lines]


def _parse_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _start_time(path: str, line: str, expected: str) -> float:
    start = _parse_float(line.split(",")[0].strip())
    if start is None:
        raise SampleError("read", f"{path}: line 1 should be {expected}, but {_describe(line)}")
    return start


def _describe(line: str) -> str:
    """What is wrong with a header line, WITHOUT quoting it (a path typo can point at any file,
    e.g. /etc/passwd, and failures.jsonl must not carry its content)."""
    if not line.strip():
        return "it is empty"
    fields = line.split(",")
    return (f"its first field is not a finite number ({len(fields)} comma-separated field(s), "
            f"{len(line)} characters)")


def _first_bad_line(path: str, skip: int, names: list[str], numeric: list[str], usecols: list[int] | None) -> str:
    """After the fast parser failed: locate the first non-numeric cell, for the message."""
    table = pd.read_csv(
        path, header=None, names=names, skiprows=skip, usecols=usecols, dtype=str,
        keep_default_na=False, skip_blank_lines=False,
    )
    for name in numeric:
        cells = table[name].str.strip()
        parsed = pd.to_numeric(cells, errors="coerce")
        bad = np.flatnonzero((parsed.isna() & ~cells.str.lower().isin(("", "nan"))).to_numpy())
        if len(bad):
            i = int(bad[0])
            return (f"line {i + skip + 1}, column {names.index(name) + 1} is not a number "
                    f"({len(cells.iloc[i])} characters)")
    return "a value is not a number"


def _read_table(path: str, skip: int, names: list[str], numeric: tuple[str, ...], usecols: list[int] | None = None) -> pd.DataFrame:
    """pandas' C parser with explicit names; errors name the file and the line.

    Missing trailing fields (an untagged KEMDy20 row) read as '' in text columns.
    """
    dtype = {name: ("float64" if name in numeric else str) for name in names}
    try:
        return pd.read_csv(
            path, header=None, names=names, skiprows=skip, usecols=usecols, dtype=dtype, engine="c",
            keep_default_na=False, na_values={name: ["", "nan", "NaN"] for name in numeric},
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame({name: pd.Series(dtype=dtype[name]) for name in names})
    except pd.errors.ParserError as exc:
        raise SampleError("read", f"{path}: malformed CSV: {exc}") from None
    except ValueError:  # a non-numeric cell in a float column
        raise SampleError("read", f"{path}: {_first_bad_line(path, skip, names, list(numeric), usecols)}") from None


def _parse_signal(path: str, fmt: str) -> E4Signal:
    line1, line2 = _header_lines(path, 2)
    if fmt == "kemdy20":
        start = _start_time(path, line1, "'<start unix time>,<start datetime>'")
        fields = [f.strip() for f in line2.split(",")]
        rate = _parse_float(fields[0]) if len(fields) == 2 and fields[1].lower() == "hz" else None
        expected = "the sample rate in Hz ('<rate>,hz', e.g. '4.000000,hz')"
    else:
        start = _start_time(path, line1, "the start unix time")
        fields = [f.strip() for f in line2.split(",")]
        # ACC repeats the rate once per axis; every other export has one field
        rate = _parse_float(fields[0]) if all(f == fields[0] for f in fields) else None
        expected = "the sample rate in Hz"
    if rate is None or rate <= 0:
        hint = ""
        if fmt == "e4" and len(fields) == 2 and fields[1].lower() == "hz":
            hint = "; this looks like KEMDy20's variant: set bio_format to 'kemdy20'"
        elif fmt == "kemdy20" and len(fields) == 1 and _parse_float(fields[0]) is not None:
            hint = "; this looks like a plain E4 export: set bio_format to 'e4'"
        got = "it is not a positive number" if line2.strip() else "it is empty"
        raise SampleError("read", f"{path}: line 2 should be {expected}, but {got}{hint}")

    if fmt == "kemdy20":
        table = _read_table(path, 2, ["value", "datetime", "tag"], ("value",))
        tags = table["tag"].fillna("").str.strip().to_numpy(dtype=object)
    else:
        # ACC has three columns; only the first is read (ACC is not a supported signal)
        table = _read_table(path, 2, ["value"], ("value",), usecols=[0])
        tags = None
    values = table["value"].to_numpy(dtype=np.float64, copy=True)
    n = len(values)
    times = start + np.arange(n, dtype=np.float64) / rate
    return E4Signal(
        path=path, fmt=fmt, start=start, rate=rate, values=_readonly(values), times=_readonly(times),
        rows=_readonly(np.arange(n)), tags=None if tags is None else _readonly(tags),
    )


def _parse_ibi(path: str, fmt: str) -> E4Events:
    (line1,) = _header_lines(path, 1)
    fields = [f.strip() for f in line1.split(",")]
    start = _parse_float(fields[0]) if fields else None
    want = "'<start unix time>,IBI,<datetime>'" if fmt == "kemdy20" else "'<start unix time>, IBI'"
    if start is None or len(fields) < 2 or fields[1].upper() != "IBI":
        raise SampleError("read", f"{path}: line 1 should be {want}, but it is not ({len(fields)} "
                                  f"comma-separated field(s), {len(line1)} characters)")
    if fmt == "kemdy20":
        table = _read_table(path, 1, ["t", "ibi", "datetime", "tag"], ("t", "ibi"))
        tags = table["tag"].fillna("").str.strip().to_numpy(dtype=object)
    else:
        table = _read_table(path, 1, ["t", "ibi"], ("t", "ibi"))
        tags = None
    offsets = table["t"].to_numpy(dtype=np.float64)
    values = table["ibi"].to_numpy(dtype=np.float64, copy=True)
    n = len(values)
    return E4Events(
        path=path, fmt=fmt, start=start, values=_readonly(values), times=_readonly(start + offsets),
        rows=_readonly(np.arange(n)), tags=None if tags is None else _readonly(tags),
    )


def read_signal(path: str, fmt: Format = "e4") -> E4Signal:
    """Parse an EDA/TEMP/BVP/HR file (cached by path, mtime and size)."""
    path = str(path)
    _check_format(fmt, path)
    key = ("signal", fmt) + file_key(path)
    return _FILES.get(key, lambda: _parse_signal(path, fmt))


def read_ibi(path: str, fmt: Format = "e4") -> E4Events:
    """Parse an IBI file (cached by path, mtime and size)."""
    path = str(path)
    _check_format(fmt, path)
    key = ("ibi", fmt) + file_key(path)
    return _FILES.get(key, lambda: _parse_ibi(path, fmt))


# --------------------------------------------------------------------------------------
# segments
# --------------------------------------------------------------------------------------
def _finite(x: float | None) -> bool:
    return x is not None and x == x and math.isfinite(float(x))


def has_window(start: float | None, end: float | None) -> bool:
    return _finite(start) or _finite(end)


def segment_positions(
    signal: E4Signal | E4Events, tag: str = "", start: float | None = None, end: float | None = None
) -> np.ndarray:
    """Row positions of one segment in ``signal``.

    By tag when the file carries tags (KEMDy20) and a tag is given: the rows whose tag
    column equals it (possibly none: not every segment has IBI). Otherwise by the unix-time
    window ``[start, end)``; a missing bound is open. Neither a usable tag nor a window is
    an error naming the file.
    """
    tag = "" if tag is None or tag != tag else str(tag).strip()
    if tag and signal.tagged:
        return signal.tag_index.get(tag, np.empty(0, dtype=np.int64))
    if has_window(start, end):
        lo = float(start) if _finite(start) else -math.inf
        hi = float(end) if _finite(end) else math.inf
        times = signal.times
        if isinstance(signal, E4Signal):  # uniform times are sorted: binary search
            return np.arange(np.searchsorted(times, lo, "left"), np.searchsorted(times, hi, "left"))
        return np.flatnonzero((times >= lo) & (times < hi))
    if tag:
        raise SampleError("read", f"{signal.path}: file has no segment tags (format {signal.fmt!r}) and no bio_start/bio_end window was given for segment {tag!r}")
    raise SampleError("read", f"{signal.path}: no segment selector: bio_tag is empty and bio_start/bio_end are not set")


def segment(signal, tag: str = "", start: float | None = None, end: float | None = None):
    """The rows of one segment, as the same container type (see :func:`segment_positions`)."""
    return signal.take(segment_positions(signal, tag=tag, start=start, end=end))


__all__ = [
    "E4Events",
    "E4Signal",
    "FORMATS",
    "LRUCache",
    "cache_clear",
    "cache_info",
    "file_key",
    "has_window",
    "read_ibi",
    "read_signal",
    "segment",
    "segment_positions",
]
