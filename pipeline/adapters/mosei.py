"""CMU-MOSEI: one sample per labelled interval of ``CMU_MOSEI_Labels.csd``.

Labels (``pipeline/csd.py`` reads the HDF5): D = 7 per interval, in the SDK's order
[sentiment (-3..3), happy, sad, anger, surprise, disgust, fear] (intensities 0..3, fractional
values such as 0.333 occur). They become ``target_sentiment``, ``target_happy`` ... ``target_fear``
(the stored values, never rounded), and ``label`` = the ``;``-joined emotions with intensity > 0
(presence is decided on the raw value, never after truncating to an integer), in the order
happy;sad;anger;surprise;disgust;fear: the manifest's multi-label encoding.

"No emotion" is a real, labelled outcome in MOSEI (every intensity 0): its ``label`` is ``""``
and its multi-hot is all zeros. Because ``""`` otherwise means "unlabeled", every row also has
``labelled = true`` and the six ``target_<emotion>`` columns: a multi-label trainer derives the
multi-hot from ``target_<emotion> > 0`` for rows with ``labelled == true``.

* **id** = ``<video>[<start>-<end>]`` (seconds, 3 decimals; :func:`mer.pipeline.csd.interval_id`),
  stable and unique. The real label files contain quirks that would break uniqueness or
  durations, each a recorded Skip: an interval of zero length ("empty interval"), an interval
  listed twice ("duplicate interval": the first row is kept, later ones are skipped, and the
  reason says whether their labels conflict), non-finite values.
* ``video_id`` column = the video id; ``group`` = the video (MOSEI has no speaker ids; one video is
  one speaker's monologue, so video-disjoint splits are the speaker-independent proxy);
  ``start`` / ``end`` = the interval (seconds into the video) on every row, so that feature
  ``.csd`` files can be aligned to the samples (``mer import-csd``).
* **Raw data** (optional): ``audio_root`` holds full-video WAVs ``<video>.wav``: ``audio`` points
  at it and ``start`` / ``end`` cut the interval. ``transcripts`` holds segmented transcripts
  ``<video>.txt`` with lines ``<video>___<index>___<start>___<end>___<text>``; each label
  interval takes the text of the transcript segment with the largest temporal IoU, if that IoU
  is at least ``text_min_overlap`` (0.5); the label intervals are the transcript segments in
  the release, so matches are normally exact. Unmatched intervals get ``text = ""`` (counted).
  ``video_root`` holds the full raw videos ``<video>.mp4`` (the release's
  ``Raw/Videos/Full/Combined``; any of .mp4/.mkv/.avi/.mov/.webm): ``video`` points at it and
  ``start`` / ``end`` give the window the video encoders decode (PyAV seeks to it).
* **Splits**: ``folds`` = a JSON or YAML file with ``train`` / ``valid`` (or ``val``/``dev``) /
  ``test`` lists of video ids: the SDK's standard folds (``cmu_mosei_std_folds``). Without one,
  a deterministic split by video: sha256(video id) in [0, 1) -> <0.7 train, <0.8 val, else test,
  with a LOUD warning (notes and stderr): such numbers are not comparable with published ones.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from mer.pipeline.adapters._common import (
    TEST,
    TRAIN,
    VAL,
    apply_require,
    require_dir,
    require_file,
    resolve_under,
    unit_hash,
)
from mer.pipeline.adapters.base import AdapterResult, LayoutError, Protocol, Skip
from mer.pipeline.csd import CsdError, interval_id, read_csd
from mer.pipeline.manifest import Manifest, ManifestError

log = logging.getLogger(__name__)

LAYOUT = """\
<root>/
  CMU_MOSEI_Labels.csd             labels (dataset.labels): "All Labels"/data/<video>/{features,intervals}
  <audio_root>/<video>.wav         optional, full-video audio (dataset.audio_root)
  <video_root>/<video>.mp4         optional, full raw video (dataset.video_root)
  <transcripts>/<video>.txt        optional, lines <video>___<index>___<start>___<end>___<text>
<folds file>                       optional JSON/YAML: {train: [...], valid: [...], test: [...]}"""

DIMENSIONS = ("sentiment", "happy", "sad", "anger", "surprise", "disgust", "fear")
EMOTIONS = DIMENSIONS[1:]
FOLD_KEYS = {"train": TRAIN, "valid": VAL, "val": VAL, "dev": VAL, "validation": VAL, "test": TEST}
HASH_SPLIT = (0.7, 0.8)


@dataclass
class Config:
    name: str = "mosei"
    #: folder holding the labels file (and, optionally, the raw data folders)
    root: str = "data/CMU_MOSEI"
    corpus: str = "mosei"
    #: labels computational sequence, relative to root
    labels: str = "CMU_MOSEI_Labels.csd"
    #: folder with full-video <video>.wav, relative to root; empty = no audio
    audio_root: str = ""
    #: folder with full raw videos <video>.mp4, relative to root; empty = no video
    video_root: str = ""
    #: folder with segmented transcripts <video>.txt, relative to root; empty = no text
    transcripts: str = ""
    #: minimum temporal IoU between a label interval and a transcript segment
    text_min_overlap: float = 0.5
    #: JSON/YAML with train/valid/test video ids (relative to the working directory); empty = hash split
    folds: str = ""
    #: columns a sample must have, else it is skipped (e.g. [audio, text])
    require: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 < self.text_min_overlap <= 1.0:
            raise ValueError("text_min_overlap must be in (0, 1]")
        bad = [c for c in self.require if c not in ("audio", "text", "video")]
        if bad:
            raise ValueError(f"require: unknown column(s) {bad}; choose from ['audio', 'text', 'video']")


# --------------------------------------------------------------------------------------
# transcripts and folds
# --------------------------------------------------------------------------------------
@dataclass
class TranscriptSegment:
    index: int
    start: float
    end: float
    text: str


_LINE = re.compile(r"^(?P<vid>.*?)___(?P<idx>\d+)___(?P<start>[-+0-9.eE]+)___(?P<end>[-+0-9.eE]+)___(?P<text>.*)$")


def read_transcript(path: Path) -> tuple[list[TranscriptSegment], int]:
    """(segments, malformed line count) of one ``<video>.txt``; UTF-8, else cp1252."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    segments, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _LINE.match(line.strip("\r\n"))
        if not m:
            bad += 1
            continue
        segments.append(TranscriptSegment(int(m["idx"]), float(m["start"]), float(m["end"]), m["text"].strip()))
    return segments, bad


def best_text(segments: list[TranscriptSegment], start: float, end: float, min_iou: float) -> str | None:
    """Text of the segment with the largest temporal IoU with [start, end), if >= min_iou."""
    best, best_iou = None, 0.0
    for seg in segments:
        inter = min(end, seg.end) - max(start, seg.start)
        union = max(end, seg.end) - min(start, seg.start)
        iou = inter / union if union > 0 and inter > 0 else 0.0
        if iou > best_iou:
            best, best_iou = seg, iou
    return best.text if best is not None and best_iou >= min_iou else None


def protocol(config: Config) -> Protocol:
    """One split, by video (a video is one speaker's monologue: the speaker-independent proxy)."""
    return Protocol(f"standard folds ({config.folds})" if config.folds else "hash split by video id", "video", True)


def read_folds(path: Path) -> dict[str, str]:
    """video id -> train/val/test from a JSON/YAML fold file; a video in two lists is an error."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: cannot parse the fold file: {exc}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a mapping with train/valid/test lists")
    unknown = [k for k in data if str(k).lower() not in FOLD_KEYS]
    if unknown:
        raise ManifestError(f"{path}: unknown fold key(s) {unknown}; expected train, valid (or val/dev), test")
    out: dict[str, str] = {}
    for key, videos in data.items():
        if not isinstance(videos, list):
            raise ManifestError(f"{path}: '{key}' must be a list of video ids")
        split = FOLD_KEYS[str(key).lower()]
        for vid in videos:
            vid = str(vid)
            if vid in out and out[vid] != split:
                raise ManifestError(f"{path}: video {vid!r} is in both {out[vid]} and {split}")
            out[vid] = split
    return out


#: raw video containers looked for under ``video_root``
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm")


def _index_videos(folder: Path) -> dict[str, str]:
    """video id -> raw video file directly in ``folder`` (the first extension in VIDEO_EXTENSIONS wins)."""
    found: dict[str, str] = {}
    for path in sorted(folder.iterdir(), key=lambda p: (p.stem, VIDEO_EXTENSIONS.index(p.suffix.lower())
                                                            if p.suffix.lower() in VIDEO_EXTENSIONS else 99)):
        if path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS:
            found.setdefault(path.stem, str(path))
    return found


def hash_split(video: str) -> str:
    u = unit_hash(video)
    return TRAIN if u < HASH_SPLIT[0] else VAL if u < HASH_SPLIT[1] else TEST


# --------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------
def build(config: Config, progress: bool = True) -> AdapterResult:
    root = Path(config.root).expanduser().resolve()
    require_dir("mosei", root, LAYOUT)
    labels_path = require_file("mosei", resolve_under(root, config.labels), LAYOUT)
    audio_dir = require_dir("mosei", resolve_under(root, config.audio_root), LAYOUT) if config.audio_root else None
    text_dir = require_dir("mosei", resolve_under(root, config.transcripts), LAYOUT) if config.transcripts else None
    videos = _index_videos(require_dir("mosei", resolve_under(root, config.video_root), LAYOUT)) if config.video_root else None
    folds = None
    if config.folds:
        folds_path = Path(config.folds).expanduser()
        if not folds_path.is_file():
            raise LayoutError("mosei", folds_path.resolve(), LAYOUT)
        folds = read_folds(folds_path)

    notes: list[str] = []
    skipped: list[Skip] = []
    rows: list[dict] = []
    source = str(labels_path)
    bad_lines = 0
    try:
        seq = read_csd(labels_path)
    except CsdError as exc:
        raise ManifestError(str(exc)) from None
    with seq:
        if seq.dim != len(DIMENSIONS):
            raise ManifestError(f"{labels_path}: expected {len(DIMENSIONS)} label dimensions "
                                f"{list(DIMENSIONS)}, found {seq.dim}")
        names = seq.dimension_names
        if names and [n.lower() for n in names] != list(DIMENSIONS):
            notes.append(f"labels file names its dimensions {names}; read in the SDK order {list(DIMENSIONS)}")
        for video in tqdm(seq.videos(), desc="mosei videos", unit="video", leave=False, disable=not progress):
            feats, ivs = seq.read(video)
            wav = audio_dir / f"{video}.wav" if audio_dir is not None else None
            transcript: list[TranscriptSegment] | None = None
            if text_dir is not None and (text_dir / f"{video}.txt").is_file():
                transcript, bad = read_transcript(text_dir / f"{video}.txt")
                bad_lines += bad
            kept: dict[str, np.ndarray] = {}
            for values, (start, end) in zip(feats.astype(np.float64), ivs.astype(np.float64)):
                sid = interval_id(video, start, end)
                if not (np.isfinite(values).all() and math.isfinite(start) and math.isfinite(end)):
                    skipped.append(Skip(sid, source, "non-finite label or interval"))
                    continue
                if end <= start:
                    skipped.append(Skip(sid, source, "empty interval"))
                    continue
                if start < 0:
                    skipped.append(Skip(sid, source, "negative interval start"))
                    continue
                if sid in kept:
                    same = np.array_equal(kept[sid], values)
                    skipped.append(Skip(sid, source, "duplicate interval" + ("" if same else " (conflicting labels)")))
                    continue
                kept[sid] = values
                row = {
                    "id": sid,
                    "label": ";".join(e for e, v in zip(EMOTIONS, values[1:]) if v > 0),
                    "labelled": "true",
                    "group": video,
                    "split": "",
                    "video_id": video,
                    "start": float(start),
                    "end": float(end),
                    "_source": source,
                }
                row.update({f"target_{d}": float(v) for d, v in zip(DIMENSIONS, values)})
                if audio_dir is not None:
                    row["audio"] = str(wav) if wav.is_file() else ""
                if videos is not None:
                    row["video"] = videos.get(video, "")
                if text_dir is not None:
                    text = best_text(transcript, start, end, config.text_min_overlap) if transcript else None
                    row["text"] = text or ""
                rows.append(row)

    rows = apply_require(rows, config.require, "_source", skipped)
    if not rows:
        raise ManifestError(f"{labels_path}: no labelled intervals ({len(skipped)} skipped)")
    df = pd.DataFrame(rows).drop(columns=["_source"])
    notes[:0] = _assign_splits(df, folds, config)
    notes.append(emotion_presence(df))
    if audio_dir is not None:
        n = int((df["audio"] == "").sum())
        notes.append(f"audio: {len(df) - n} intervals with a <video>.wav, {n} without "
                     f"({df.loc[df['audio'] == '', 'video_id'].nunique()} videos lack audio)")
    if videos is not None:
        n = int((df["video"] == "").sum())
        notes.append(f"video: {len(df) - n} intervals with a raw <video>.mp4, {n} without "
                     f"({df.loc[df['video'] == '', 'video_id'].nunique()} videos lack one)")
    if text_dir is not None:
        n = int((df["text"] == "").sum())
        notes.append(f"text: {len(df) - n} intervals matched a transcript segment (IoU >= "
                     f"{config.text_min_overlap}), {n} without text; {bad_lines} malformed transcript line(s)")
    return AdapterResult(manifest=Manifest(df, source=str(labels_path)), skipped=skipped, notes=notes)


def _assign_splits(df: pd.DataFrame, folds: dict[str, str] | None, config: Config) -> list[str]:
    if folds is not None:
        df["split"] = [folds.get(v, "") for v in df["video_id"]]
        notes = [f"splits from {config.folds}: " + ", ".join(
            f"{s}={int((df['split'] == s).sum())}" for s in (TRAIN, VAL, TEST))]
        missing = df.loc[df["split"] == "", "video_id"].unique()
        if len(missing):
            notes.append(f"{len(missing)} labelled video(s) are in no fold (split empty), e.g. {list(missing[:3])}")
        return notes
    df["split"] = [hash_split(v) for v in df["video_id"]]
    warning = ("WARNING: no dataset.folds file given: videos split 70/10/20 by a hash of the video id. "
               "This is NOT the standard CMU-MOSEI split; results are not comparable with published ones. "
               "Pass the SDK's standard folds (train/valid/test video ids) as dataset.folds.")
    log.warning(warning)
    return [warning]


def emotion_presence(df: pd.DataFrame) -> str:
    """Per split: how many intervals have each emotion present (intensity > 0) and how many none."""
    parts = []
    for split in (TRAIN, VAL, TEST, ""):
        sub = df[df["split"] == split]
        if sub.empty:
            continue
        counts = [f"{e}={int((sub[f'target_{e}'] > 0).sum())}" for e in EMOTIONS]
        counts.append(f"none={int((sub['label'] == '').sum())}")
        parts.append(f"{split or '<none>'} ({len(sub)}): " + ", ".join(counts))
    return "emotion presence per split: " + " | ".join(parts)
