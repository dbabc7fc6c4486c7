"""KEMDy20 (ETRI, Korean): text + speech + Empatica E4 biosignals, 7 emotions.

Reads the release exactly as distributed (see ``shared/docs/datasets.md``)::

    KEMDy20_v1_1/
      annotation/SessNN_eval.csv                  two header rows, 37 columns (read by position)
      wav/SessionNN/<SegmentID>.wav               16 kHz mono PCM16
      wav/SessionNN/<SegmentID>.txt               one line, cp949
      EDA/SessionNN/SessNN_scriptMM_UserXXXG.csv  E4, KEMDy20 variant (datetime + segment tag)
      TEMP/SessionNN/...   IBI/SessionNN/...

Decisions (each one is an option where the literature differs):

* **Label** = "Total Evaluation Emotion" (column 4, the annotators' majority vote), lower-cased;
  the corpus's misspelling ``disqust`` reads as ``disgust``. A tie ``a;b`` is dropped by default
  (the original protocol; recorded as a Skip "tie label dropped"); ``ties: first`` keeps the
  first-listed class (the file's order, not a vote), ``ties: multilabel`` keeps ``a;b`` (the
  manifest's multi-label encoding). An empty cell is an unlabeled sample (kept, label ``""``).
  Valence and arousal (1-5 averages) become ``target_valence`` / ``target_arousal``.
* **Transcripts** are decoded as UTF-8 when they are valid UTF-8, else cp949 (the release's
  encoding; a cp949 Hangul file is never valid UTF-8, so the order is safe). Transcription marks
  (``n/`` noise, ``l/`` laughter, ``b/`` breath, ``c/``, ``u/``, ``o/``, bare ``/``, ``*``, ``+``) are
  stripped by default; ETRI's dual transcription ``(spelling)/(pronunciation)`` keeps the
  spelling. ``keep_marks: true`` keeps the line verbatim.
* **Biosignals**: each segment points at its speaker's per-script file; ``bio_format: kemdy20``
  and ``bio_tag`` = Segment ID, so the E4 reader aligns rows by the tag column. The tag columns
  are scanned here (pandas, one column) so that a segment with no tagged rows in a file gets an
  EMPTY path for that signal: the mask shows the gap and the segment's other modalities stay.
  ``bio_start`` / ``bio_end``: the annotation's "WAV start/end" are seconds into the session
  recording, whose absolute (unix) start is not in the release, so they cannot be converted.
  The window is instead taken from the tagged rows themselves (unix start of the file +
  row / rate, or + seconds for IBI): first tagged row to last tagged row (+ one sample period,
  1/64 s for IBI)
  over the segment's signals; NaN when no signal is tagged. It documents where the segment
  lies and is the timestamp fallback for a tag-less re-export of the same recording. A file
  without any tag at all keeps its path only when the segment's window is known from its
  other signals; otherwise the path is empty and the file is named in the notes.
* **Splits**: ``protocol: lmr-cl`` (default) tests on sessions {4, 10, 15, 16, 20, 21, 23, 26}
  (the original split); validation = ``n_val_sessions`` (4) sessions drawn with
  ``numpy.random.default_rng(seed)`` from the sorted training sessions present (with the full
  corpus and seed 0: sessions 11, 22, 28, 33), or the explicit ``val_sessions``. ``kfold``: the present
  sessions, permuted by the same seeded RNG, are cut into ``k`` near-equal folds; fold i tests on
  chunk i and draws its validation sessions from the rest by the same rule. ``fold_1..fold_k``
  are always filled; ``split`` holds the chosen protocol (``fold`` picks the k-fold column).
  ``group`` = speaker (``User002M``); speakers are nested in sessions, so session splits are
  speaker-independent.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from tqdm import tqdm

from mer.pipeline.adapters._common import (
    TEST,
    apply_require,
    assign_split,
    draw,
    label_distribution,
    require_dir,
)
from mer.pipeline.adapters.base import AdapterResult, LayoutError, Protocol, Skip
from mer.pipeline.manifest import Manifest, ManifestError

LAYOUT = """\
<root>/                                       e.g. KEMDy20_v1_1/
  annotation/SessNN_eval.csv                  NN = 01..40; two header rows, 37 columns
  wav/SessionNN/<SegmentID>.wav               16 kHz mono PCM16
  wav/SessionNN/<SegmentID>.txt               transcript, one line, cp949
  EDA/SessionNN/SessNN_scriptMM_UserXXXG.csv  E4 (KEMDy20 variant with segment tags)
  TEMP/SessionNN/SessNN_scriptMM_UserXXXG.csv
  IBI/SessionNN/SessNN_scriptMM_UserXXXG.csv
(a signal folder may be absent when it is not listed in dataset.biosignals)"""

CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
#: spellings found in the release -> class names
ALIASES = {"disqust": "disgust"}
TEST_SESSIONS = (4, 10, 15, 16, 20, 21, 23, 26)
SIGNALS = ("eda", "temp", "ibi")
N_COLUMNS = 37
#: the E4 quantises beat times to 1/64 s: a window ending one step after the last beat keeps it
IBI_STEP = 1.0 / 64.0
SEGMENT_RE = re.compile(r"^Sess(\d+)_script(\d+)_User(\d+)([MF])_(\d+)$")
EVAL_RE = re.compile(r"^Sess(\d+)_eval\.csv$", re.IGNORECASE)


@dataclass
class Config:
    name: str = "kemdy20"
    #: the release folder (holds annotation/, wav/, EDA/, TEMP/, IBI/)
    root: str = "data/KEMDy20_v1_1"
    #: cache namespace
    corpus: str = "kemdy20"
    #: lmr-cl: the original test sessions + seeded validation; kfold: by session
    protocol: Literal["lmr-cl", "kfold"] = "lmr-cl"
    test_sessions: list[int] = field(default_factory=lambda: list(TEST_SESSIONS))
    #: explicit validation sessions; empty = draw n_val_sessions with the seed
    val_sessions: list[int] = field(default_factory=list)
    n_val_sessions: int = 4
    seed: int = 0
    #: number of session folds (fold_1..fold_k columns)
    k: int = 5
    #: which fold fills ``split`` when protocol is kfold
    fold: int = 1
    #: drop: skip tied majority votes; first: keep the first class; multilabel: keep "a;b"
    ties: Literal["drop", "first", "multilabel"] = "drop"
    #: keep segments with an empty label (unlabeled, label "")
    keep_unlabeled: bool = True
    #: keep transcription marks (n/, l/, b/, ...) in the text
    keep_marks: bool = False
    #: biosignals to attach; each listed folder must exist
    biosignals: list[str] = field(default_factory=lambda: list(SIGNALS))
    #: columns a segment must have, else it is skipped ("missing audio")
    require: list[str] = field(default_factory=lambda: ["audio"])
    #: restrict to these sessions (empty = every annotation file)
    sessions: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        bad = [s for s in self.biosignals if s not in SIGNALS]
        if bad:
            raise ValueError(f"biosignals: unknown signal(s) {bad}; choose from {list(SIGNALS)}")
        allowed = ("audio", "text") + SIGNALS
        bad = [c for c in self.require if c not in allowed]
        if bad:
            raise ValueError(f"require: unknown column(s) {bad}; choose from {list(allowed)}")
        if self.k < 2:
            raise ValueError("k must be >= 2")
        if not 1 <= self.fold <= self.k:
            raise ValueError(f"fold must be in 1..k (k={self.k}), got {self.fold}")
        if self.n_val_sessions < 0:
            raise ValueError("n_val_sessions must be >= 0")


# --------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------
_DUAL = re.compile(r"\(([^()]*)\)/\(([^()]*)\)")
_MARK = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]/")
_SYMBOLS = re.compile(r"[/*+]")
_SPACES = re.compile(r"\s+")


def clean_transcript(text: str, keep_marks: bool = False) -> str:
    """One line of transcript, marks stripped unless ``keep_marks``.

    >>> clean_transcript("n/ 아 친구들도? l/")
    '아 친구들도?'
    """
    text = _SPACES.sub(" ", text).strip()
    if keep_marks:
        return text
    text = _DUAL.sub(r"\1", text)
    text = _MARK.sub(" ", text)
    text = _SYMBOLS.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def decode_transcript(raw: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 if the bytes are valid UTF-8, else cp949; raises UnicodeDecodeError."""
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("cp949"), "cp949"


# --------------------------------------------------------------------------------------
# annotation
# --------------------------------------------------------------------------------------
@dataclass
class EvalRow:
    line: int
    numb: str
    wav_start: str
    wav_end: str
    segment: str
    emotion: str
    valence: float
    arousal: float


def _float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        return math.nan


def read_eval(path: Path) -> list[EvalRow]:
    """The data rows of one ``SessNN_eval.csv`` (two header rows skipped; columns by position)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp949")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if len(rows) < 2:
        raise ManifestError(f"{path}: expected two header rows, found {len(rows)} line(s)")
    width = max(len(rows[0]), len(rows[1]))
    if width < 7:
        raise ManifestError(
            f"{path}: header has {width} columns; expected {N_COLUMNS} "
            "(Numb, WAV start, WAV end, Segment ID, Total Evaluation Emotion/Valence/Arousal, 10 annotators x 3)"
        )
    out = []
    for i, row in enumerate(rows[2:], start=3):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 7:
            raise ManifestError(f"{path}: line {i} has {len(row)} columns; expected {N_COLUMNS}: {row!r}")
        out.append(EvalRow(line=i, numb=row[0].strip(), wav_start=row[1].strip(), wav_end=row[2].strip(),
                           segment=row[3].strip(), emotion=row[4].strip(),
                           valence=_float(row[5]), arousal=_float(row[6])))
    return out


def parse_label(raw: str, ties: str) -> tuple[str | None, str]:
    """(label, skip reason). label None = skip with that reason; "" = unlabeled."""
    parts = []
    for part in raw.strip().lower().split(";"):
        part = ALIASES.get(part.strip(), part.strip())
        if part and part not in parts:
            parts.append(part)
    if not parts:
        return "", ""
    outside = [p for p in parts if p not in CLASSES]
    if outside:
        return None, "label outside class set"
    if len(parts) == 1:
        return parts[0], ""
    if ties == "drop":
        return None, "tie label dropped"
    if ties == "first":
        return parts[0], ""
    return ";".join(parts), ""


# --------------------------------------------------------------------------------------
# biosignal tag scan
# --------------------------------------------------------------------------------------
@dataclass
class TagScan:
    """Per file: tag -> (unix time of first tagged row, unix time just after the last)."""

    windows: dict[str, tuple[float, float]]
    any_tag: bool
    error: str = ""


def _header_start(path: Path) -> tuple[float, float]:
    """(start unix time, rate) from the first two lines; rate is NaN for IBI files."""
    with open(path, encoding="ascii", errors="replace") as fh:
        first = fh.readline()
        second = fh.readline()
    start = float(first.split(",")[0])
    try:
        rate = float(second.split(",")[0])
    except ValueError:
        rate = math.nan
    return start, rate


def _read(path: Path, skip: int, names: list[str]) -> pd.DataFrame:
    """All fields as text with explicit names: a row without its tag field reads as NaN.

    ``usecols`` cannot be used: pandas rejects it when no row of the file has the tag field
    (a file without any tag), and the untyped read of 3-4 short columns is cheap.
    """
    try:
        return pd.read_csv(path, header=None, skiprows=skip, names=names, dtype=str, engine="c",
                           keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame({n: pd.Series(dtype=object) for n in names})


def scan_tags(path: Path, signal: str) -> TagScan:
    """Read only the tag column (and the time column for IBI) of one KEMDy20 E4 file."""
    try:
        start, rate = _header_start(path)
        if signal == "ibi":
            table = _read(path, 1, ["t", "ibi", "datetime", "tag"])
            times = start + pd.to_numeric(table["t"], errors="raise").to_numpy(dtype=float)
            step = IBI_STEP
        else:
            if not rate > 0:
                raise ValueError(f"line 2 should be '<rate>,hz', the rate is {rate}")
            table = _read(path, 2, ["value", "datetime", "tag"])
            times = start + np.arange(len(table), dtype=float) / rate
            step = 1.0 / rate
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        return TagScan({}, False, f"{type(exc).__name__}: {exc}")
    tags = table["tag"].fillna("").str.strip()
    mask = (tags != "").to_numpy()
    if not mask.any():
        return TagScan({}, False)
    frame = pd.DataFrame({"tag": tags[mask].to_numpy(), "t": times[mask]})
    agg = frame.groupby("tag", sort=False)["t"].agg(["min", "max"])
    windows = {str(tag): (float(r["min"]), float(r["max"]) + step) for tag, r in agg.iterrows()}
    return TagScan(windows, True)


# --------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------
#: the dataset field that selects a fold (``mer train --folds``), with ``protocol: kfold``
FOLD_FIELD = "fold"


def protocol(config: Config) -> Protocol:
    """Speakers are nested in sessions, so session splits are speaker-independent."""
    name = f"kfold fold_{config.fold} of {config.k}" if config.protocol == "kfold" else config.protocol
    return Protocol(name, "speaker", True)


def folds(config: Config, manifest: Manifest) -> list[tuple[str, int]]:
    """The ``k`` session folds of ``protocol: kfold``; ``lmr-cl`` is one split."""
    if config.protocol != "kfold":
        raise ValueError(f"protocol {config.protocol!r} is one split; the session folds are protocol kfold "
                         "(set dataset.protocol=kfold, and dataset.k for their number)")
    return [(f"fold{i}", i) for i in range(1, config.k + 1)]


def session_folds(sessions: list[int], k: int, seed: int) -> list[list[int]]:
    """``k`` near-equal session folds: a seeded permutation of the sorted sessions, cut in order."""
    order = np.random.default_rng(seed).permutation(sorted(sessions))
    return [sorted(int(s) for s in chunk) for chunk in np.array_split(order, k)]


def lmr_cl_sessions(present: list[int], config: Config) -> tuple[set[int], set[int]]:
    test = set(config.test_sessions) & set(present)
    pool = [s for s in present if s not in test]
    if config.val_sessions:
        val = set(config.val_sessions) & set(pool)
    else:
        val = set(draw(pool, min(config.n_val_sessions, max(len(pool) - 1, 0)), config.seed))
    return test, val


# --------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------
def _sessions(root: Path, config: Config) -> dict[int, Path]:
    ann = require_dir("kemdy20", root / "annotation", LAYOUT)
    found = {}
    for p in sorted(ann.iterdir()):
        m = EVAL_RE.match(p.name)
        if m and p.is_file():
            found[int(m.group(1))] = p
    if not found:
        raise LayoutError("kemdy20", ann / "SessNN_eval.csv", LAYOUT)
    if config.sessions:
        missing = [s for s in config.sessions if s not in found]
        if missing:
            raise LayoutError("kemdy20", ann / f"Sess{missing[0]:02d}_eval.csv", LAYOUT)
        found = {s: found[s] for s in sorted(config.sessions)}
    return found


def build(config: Config, progress: bool = True) -> AdapterResult:
    root = Path(config.root).expanduser().resolve()
    require_dir("kemdy20", root, LAYOUT)
    sessions = _sessions(root, config)
    require_dir("kemdy20", root / "wav", LAYOUT)
    for signal in config.biosignals:
        require_dir("kemdy20", root / signal.upper(), LAYOUT)

    skipped: list[Skip] = []
    notes: list[str] = []
    rows: list[dict] = []
    seen: set[str] = set()
    scans: dict[Path, TagScan] = {}
    tagless_files: set[str] = set()
    unreadable: dict[str, str] = {}

    for session, eval_path in tqdm(sessions.items(), desc="kemdy20 sessions", unit="session", leave=False, disable=not progress):
        source = str(eval_path)
        wav_dir = root / "wav" / f"Session{session:02d}"
        for rec in read_eval(eval_path):
            seg = rec.segment
            m = SEGMENT_RE.match(seg)
            if not m:
                skipped.append(Skip(seg or f"{eval_path.stem}:line{rec.line}", source, "malformed segment id"))
                continue
            if int(m.group(1)) != session:
                skipped.append(Skip(seg, source, "segment id from another session"))
                continue
            if seg in seen:
                skipped.append(Skip(seg, source, "duplicate segment id"))
                continue
            seen.add(seg)
            label, reason = parse_label(rec.emotion, config.ties)
            if label is None:
                skipped.append(Skip(seg, source, reason))
                continue
            if label == "" and not config.keep_unlabeled:
                skipped.append(Skip(seg, source, "unlabeled"))
                continue

            wav = wav_dir / f"{seg}.wav"
            txt = wav_dir / f"{seg}.txt"
            text, enc = "", ""
            if txt.is_file():
                try:
                    decoded, enc = decode_transcript(txt.read_bytes())
                except UnicodeDecodeError:
                    skipped.append(Skip(seg, str(txt), "undecodable transcript"))
                    continue
                text = clean_transcript(decoded, config.keep_marks)

            row = {
                "id": seg,
                "label": label,
                "group": f"User{m.group(3)}{m.group(4)}",
                "split": "",
                "text": text,
                "audio": str(wav) if wav.is_file() else "",
                "session": f"Sess{session:02d}",
                "script": f"script{m.group(2)}",
                "wav_start": rec.wav_start,
                "wav_end": rec.wav_end,
                "target_valence": rec.valence,
                "target_arousal": rec.arousal,
                "_source": source,
                "_encoding": enc,
            }
            _attach_biosignals(row, root, session, seg.rsplit("_", 1)[0], config.biosignals, scans,
                               tagless_files, unreadable)
            rows.append(row)

    rows = apply_require(rows, config.require, "_source", skipped)
    if not rows:
        raise ManifestError(f"{root}: no segments left after reading {len(sessions)} annotation file(s) "
                            f"({len(skipped)} skipped)")
    df = pd.DataFrame(rows).drop(columns=["_source"])
    encodings = df.pop("_encoding").value_counts()
    notes.extend(_splits(df, sorted(sessions), config))
    notes.append(label_distribution(df))
    notes.extend(_bio_notes(df, config.biosignals, tagless_files, unreadable))
    notes.append(f"transcripts: {encodings.get('cp949', 0)} cp949, {encodings.get('utf-8', 0)} UTF-8/ASCII, "
                 f"{int((df['text'] == '').sum())} segments without a transcript; marks "
                 + ("kept" if config.keep_marks else "stripped"))
    return AdapterResult(manifest=Manifest(df, source=str(root)), skipped=skipped, notes=notes)


def _attach_biosignals(row: dict, root: Path, session: int, stem: str, signals: list[str],
                       scans: dict[Path, TagScan], tagless: set[str], unreadable: dict[str, str]) -> None:
    seg = row["id"]
    windows = []
    untagged = []
    for signal in SIGNALS:
        row[signal] = ""
    for signal in signals:
        path = root / signal.upper() / f"Session{session:02d}" / f"{stem}.csv"
        if not path.is_file():
            continue
        if path not in scans:
            scans[path] = scan_tags(path, signal)
        scan = scans[path]
        if scan.error:
            unreadable[str(path)] = scan.error
        elif seg in scan.windows:
            row[signal] = str(path)
            windows.append(scan.windows[seg])
        elif not scan.any_tag:
            tagless.add(str(path))
            untagged.append((signal, path))
    if windows:
        row["bio_start"] = min(w[0] for w in windows)
        row["bio_end"] = max(w[1] for w in windows)
        for signal, path in untagged:  # tag-less file: the window (from the other signals) cuts it
            row[signal] = str(path)
    else:
        row["bio_start"] = math.nan
        row["bio_end"] = math.nan
    present = any(row[s] for s in SIGNALS)
    row["bio_format"] = "kemdy20" if present else ""
    row["bio_tag"] = seg if present else ""


def _splits(df: pd.DataFrame, present: list[int], config: Config) -> list[str]:
    notes = []
    session_of = df["session"].str[4:].astype(int)
    if len(present) >= config.k:
        folds = session_folds(present, config.k, config.seed)
        for i, test in enumerate(folds, start=1):
            pool = [s for s in present if s not in test]
            val = draw(pool, min(config.n_val_sessions, max(len(pool) - 1, 0)), config.seed)
            df[f"fold_{i}"] = assign_split(session_of, set(test), set(val))
            notes.append(f"fold_{i}: test sessions {test}, val sessions {val}")
    elif config.protocol == "kfold":
        raise ManifestError(f"{config.root}: kfold with k={config.k} needs at least {config.k} sessions; "
                            f"found {len(present)}")
    else:
        notes.append(f"fold columns not written: k={config.k} exceeds the {len(present)} session(s) present")
    if config.protocol == "kfold":
        df["split"] = df[f"fold_{config.fold}"]
        notes.insert(0, f"protocol kfold (k={config.k}): split = fold_{config.fold}")
    else:
        test, val = lmr_cl_sessions(present, config)
        df["split"] = assign_split(session_of, test, val)
        notes.insert(0, f"protocol lmr-cl: test sessions {sorted(test)}, val sessions {sorted(val)} "
                        f"({'given' if config.val_sessions else f'drawn with seed {config.seed}'}), "
                        f"train = the other {len(set(present) - test - val)}")
        if not (df["split"] == TEST).any():
            notes.append("WARNING: no test session of the lmr-cl protocol is present; the test split is empty")
    return notes


def _bio_notes(df: pd.DataFrame, signals: list[str], tagless: set[str], unreadable: dict[str, str]) -> list[str]:
    if not signals:
        return ["biosignals: none attached (dataset.biosignals is empty)"]
    n = len(df)
    has = {s: int((df[s] != "").sum()) for s in signals}
    all_three = int(np.logical_and.reduce([(df[s] != "").to_numpy() for s in signals]).sum())
    none = int(np.logical_and.reduce([(df[s] == "").to_numpy() for s in signals]).sum())
    notes = ["biosignals per segment: " + ", ".join(f"{s.upper()} {has[s]}/{n}" for s in signals)
             + f"; all of them {all_three}, none {none}"]
    if tagless:
        notes.append(f"{len(tagless)} biosignal file(s) without any segment tag (kept only where another "
                     f"signal gives the window): " + ", ".join(sorted(tagless)[:5]))
    for path, err in sorted(unreadable.items())[:10]:
        notes.append(f"unreadable biosignal file {path}: {err} (its segments have no such signal)")
    return notes
