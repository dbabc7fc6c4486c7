"""RAVDESS (Livingstone & Russo 2018): acted English speech and song, 8 emotions, 24 actors.

Layout ``<root>/Actor_XX/<code>.<ext>``; ``<code>`` is seven two-digit fields
``modality-channel-emotion-intensity-statement-repetition-actor`` (e.g. ``03-01-05-01-02-01-18``).
Any audio extension libsndfile reads is accepted (the release's ``.wav``, a lossless ``.flac``
re-encoding, ...); other files (notes) are ignored. ``channel`` selects speech, song or both.

* **Samples and video**: a clip (the six fields other than the modality) is a sample when its
  audio is there: the audio-only file (modality 03), else the audio track of its full-AV MP4
  (modality 01, decoded with PyAV; ``id`` is then the MP4's code). Its ``video`` column is the
  full-AV MP4 (01), else the video-only MP4 (02), paired by the six fields. Videos are found in
  the actor folders beside the audio (the release's ``Video_Speech_Actor_XX.zip`` unpack to the
  same ``Actor_XX`` folders) and below the optional ``video_root`` (flat or per actor). A
  video-only MP4 (02) of a clip with no audio is skipped ("no audio"). Without any video the
  manifest has no ``video`` column.

* **Labels**: neutral, calm, happy, sad, angry, fearful, disgust, surprised (codes 01-08);
  ``merge_calm: true`` labels calm as neutral (a common 7-class variant).
* **Columns**: ``group`` = actor (``Actor_01``); ``target_intensity`` (1 normal, 2 strong),
  ``channel`` (speech/song), ``statement`` (1/2), ``repetition``, ``sex`` (odd actors male).
* **Text** = the statement ("Kids are talking by the door" / "Dogs are sitting by the door").
  It carries NO emotion: every emotion is acted on both sentences. It is a control modality
  (a model that gains from it is leaking something else); never read it as a transcript signal.
* **Landmarks** (optional ``landmarks_root``): the "RAVDESS Facial Landmark Tracking" OpenFace 2
  CSVs are named like the VIDEOS (``01-...`` audio-video or ``02-...`` video-only); an audio clip
  matches by its other six fields, audio-video (01) preferred over video-only (02). Files are
  found anywhere below the folder (flat or per actor).
* **Splits** (``protocol``): ``fold1``..``fold4``: the common 4-fold speaker-independent protocol,
  test actors {01,11,20,21}, {04,10,12,14}, {08,09,19,23}, {03,05,07,24}; validation = the
  lowest-numbered male and the lowest-numbered female actor among that fold's training actors
  (a fixed, gender-balanced rule: fold1 {02,03}, folds 2-4 {01,02}). ``mpuc``: test {1,4,21},
  validation {8,9,20} (MPUC-MER's split). ``loao-<actor>``: leave one actor out (validation by the
  same male+female rule). ``custom``: ``test_actors`` / ``val_actors``. ``fold_1``..``fold_4`` are
  always filled; ``split`` holds the chosen protocol.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

import pandas as pd
import soundfile as sf

from mer.pipeline.adapters._common import assign_split, label_distribution, require_dir, resolve_under
from mer.pipeline.adapters.base import AdapterResult, LayoutError, Protocol, Skip
from mer.pipeline.manifest import Manifest, ManifestError

LAYOUT = """\
<root>/
  Actor_01/03-01-01-01-01-01-01.wav    modality-channel-emotion-intensity-statement-repetition-actor
  Actor_01/...                         (.wav, .flac or any format libsndfile reads)
  ...
  Actor_24/...
  Actor_01/01-01-01-01-01-01-01.mp4    videos (optional): 01 = audio-video, 02 = video-only
<video_root>/ (optional)               more videos, flat or per actor
<landmarks_root>/ (optional)           OpenFace 2 CSVs named like the videos, flat or per actor
  01-01-01-01-01-01-01.csv             (01 = audio-video, 02 = video-only)"""

EMOTIONS = {1: "neutral", 2: "calm", 3: "happy", 4: "sad", 5: "angry", 6: "fearful", 7: "disgust", 8: "surprised"}
STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
CHANNELS = {1: "speech", 2: "song"}
FOLDS = ((1, 11, 20, 21), (4, 10, 12, 14), (8, 9, 19, 23), (3, 5, 7, 24))
MPUC = {"test": (1, 4, 21), "val": (8, 9, 20)}
ACTORS = tuple(range(1, 25))
#: video containers paired with the audio (the release ships .mp4)
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi")
CODE_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
ACTOR_DIR_RE = re.compile(r"^Actor_(\d\d)$")
PROTOCOL_RE = re.compile(r"^(fold[1-4]|mpuc|custom|loao-\d{1,2}|group\d{1,2})$")


def audio_extensions() -> set[str]:
    """Lower-case extensions of every container libsndfile can read."""
    exts = {f.lower() for f in sf.available_formats()}
    return exts | {"wav", "flac", "ogg", "aiff", "aif", "mp3"}


@dataclass
class Config:
    name: str = "ravdess"
    #: folder with Actor_01 .. Actor_24
    root: str = "data/ravdess"
    corpus: str = "ravdess"
    #: speech | song | both
    channel: Literal["speech", "song", "both"] = "speech"
    #: label calm clips as neutral (7 classes)
    merge_calm: bool = False
    #: fold1..fold4 | mpuc | loao-<actor> | custom | group<k> (the k-th of ``groups``)
    protocol: str = "fold1"
    #: custom protocol: test / validation actors (numbers)
    test_actors: list[int] = field(default_factory=list)
    val_actors: list[int] = field(default_factory=list)
    #: group<k> protocols: your own folds, the test actors of each (e.g. leave-4-actors-out over
    #: the actors you have); ``group_val_actors`` (optional, one list per group) gives each fold's
    #: validation actors, else the lowest-numbered male and female training actor
    groups: list[list[int]] = field(default_factory=list)
    group_val_actors: list[list[int]] = field(default_factory=list)
    #: optional folder of OpenFace CSVs (absolute, or relative to root)
    landmarks_root: str = ""
    #: optional folder of RAVDESS MP4s (absolute, or relative to root), besides those in the actor folders
    video_root: str = ""

    def __post_init__(self) -> None:
        if self.channel not in ("speech", "song", "both"):
            raise ValueError(f"channel must be speech, song or both, got {self.channel!r}")
        if not PROTOCOL_RE.match(self.protocol):
            raise ValueError(f"protocol must be fold1..fold4, mpuc, loao-<actor> or custom, got {self.protocol!r}")
        if self.protocol.startswith("loao-") and int(self.protocol[5:]) not in ACTORS:
            raise ValueError(f"{self.protocol}: actor must be 1..24")
        if self.protocol == "custom" and not self.test_actors:
            raise ValueError("protocol custom needs test_actors")
        if self.protocol.startswith("group") and not 1 <= int(self.protocol[5:]) <= len(self.groups):
            raise ValueError(f"protocol {self.protocol} needs groups with at least {self.protocol[5:]} lists of "
                             f"test actors (groups has {len(self.groups)})")
        if self.group_val_actors and len(self.group_val_actors) != len(self.groups):
            raise ValueError(f"group_val_actors needs one list per group ({len(self.groups)}), "
                             f"got {len(self.group_val_actors)}")
        for k, test in enumerate(self.groups):
            clash = set(test) & set(self.group_val_actors[k]) if self.group_val_actors else set()
            if clash:
                raise ValueError(f"group {k + 1}: actors {sorted(clash)} are both test and validation actors")
        both = set(self.test_actors) & set(self.val_actors)
        if both:
            raise ValueError(f"actors {sorted(both)} are in both test_actors and val_actors")


@dataclass(frozen=True)
class Code:
    modality: int
    channel: int
    emotion: int
    intensity: int
    statement: int
    repetition: int
    actor: int

    @property
    def key(self) -> tuple[int, ...]:
        """The six fields shared by a clip's audio and video files (all but the modality)."""
        return (self.channel, self.emotion, self.intensity, self.statement, self.repetition, self.actor)


def parse_code(stem: str) -> Code | None:
    m = CODE_RE.match(stem)
    return Code(*(int(g) for g in m.groups())) if m else None


def code_problem(code: Code) -> str:
    """'' when every field is a valid RAVDESS value, else what is wrong."""
    if code.modality not in (1, 2, 3):
        return "invalid modality code"
    if code.channel not in CHANNELS:
        return "invalid vocal channel code"
    if code.emotion not in EMOTIONS:
        return "invalid emotion code"
    if code.intensity not in (1, 2) or (code.emotion == 1 and code.intensity == 2):
        return "invalid intensity code"
    if code.statement not in STATEMENTS or code.repetition not in (1, 2):
        return "invalid statement/repetition code"
    if code.actor not in ACTORS:
        return "invalid actor code"
    return ""


def _male_female_val(train: list[int]) -> set[int]:
    males = [a for a in sorted(train) if a % 2 == 1]
    females = [a for a in sorted(train) if a % 2 == 0]
    return set(males[:1] + females[:1])


def protocol_actors(protocol: str, config: Config | None = None) -> tuple[set[int], set[int]]:
    """(test actors, validation actors) of a protocol over the 24 RAVDESS actors."""
    if protocol.startswith("fold"):
        test = set(FOLDS[int(protocol[4:]) - 1])
    elif protocol == "mpuc":
        return set(MPUC["test"]), set(MPUC["val"])
    elif protocol.startswith("loao-"):
        test = {int(protocol[5:])}
    elif protocol.startswith("group"):
        assert config is not None
        k = int(protocol[5:]) - 1
        test = set(config.groups[k])
        if config.group_val_actors:
            return test, set(config.group_val_actors[k])
        return test, _male_female_val([a for a in ACTORS if a not in test and any(a in g for g in config.groups)])
    else:
        assert config is not None
        return set(config.test_actors), set(config.val_actors)
    return test, _male_female_val([a for a in ACTORS if a not in test])


#: the dataset field that selects a fold (``mer train --folds``)
FOLD_FIELD = "protocol"


def protocol(config: Config) -> Protocol:
    """Every RAVDESS protocol holds out whole actors."""
    return Protocol(config.protocol, "actor", True)


def folds(config: Config, manifest: Manifest) -> list[tuple[str, str]]:
    """``fold1``..``fold4`` for a ``foldK`` protocol; ``loao-<actor>`` for every actor in the
    manifest for a ``loao-*`` protocol."""
    if config.protocol.startswith("fold"):
        return [(f"fold{k}", f"fold{k}") for k in range(1, len(FOLDS) + 1)]
    if config.protocol.startswith("loao-"):
        actors = sorted({int(g[6:]) for g in manifest.df["group"] if re.fullmatch(r"Actor_\d\d", g)})
        return [(f"loao-{a}", f"loao-{a}") for a in actors]
    if config.protocol.startswith("group"):
        return [(f"group{k}", f"group{k}") for k in range(1, len(config.groups) + 1)]
    raise ValueError(f"protocol {config.protocol!r} is one split; the folded protocols are fold1..fold4 "
                     "(set dataset.protocol=fold1), loao-<actor> (dataset.protocol=loao-1) and group<k> "
                     "(your own folds in dataset.groups)")


def _index_by_key(paths: Iterable[Path]) -> dict[tuple[int, ...], tuple[int, Path]]:
    """Six-field key -> (modality, file) of video-named files, audio-video (01) preferred over video-only (02)."""
    best: dict[tuple[int, ...], tuple[int, Path]] = {}
    for path in sorted(paths):
        code = parse_code(path.stem)
        if code is None or code.modality not in (1, 2) or code_problem(code):
            continue
        if code.key not in best or code.modality < best[code.key][0]:
            best[code.key] = (code.modality, path)
    return best


def _index_landmarks(folder: Path) -> dict[tuple[int, ...], Path]:
    """Six-field key -> OpenFace CSV, audio-video (01) preferred over video-only (02)."""
    return {k: p for k, (_, p) in _index_by_key(folder.rglob("*.csv")).items()}


def _index_videos(actor_dirs: list[Path], video_root: Path | None) -> dict[tuple[int, ...], tuple[int, Path]]:
    """Six-field key -> (modality, MP4) from the actor folders and ``video_root``; 01 preferred over 02."""
    paths = [p for d in actor_dirs for p in d.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS]
    if video_root is not None:
        paths += [p for p in video_root.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS]
    return _index_by_key(p for p in paths if p.is_file() and not p.name.startswith("."))


def _row(code: Code, sample_id: str, audio: Path, videos: dict[tuple[int, ...], tuple[int, Path]],
         landmarks: dict[tuple[int, ...], Path] | None, config: Config) -> dict:
    label = EMOTIONS[code.emotion]
    if config.merge_calm and label == "calm":
        label = "neutral"
    lm = landmarks.get(code.key) if landmarks is not None else None
    video = videos.get(code.key)
    return {
        "id": sample_id,
        "label": label,
        "group": f"Actor_{code.actor:02d}",
        "split": "",
        "text": STATEMENTS[code.statement],
        "audio": str(audio),
        "video": str(video[1]) if video else "",
        "landmarks": str(lm) if lm else "",
        "channel": CHANNELS[code.channel],
        "statement": str(code.statement),
        "repetition": str(code.repetition),
        "sex": "male" if code.actor % 2 else "female",
        "target_intensity": float(code.intensity),
        "_actor": code.actor,
        "_key": code.key,
    }


def build(config: Config, progress: bool = True) -> AdapterResult:
    root = Path(config.root).expanduser().resolve()
    require_dir("ravdess", root, LAYOUT)
    actor_dirs = sorted(p for p in root.iterdir() if p.is_dir() and ACTOR_DIR_RE.match(p.name))
    if not actor_dirs:
        raise LayoutError("ravdess", root / "Actor_01", LAYOUT)
    landmarks: dict[tuple[int, ...], Path] | None = None
    if config.landmarks_root:
        lm_root = require_dir("ravdess", resolve_under(root, config.landmarks_root).resolve(), LAYOUT)
        landmarks = _index_landmarks(lm_root)

    videos = _index_videos(actor_dirs, require_dir("ravdess", resolve_under(root, config.video_root).resolve(), LAYOUT)
                           if config.video_root else None)

    exts = audio_extensions()
    wanted = {1, 2} if config.channel == "both" else {1} if config.channel == "speech" else {2}
    skipped: list[Skip] = []
    rows: list[dict] = []
    seen: dict[str, str] = {}
    for actor_dir in actor_dirs:
        folder_actor = int(actor_dir.name[6:])
        for path in sorted(actor_dir.iterdir()):
            ext = path.suffix.lower().lstrip(".")
            if not path.is_file() or ext not in exts or path.name.startswith("."):
                continue
            code = parse_code(path.stem)
            if code is None:
                skipped.append(Skip(path.stem, str(path), "file name is not a 7-field RAVDESS code"))
                continue
            problem = code_problem(code)
            if problem:
                skipped.append(Skip(path.stem, str(path), problem))
                continue
            if code.modality != 3:
                skipped.append(Skip(path.stem, str(path), "not an audio-only clip (modality 01/02)"))
                continue
            if code.actor != folder_actor:
                skipped.append(Skip(path.stem, str(path), "actor code differs from its Actor_XX folder"))
                continue
            if code.channel not in wanted:
                skipped.append(Skip(path.stem, str(path), f"{CHANNELS[code.channel]} excluded by channel option"))
                continue
            if path.stem in seen:
                skipped.append(Skip(path.stem, str(path), f"duplicate clip (kept {Path(seen[path.stem]).name})"))
                continue
            seen[path.stem] = str(path)
            rows.append(_row(code, path.stem, path, videos, landmarks, config))
    with_audio = {(r["_key"]) for r in rows}
    for key, (modality, video) in sorted(videos.items()):
        code = parse_code(video.stem)
        if key in with_audio or code is None or code.channel not in wanted:
            continue
        if modality == 2:
            skipped.append(Skip(video.stem, str(video), "no audio (video-only clip without its audio file or full-AV MP4)"))
            continue
        rows.append(_row(code, video.stem, video, videos, landmarks, config))
    if not rows:
        raise ManifestError(f"{root}: no {config.channel} audio clips found in {len(actor_dirs)} actor folder(s) "
                            f"({len(skipped)} skipped)")
    df = pd.DataFrame(rows).drop(columns=["_key"])
    actors = df.pop("_actor")
    groups = [f"Actor_{a:02d}" for a in actors]
    for i in range(1, 5):
        test, val = protocol_actors(f"fold{i}")
        df[f"fold_{i}"] = assign_split(groups, {f"Actor_{a:02d}" for a in test}, {f"Actor_{a:02d}" for a in val})
    test, val = protocol_actors(config.protocol, config)
    df["split"] = assign_split(groups, {f"Actor_{a:02d}" for a in test}, {f"Actor_{a:02d}" for a in val})
    if landmarks is None:
        df = df.drop(columns=["landmarks"])
    if not videos:
        df = df.drop(columns=["video"])

    present = sorted(set(actors))
    notes = [f"protocol {config.protocol}: test actors {sorted(test)}, val actors {sorted(val)}; "
             f"actors present {present}"]
    missing_test = sorted(test - set(present))
    if missing_test:
        notes.append(f"WARNING: test actor(s) {missing_test} of protocol {config.protocol} are not in {root}")
    notes.append(label_distribution(df))
    if landmarks is not None:
        n_missing = int((df["landmarks"] == "").sum())
        notes.append(f"landmarks: {len(df) - n_missing} clips matched an OpenFace CSV, {n_missing} without landmarks")
    if videos:
        n_video = int((df["video"] != "").sum())
        from_mp4 = int(df["id"].str.startswith("01-").sum())
        notes.append(f"video: {n_video} clips paired with an MP4, {len(df) - n_video} without; "
                     f"{from_mp4} clips take their audio from the full-AV MP4 (no audio-only file)")
    notes.append("text = the statement sentence; it carries no emotion (control modality)")
    return AdapterResult(manifest=Manifest(df, source=str(root)), skipped=skipped, notes=notes)
