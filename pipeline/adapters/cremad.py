"""CREMA-D (Cao et al. 2014): 7,442 acted clips, 91 actors, 12 sentences, 6 emotions, audio + video.

Layout as the release ships it (``AudioWAV/``, ``VideoFlash/``; also ``AudioMP3/`` and any
``VideoMP4/`` re-encoding), or all files in one folder: files are found anywhere below ``root``
and paired by their name ``AAAA_SSS_EEE_LL`` = actor (1001..1091), sentence code, emotion, level.

* **Samples**: one per name with audio: ``audio`` = the ``.wav`` (else the ``.mp3``, else the
  audio track of the video, decoded with PyAV); ``video`` = the ``.flv`` (else an ``.mp4``/
  ``.avi``/``.mkv``/``.mov``). A name with only a video and no audio track file still has audio
  (FLV carries MP3). A name that is not ``AAAA_SSS_EEE_LL`` with known codes is a Skip naming the
  problem.
* **Labels**: ANG angry, DIS disgust, FEA fearful, HAP happy, NEU neutral, SAD sad (RAVDESS's
  names for the shared classes). ``level`` (LO/MD/HI, XX unspecified) is kept as a column and as
  ``target_intensity`` 1/2/3 (NaN for XX). These are the INTENDED emotions; CREMA-D's crowd
  ratings often disagree (``tabulatedVotes.csv``, not read here).
* **Columns**: ``group`` = actor (``1001``), ``text`` = the sentence (it carries no emotion:
  every emotion is acted on every sentence; a control modality), ``sex`` / ``age`` from
  ``VideoDemographics.csv`` when it is below ``root``.
* **Splits** (speaker-independent): the 91 actors are dealt into ``n_folds`` (5) folds by their
  number, actor ``a`` in fold ``(a - 1001) % n_folds + 1``; protocol ``foldK`` tests on fold K,
  validates on fold K+1 (wrapping) and trains on the rest. ``fold_1``..``fold_<n>`` columns hold
  every protocol; ``custom`` uses ``test_actors`` / ``val_actors``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mer.pipeline.adapters._common import assign_split, label_distribution, require_dir
from mer.pipeline.adapters.base import AdapterResult, Protocol, Skip
from mer.pipeline.manifest import Manifest, ManifestError

LAYOUT = """\
<root>/
  AudioWAV/1001_DFA_ANG_XX.wav       AAAA_SSS_EEE_LL: actor, sentence, emotion, level
  VideoFlash/1001_DFA_ANG_XX.flv     (any folders below root; files are paired by name)
  VideoDemographics.csv              optional: ActorID, Age, Sex, Race, Ethnicity"""

EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
LEVELS = {"LO": 1.0, "MD": 2.0, "HI": 3.0, "XX": float("nan")}
ACTORS = tuple(range(1001, 1092))
NAME_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
#: audio preference: the lossless release first
AUDIO_EXTENSIONS = (".wav", ".mp3")
VIDEO_EXTENSIONS = (".flv", ".mp4", ".avi", ".mkv", ".mov")
PROTOCOL_RE = re.compile(r"^(fold\d+|custom)$")


@dataclass
class Config:
    name: str = "cremad"
    #: folder holding AudioWAV/, VideoFlash/ (or the files themselves, in any sub-folders)
    root: str = "data/CREMA-D"
    corpus: str = "cremad"
    #: number of speaker-independent folds over the 91 actors
    n_folds: int = 5
    #: foldK (1..n_folds) | custom
    protocol: str = "fold1"
    test_actors: list[int] = field(default_factory=list)
    val_actors: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.n_folds < 3:
            raise ValueError(f"n_folds must be >= 3 (a test, a validation and a training fold), got {self.n_folds}")
        if not PROTOCOL_RE.match(self.protocol):
            raise ValueError(f"protocol must be fold1..fold{self.n_folds} or custom, got {self.protocol!r}")
        if self.protocol.startswith("fold") and not 1 <= int(self.protocol[4:]) <= self.n_folds:
            raise ValueError(f"{self.protocol}: fold must be 1..{self.n_folds}")
        if self.protocol == "custom" and not self.test_actors:
            raise ValueError("protocol custom needs test_actors")
        both = set(self.test_actors) & set(self.val_actors)
        if both:
            raise ValueError(f"actors {sorted(both)} are in both test_actors and val_actors")


def fold_of(actor: int, n_folds: int) -> int:
    return (actor - ACTORS[0]) % n_folds + 1


def protocol_actors(protocol: str, config: Config) -> tuple[set[int], set[int]]:
    """(test actors, validation actors) of a protocol over the 91 CREMA-D actors."""
    if protocol == "custom":
        return set(config.test_actors), set(config.val_actors)
    k = int(protocol[4:])
    val = k % config.n_folds + 1
    return ({a for a in ACTORS if fold_of(a, config.n_folds) == k},
            {a for a in ACTORS if fold_of(a, config.n_folds) == val})


#: the dataset field that selects a fold (``mer train --folds``)
FOLD_FIELD = "protocol"


def protocol(config: Config) -> Protocol:
    return Protocol(config.protocol, "actor", True)


def folds(config: Config, manifest: Manifest) -> list[tuple[str, str]]:
    """``fold1``..``fold<n_folds>`` (the actor folds); ``custom`` is one split."""
    if config.protocol == "custom":
        raise ValueError("protocol 'custom' is one split; the folded protocol is fold1..fold<n_folds> "
                         "(set dataset.protocol=fold1)")
    return [(f"fold{k}", f"fold{k}") for k in range(1, config.n_folds + 1)]


def name_problem(stem: str) -> str:
    """'' for a valid ``AAAA_SSS_EEE_LL`` name, else what is wrong with it."""
    m = NAME_RE.match(stem)
    if not m:
        return "file name is not AAAA_SSS_EEE_LL"
    actor, sentence, emotion, level = m.groups()
    if int(actor) not in ACTORS:
        return "unknown actor (CREMA-D actors are 1001..1091)"
    if sentence not in SENTENCES:
        return "unknown sentence code"
    if emotion not in EMOTIONS:
        return "unknown emotion code"
    if level not in LEVELS:
        return "unknown level code"
    return ""


def read_demographics(path: Path) -> dict[int, dict[str, str]]:
    """ActorID -> {sex, age} from VideoDemographics.csv; errors name the file."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"ActorID", "Sex", "Age"} <= {c.strip() for c in reader.fieldnames}:
            raise ManifestError(f"{path}: expected columns ActorID, Age, Sex; found {reader.fieldnames}")
        out = {}
        for rec in reader:
            rec = {k.strip(): (v or "").strip() for k, v in rec.items()}
            if rec["ActorID"].isdigit():
                out[int(rec["ActorID"])] = {"sex": rec["Sex"].lower(), "age": rec["Age"]}
        return out


def build(config: Config, progress: bool = True) -> AdapterResult:
    root = require_dir("cremad", Path(config.root).expanduser().resolve(), LAYOUT)
    media = AUDIO_EXTENSIONS + VIDEO_EXTENSIONS
    audio: dict[str, Path] = {}
    video: dict[str, Path] = {}
    skipped: list[Skip] = []
    seen_bad: set[str] = set()
    for path in sorted(root.rglob("*")):
        ext = path.suffix.lower()
        if ext not in media or not path.is_file() or path.name.startswith("."):
            continue
        problem = name_problem(path.stem)
        if problem:
            if path.stem not in seen_bad:
                skipped.append(Skip(path.stem, str(path), problem))
                seen_bad.add(path.stem)
            continue
        table, order = (audio, AUDIO_EXTENSIONS) if ext in AUDIO_EXTENSIONS else (video, VIDEO_EXTENSIONS)
        current = table.get(path.stem)
        if current is None or order.index(ext) < order.index(current.suffix.lower()):
            table[path.stem] = path
    demo_files = sorted(root.rglob("VideoDemographics.csv"))
    demographics = read_demographics(demo_files[0]) if demo_files else {}

    rows = []
    for stem in sorted(set(audio) | set(video)):
        actor, sentence, emotion, level = NAME_RE.match(stem).groups()
        who = demographics.get(int(actor), {})
        rows.append({
            "id": stem,
            "label": EMOTIONS[emotion],
            "group": actor,
            "split": "",
            "text": SENTENCES[sentence],
            "audio": str(audio.get(stem) or video[stem]),
            "video": str(video[stem]) if stem in video else "",
            "sentence": sentence,
            "level": level,
            "target_intensity": LEVELS[level],
            "sex": who.get("sex", ""),
            "age": who.get("age", ""),
        })
    if not rows:
        raise ManifestError(f"{root}: no CREMA-D clips (AAAA_SSS_EEE_LL.wav/.flv/...) found ({len(skipped)} skipped)")
    df = pd.DataFrame(rows)
    actors = df["group"].astype(int)
    for k in range(1, config.n_folds + 1):
        test, val = protocol_actors(f"fold{k}", config)
        df[f"fold_{k}"] = assign_split(actors, test, val)
    test, val = protocol_actors(config.protocol, config)
    df["split"] = assign_split(actors, test, val)
    if not video:
        df = df.drop(columns=["video"])
    if not demographics:
        df = df.drop(columns=["sex", "age"])

    n_audio_from_video = sum(1 for s in video if s not in audio)
    notes = [f"protocol {config.protocol}: {len(test)} test actors, {len(val)} val actors; "
             f"{actors.nunique()} actors present",
             label_distribution(df),
             f"media: {len(audio)} audio files, {len(video)} videos; {n_audio_from_video} clips take their audio "
             f"from the video",
             "labels are the intended emotions (crowd ratings differ for many clips); "
             "text = the sentence, which carries no emotion (control modality)"]
    if not demographics:
        notes.append("no VideoDemographics.csv below root: no sex/age columns")
    return AdapterResult(manifest=Manifest(df, source=str(root)), skipped=skipped, notes=notes)
