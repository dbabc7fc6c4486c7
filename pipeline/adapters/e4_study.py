"""Empatica E4 exports of any study: one folder per recording, segments from a table or tags.

Layout (the E4 connect export, unchanged)::

    <root>/<recording>/EDA.csv TEMP.csv BVP.csv HR.csv    line 1 start unix time (UTC), line 2 Hz, values
                       IBI.csv                            line 1 '<start>, IBI', rows '<s since start>,<IBI s>'
                       tags_<anything>.csv                one unix time per button press

Samples come from either

* a **segments table** (``segments``: CSV with ``id, recording, start, end`` in unix seconds;
  optional ``label``, ``group``, ``split``; any other column, e.g. ``target_stress``, is kept), or
* **windows between tags** (``windows_from_tags: true``): for each pair of consecutive button
  presses ``[t_i, t_{i+1})`` the full windows of ``window_s`` seconds every ``hop_s`` seconds
  (a partial window at the end of an interval is not made). ``tag_interval`` = i, and
  ``label`` = ``tag_labels[i]`` when given (e.g. the task order of a protocol), else "".
  Windows lie only BETWEEN presses (the time before the first and after the last press is
  usually set-up). Useful for the Stress-Predict dataset, whose tags mark task boundaries.

Each sample gets ``eda``/``temp``/``bvp``/``hr``/``ibi`` paths (``bio_format: e4``) and its window
as ``bio_start``/``bio_end``; a signal whose recording does not cover the window (no sample of a
uniform signal, no beat of IBI inside it) gets an EMPTY path: the mask shows the gap. A segment
no signal covers at all is a Skip. ``group`` defaults to the recording. Splits: the table's
``split`` column, else ``test_groups`` / ``val_groups``, else empty (noted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mer.pipeline.adapters._common import assign_split, label_distribution, require_dir, resolve_under
from mer.pipeline.adapters.base import AdapterResult, LayoutError, Skip
from mer.pipeline.manifest import SPLITS, Manifest, ManifestError

LAYOUT = """\
<root>/
  <recording>/EDA.csv, TEMP.csv, BVP.csv, HR.csv   line 1 start unix time, line 2 Hz, one value per line
  <recording>/IBI.csv                              '<start>, IBI', then '<s since start>,<IBI s>'
  <recording>/tags_*.csv                           unix times of button presses (windows_from_tags)
  segments.csv (dataset.segments)                  id, recording, start, end [, label, group, split]"""

SIGNALS = ("eda", "temp", "bvp", "hr", "ibi")
FILES = {"eda": "EDA.csv", "temp": "TEMP.csv", "bvp": "BVP.csv", "hr": "HR.csv", "ibi": "IBI.csv"}
SPLIT_ALIASES = {"valid": "val", "validation": "val", "dev": "val"}


@dataclass
class Config:
    name: str = "e4"
    #: folder with one sub-folder per recording
    root: str = "data/e4"
    corpus: str = "e4"
    #: CSV of segments (absolute or relative to root); empty = windows from tags
    segments: str = ""
    #: make fixed windows between consecutive tags (when no segments table is given)
    windows_from_tags: bool = False
    window_s: float = 60.0
    #: step between window starts; 0 = window_s (no overlap)
    hop_s: float = 0.0
    #: label of the windows between tag i and tag i+1 (shorter list: the rest are unlabeled)
    tag_labels: list[str] = field(default_factory=list)
    #: signals to attach
    signals: list[str] = field(default_factory=lambda: list(SIGNALS))
    #: split by group (recording) when the table has no split column
    test_groups: list[str] = field(default_factory=list)
    val_groups: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        bad = [s for s in self.signals if s not in SIGNALS]
        if bad:
            raise ValueError(f"signals: unknown signal(s) {bad}; choose from {list(SIGNALS)}")
        if not self.segments and not self.windows_from_tags:
            raise ValueError("give a segments table (segments: <csv>) or set windows_from_tags: true")
        if self.window_s <= 0 or self.hop_s < 0:
            raise ValueError("window_s must be > 0 and hop_s >= 0")


# --------------------------------------------------------------------------------------
# signal coverage (header + row count, no parsing of values)
# --------------------------------------------------------------------------------------
@dataclass
class Coverage:
    """What one signal file covers: [start, end) for uniform signals, beat times for IBI."""

    path: Path
    start: float = math.nan
    end: float = math.nan
    beats: np.ndarray | None = None

    def covers(self, lo: float, hi: float) -> bool:
        if self.beats is not None:
            i = np.searchsorted(self.beats, lo, side="left")
            return bool(i < len(self.beats) and self.beats[i] < hi)
        return self.start < hi and self.end > lo


def _first_field(line: str, path: Path, what: str) -> float:
    try:
        return float(line.split(",")[0].strip())
    except ValueError:
        raise ManifestError(f"{path}: line with the {what} should start with a number, got {line.strip()!r}") from None


def read_coverage(path: Path, signal: str) -> Coverage:
    with open(path, "rb") as fh:
        raw = fh.read()
    lines = raw.decode("ascii", errors="replace").splitlines()
    if not lines:
        raise ManifestError(f"{path}: empty file")
    start = _first_field(lines[0], path, "start unix time (line 1)")
    if signal == "ibi":
        rows = [ln for ln in lines[1:] if ln.strip()]
        if not rows:
            return Coverage(path, start, start, np.empty(0))
        offsets = pd.to_numeric(pd.Series([ln.split(",")[0] for ln in rows]), errors="coerce").to_numpy(float)
        if np.isnan(offsets).any():
            bad = rows[int(np.flatnonzero(np.isnan(offsets))[0])]
            raise ManifestError(f"{path}: IBI row {bad!r} should be '<seconds since start>,<IBI s>'")
        beats = np.sort(start + offsets)
        return Coverage(path, float(beats[0]), float(beats[-1]), beats)
    if len(lines) < 2:
        raise ManifestError(f"{path}: expected the sample rate on line 2")
    rate = _first_field(lines[1], path, "sample rate (line 2)")
    if not rate > 0:
        raise ManifestError(f"{path}: sample rate on line 2 must be > 0, got {rate}")
    n = sum(1 for ln in lines[2:] if ln.strip())
    return Coverage(path, start, start + n / rate)


def read_tags(folder: Path) -> tuple[list[float], list[Path]]:
    """Sorted unix times from every ``tags*.csv`` of a recording (CRLF, blank lines tolerated)."""
    files = sorted(folder.glob("tags*.csv"))
    times = []
    for path in files:
        for i, line in enumerate(path.read_text(encoding="ascii", errors="replace").splitlines(), start=1):
            if line.strip():
                times.append(_first_field(line, path, f"tag time (line {i})"))
    return sorted(times), files


def tag_windows(tags: list[float], window_s: float, hop_s: float) -> list[tuple[int, float, float]]:
    """(interval index, start, end) of the full windows between consecutive tags."""
    hop = hop_s or window_s
    out = []
    for i, (a, b) in enumerate(zip(tags[:-1], tags[1:])):
        k = 0
        while a + k * hop + window_s <= b + 1e-9:
            out.append((i, a + k * hop, a + k * hop + window_s))
            k += 1
    return out


# --------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------
def _recordings(root: Path) -> dict[str, Path]:
    recs = {p.name: p for p in sorted(root.iterdir())
            if p.is_dir() and any((p / f).is_file() for f in FILES.values())}
    if not recs:
        raise LayoutError("e4", root / "<recording>" / "EDA.csv", LAYOUT)
    return recs


def _segments_from_table(path: Path, recordings: dict[str, Path], skipped: list[Skip]) -> list[dict]:
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the segments table: {exc}") from None
    table.columns = [c.strip() for c in table.columns]
    missing = [c for c in ("id", "recording", "start", "end") if c not in table.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; found {list(table.columns)}")
    out, seen = [], set()
    for rec in table.to_dict("records"):
        sid = rec["id"].strip()
        try:
            start, end = float(rec["start"]), float(rec["end"])
        except ValueError:
            skipped.append(Skip(sid, str(path), "non-numeric start/end"))
            continue
        if sid in seen:
            skipped.append(Skip(sid, str(path), "duplicate id"))
            continue
        seen.add(sid)
        if not end > start:
            skipped.append(Skip(sid, str(path), "empty window"))
            continue
        if rec["recording"].strip() not in recordings:
            skipped.append(Skip(sid, str(path), "missing recording folder"))
            continue
        row = {k: v for k, v in rec.items() if k not in ("start", "end")}
        row.update(id=sid, recording=rec["recording"].strip(), bio_start=start, bio_end=end)
        row.setdefault("label", "")
        row["group"] = rec.get("group", "").strip() or row["recording"]
        if "split" in rec:
            split = rec["split"].strip().lower()
            row["split"] = SPLIT_ALIASES.get(split, split)
            if row["split"] not in SPLITS:
                raise ManifestError(f"{path}: segment {sid!r} has split {rec['split']!r}; use train/val/test/empty")
        out.append(row)
    return out


def build(config: Config, progress: bool = True) -> AdapterResult:
    root = Path(config.root).expanduser().resolve()
    require_dir("e4", root, LAYOUT)
    recordings = _recordings(root)
    skipped: list[Skip] = []
    notes: list[str] = []
    if config.segments:
        table_path = resolve_under(root, config.segments)
        if not table_path.is_file():
            raise LayoutError("e4", table_path, LAYOUT)
        rows = _segments_from_table(table_path, recordings, skipped)
        source = str(table_path)
    else:
        rows = []
        for name, folder in recordings.items():
            tags, files = read_tags(folder)
            windows = tag_windows(tags, config.window_s, config.hop_s)
            if not windows:
                notes.append(f"{name}: {len(tags)} tag(s) in {[f.name for f in files] or 'no tags file'}: no window")
            per_interval: dict[int, int] = {}
            for i, start, end in windows:
                j = per_interval[i] = per_interval.get(i, -1) + 1
                rows.append({"id": f"{name}_t{i:02d}_w{j:03d}", "recording": name, "group": name,
                             "label": config.tag_labels[i] if i < len(config.tag_labels) else "",
                             "tag_interval": str(i), "bio_start": start, "bio_end": end})
        source = str(root)
        notes.append(f"windows from tags: {len(rows)} windows of {config.window_s:g} s "
                     f"(hop {config.hop_s or config.window_s:g} s) between consecutive tags")

    coverage: dict[tuple[str, str], Coverage | None] = {}
    kept = []
    for row in rows:
        any_signal = False
        for signal in SIGNALS:
            row[signal] = ""
        for signal in config.signals:
            key = (row["recording"], signal)
            if key not in coverage:
                path = recordings[row["recording"]] / FILES[signal]
                coverage[key] = read_coverage(path, signal) if path.is_file() else None
            cov = coverage[key]
            if cov is not None and cov.covers(row["bio_start"], row["bio_end"]):
                row[signal] = str(cov.path)
                any_signal = True
        if not any_signal:
            skipped.append(Skip(row["id"], source, "no signal covers the window"))
            continue
        row["bio_format"] = "e4"
        row["bio_tag"] = ""
        kept.append(row)
    if not kept:
        raise ManifestError(f"{source}: no segment left ({len(skipped)} skipped)")
    df = pd.DataFrame(kept)
    if "split" not in df.columns or (df["split"] == "").all():
        if config.test_groups or config.val_groups:
            df["split"] = assign_split(df["group"], set(config.test_groups), set(config.val_groups))
        else:
            df["split"] = ""
            notes.append("no split: the segments have no split column and test_groups/val_groups are empty")
    notes.append(label_distribution(df))
    n = len(df)
    notes.append("signals per segment: " + ", ".join(f"{s.upper()} {int((df[s] != '').sum())}/{n}"
                                                     for s in config.signals))
    return AdapterResult(manifest=Manifest(df, source=source), skipped=skipped, notes=notes)
