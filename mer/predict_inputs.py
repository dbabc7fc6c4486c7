"""What ``mer predict`` is asked to score, as manifest rows with content-addressed ids.

Inputs are media files (audio by extension, video by extension), folders (their media files,
recursively, sorted), manifests (CSV/TSV/JSONL with the generic adapter's columns, relative
paths against the manifest's folder), transcripts (``--text``) and one explicit multimodal
sample (``--audio``/``--video`` with at most one ``--text``).

Each sample gets two names:

* ``name``: what the user knows it by (a manifest's ``id``, a file's stem), shown in the output;
* a cache id: a hash of everything the run's encoders read for it: file CONTENTS (not paths),
  the transcript, the time window. The prediction cache is keyed by it, so scoring the same
  files again (renamed, moved, or in another call) extracts nothing, and an edited file is a
  new sample rather than a stale cache hit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from mer.features.base import Encoder
from mer.pipeline.adapters.generic import read_generic
from mer.pipeline.manifest import FLOAT_COLUMNS, PATH_COLUMNS, ManifestError

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".flv", ".webm", ".m4v"})
MANIFEST_SUFFIXES = frozenset({".csv", ".tsv", ".jsonl", ".ndjson"})
#: manifest columns that say nothing about a sample's inputs (left out of its cache id)
NOT_INPUT = ("id", "label", "group", "split")


class InputError(ManifestError):
    """An input ``mer predict`` cannot turn into a sample (names the input and the problem)."""


@dataclass
class Sample:
    """One sample to score: its user-facing name, where it came from, its manifest input columns."""

    name: str
    source: str
    row: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class RunColumns:
    """Which manifest columns the run's encoders read, by kind of input.

    ``kinds[column]`` is the input kind of an encoder's first column (its class default:
    ``audio``, ``video``, ``text``, ``landmarks``, ``eda``...): a media file of kind audio fills
    every column whose kind is audio (an encoder may read it under another name via its
    ``column`` option); a video file fills video and audio columns (the audio track, as the
    MELD adapter does).
    """

    kinds: dict[str, str]
    #: every column any encoder reads (all E4 columns, for instance) plus the time window
    read: tuple[str, ...]

    @classmethod
    def of(cls, encoders: Iterable[Encoder]) -> "RunColumns":
        kinds: dict[str, str] = {}
        read: list[str] = []
        for enc in encoders:
            kinds[enc.columns[0]] = type(enc).columns[0]
            read.extend(c for c in enc.columns if c not in read)
        read.extend(c for c in ("start", "end") if c not in read)
        return cls(kinds, tuple(read))

    def columns_of(self, kind: str) -> list[str]:
        return [c for c, k in self.kinds.items() if k == kind]

    def path_columns(self) -> set[str]:
        """Columns holding file paths: the manifest's path columns and the media columns."""
        return set(PATH_COLUMNS) | {c for c, k in self.kinds.items() if k in PATH_COLUMNS}


def media_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return ""


def media_row(path: Path, kind: str, columns: RunColumns) -> dict[str, object]:
    """The manifest columns a media file fills for this run (empty when no encoder reads it)."""
    kinds = ("video", "audio") if kind == "video" else (kind,)
    return {c: str(path.resolve()) for k in kinds for c in columns.columns_of(k)}


def folder_media(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and media_kind(p))
    if not files:
        raise InputError(f"{folder}: no audio or video file in this folder (looked for "
                         f"{', '.join(sorted(AUDIO_SUFFIXES | VIDEO_SUFFIXES))})")
    return files


def manifest_samples(path: Path, columns: RunColumns) -> list[Sample]:
    """One sample per manifest row; a missing file stays and becomes that sample's read failure."""
    manifest, _ = read_generic(path, missing_files="record")
    df = manifest.df
    wanted = [c for c in columns.read if c in df.columns]
    samples = []
    for record in df.to_dict("records"):
        row = {c: record[c] for c in wanted}
        samples.append(Sample(str(record["id"]), f"{path}:{record['id']}", row))
    return samples


def collect_samples(inputs: Iterable[str | Path], columns: RunColumns, texts: Iterable[str] = (),
                    audio: str | Path | None = None, video: str | Path | None = None) -> list[Sample]:
    """The samples of a ``mer predict`` call, in the order given.

    ``texts`` pair one to one with the media files of ``inputs`` when both are given; without
    media files each text is a sample of its own, or, with ``audio``/``video``, the transcript of
    that one multimodal sample.
    """
    texts = list(texts)
    media: list[Path] = []
    samples: list[Sample] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            media.extend(folder_media(path))
        elif not path.exists():
            raise InputError(f"{path}: no such file or folder")
        elif path.suffix.lower() in MANIFEST_SUFFIXES:
            samples.extend(manifest_samples(path, columns))
        elif media_kind(path):
            media.append(path)
        else:
            raise InputError(f"{path}: not an audio, video or manifest file (by its extension {path.suffix!r}); "
                             f"audio: {', '.join(sorted(AUDIO_SUFFIXES))}; video: {', '.join(sorted(VIDEO_SUFFIXES))}; "
                             f"manifests: {', '.join(sorted(MANIFEST_SUFFIXES))}")
    explicit = audio is not None or video is not None
    if explicit and media:
        raise InputError("--audio/--video describe ONE sample; give the other media files as INPUT without them, "
                         "or score them in another call")
    if texts and media and len(texts) != len(media):
        raise InputError(f"{len(texts)} --text value(s) for {len(media)} media file(s): give one transcript per "
                         "file (in the same order) or none")
    if explicit and len(texts) > 1:
        raise InputError("--audio/--video take at most one --text (they describe one sample)")
    text_columns = columns.columns_of("text")
    if texts and not text_columns:
        raise InputError("--text given, but none of the run's encoders reads text")
    for k, path in enumerate(media):
        row = media_row(path, media_kind(path), columns)
        if texts:
            row.update({c: texts[k] for c in text_columns})
        samples.append(Sample(path.stem, str(path), _nonempty(row, str(path), columns)))
    if explicit:
        row: dict[str, object] = {}
        for given, kind in ((audio, "audio"), (video, "video")):
            if given is not None:
                path = Path(given)
                if not path.is_file():
                    raise InputError(f"{path}: no such file (--{kind})")
                row.update(media_row(path, kind, columns))
        row.update({c: texts[0] for c in text_columns} if texts else {})
        name = Path(audio or video).stem
        samples.append(Sample(name, " + ".join(str(p) for p in (audio, video) if p) + (" + text" if texts else ""),
                              _nonempty(row, "--audio/--video", columns)))
    elif texts and not media:
        samples.extend(Sample(f"text{k + 1}", "--text", {c: t for c in text_columns}) for k, t in enumerate(texts))
    if not samples:
        raise InputError("nothing to score: give audio/video files, a folder, a manifest or --text")
    return unique_names(samples)


def _nonempty(row: dict, what: str, columns: RunColumns) -> dict:
    if not row:
        kinds = sorted(set(columns.kinds.values()))
        raise InputError(f"{what}: none of the run's encoders reads this kind of input (they read: {', '.join(kinds)})")
    return row


def unique_names(samples: list[Sample]) -> list[Sample]:
    """Names are the output's ids: a repeated one takes its source instead, then a #k suffix."""
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.name] = counts.get(s.name, 0) + 1
    seen: set[str] = set()
    for s in samples:
        name = s.name if counts[s.name] == 1 else s.source
        base, k = name, 2
        while name in seen:
            name, k = f"{base}#{k}", k + 1
        s.name = name
        seen.add(name)
    return samples


class ContentHasher:
    """sha256 of file contents, each file read once per call (a biosignal file shared by many
    segments is hashed once)."""

    def __init__(self) -> None:
        self._files: dict[str, str] = {}

    def file(self, path: str) -> str:
        if path not in self._files:
            p = Path(path)
            if not p.is_file():
                # no content to hash: the path itself, so the encoder records the read failure
                self._files[path] = f"missing:{p}"
            else:
                digest = hashlib.sha256()
                with p.open("rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
                self._files[path] = digest.hexdigest()
        return self._files[path]

    def sample_id(self, row: dict[str, object], path_columns: set[str]) -> str:
        """``s-`` + 24 hex digits of a hash over the row's inputs (file columns by content)."""
        material = {}
        for column, value in sorted(row.items()):
            if column in NOT_INPUT or _empty(value):
                continue
            material[column] = self.file(str(value)) if column in path_columns else _plain(value, column)
        text = json.dumps(material, sort_keys=True, separators=(",", ":"))
        return "s-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _empty(value: object) -> bool:
    return value is None or value != value or str(value) == ""


def _plain(value: object, column: str) -> object:
    if column in FLOAT_COLUMNS:
        return round(float(value), 6)  # as the manifest fingerprint formats times
    return str(value)


__all__ = ["ContentHasher", "InputError", "RunColumns", "Sample", "collect_samples", "media_kind", "unique_names"]
