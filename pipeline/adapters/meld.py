"""MELD (Poria et al. 2019): Friends dialogue, text + audio + video, 7 emotions + sentiment.

Reads ``train_sent_emo.csv``, ``dev_sent_emo.csv`` and ``test_sent_emo.csv`` (columns
``Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID, Season, Episode,
StartTime, EndTime``; CRLF line ends, quoted fields with commas).

* **Splits** are MELD's official ones: train -> ``train``, dev -> ``val``, test -> ``test``. They
  are NOT speaker-independent (the six main characters speak in every split); the notes count
  the speakers shared between train and test. ``group`` = Speaker.
* **id** = ``{split}_dia{D}_utt{U}`` with MELD's split names (``train``/``dev``/``test``): the
  dialogue numbering restarts in each split, so the split prefix makes ids unique; a repeated
  (dialogue, utterance) within one split is a Skip "duplicate utterance id".
* **Labels**: anger, disgust, fear, joy, neutral, sadness, surprise (MELD's names, kept by
  default); ``label_names: kemdy20`` maps them onto angry, disgust, fear, happy, neutral, sad,
  surprise (the same seven classes under KEMDy20's names). Anything else is a Skip
  "label outside class set". ``sentiment`` (negative/neutral/positive) is kept as a column and
  as ``target_sentiment`` = -1/0/1.
* **Text encoding**: files are decoded as UTF-8 (the current release; its typographic quotes
  ``’ “ ” — …`` are real characters and are kept). An older copy that is not valid UTF-8 is
  decoded as cp1252 (noted). Mojibake, i.e. UTF-8 bytes read as cp1252/Latin-1 once (``â€™``
  for ``’``, ``Ã©`` for ``é``) or stray C1 control characters (``\\x92`` for ``’``), is repaired
  by an explicit, reversible rule (re-encode the suspect string as cp1252 and decode it as
  UTF-8; map C1 controls through cp1252) applied only to strings that contain such markers,
  and counted in the notes (``repair_text: false`` keeps strings verbatim). No new dependency
  (ftfy) is needed for this one well-defined kind of damage; the current release has none.
* ``StartTime`` / ``EndTime`` are positions in the EPISODE (``0:19:08,781``-style), not in the
  clip, so they are kept as ``episode_start`` / ``episode_end`` text and never used as
  ``start``/``end`` (each media file is already one utterance).
* **Media** (optional ``media_root``): ``dia{D}_utt{U}.mp4`` per split, looked up in the
  release's folders: train ``train_splits/``, dev ``dev_splits_complete/``, test
  ``output_repeated_splits_test/``, either directly under ``media_root`` or under
  ``media_root/<train|dev|test>/`` (as MELD.Raw.tar.gz unpacks), or plain ``media_root/<split>/``.
  ``audio`` = ``video`` = the mp4 path (its audio track is decoded with PyAV, ``mer[video]``, see
  :mod:`mer.features.av_audio`; its frames by :mod:`mer.features.video_io`). An utterance whose
  clip is missing (the release lacks a few) keeps its text with empty ``audio`` and ``video``
  (counted in the notes; ``require: [audio]`` skips it).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from mer.pipeline.adapters._common import apply_require, label_distribution, require_dir, require_file, resolve_under
from mer.pipeline.adapters.base import AdapterResult, Protocol, Skip
from mer.pipeline.manifest import Manifest, ManifestError

LAYOUT = """\
<root>/
  train_sent_emo.csv   Sr No., Utterance, Speaker, Emotion, Sentiment, Dialogue_ID, Utterance_ID,
  dev_sent_emo.csv     Season, Episode, StartTime, EndTime
  test_sent_emo.csv
<media_root>/ (optional)
  train_splits/dia{D}_utt{U}.mp4            (or <media_root>/train/train_splits/...)
  dev_splits_complete/dia{D}_utt{U}.mp4     (or <media_root>/dev/dev_splits_complete/...)
  output_repeated_splits_test/dia{D}_utt{U}.mp4"""

SPLITS = {"train": "train", "dev": "val", "test": "test"}
MEDIA_DIRS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
CLASSES = ("anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise")
TO_KEMDY20 = {"anger": "angry", "disgust": "disgust", "fear": "fear", "joy": "happy", "neutral": "neutral",
              "sadness": "sad", "surprise": "surprise"}
SENTIMENT = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}
COLUMNS = ("Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
           "Season", "Episode", "StartTime", "EndTime")


@dataclass
class Config:
    name: str = "meld"
    #: folder with the three *_sent_emo.csv files
    root: str = "data/MELD"
    corpus: str = "meld"
    #: meld: MELD's emotion names; kemdy20: angry/disgust/fear/happy/neutral/sad/surprise
    label_names: Literal["meld", "kemdy20"] = "meld"
    #: repair mojibake / C1 control characters in Utterance and Speaker
    repair_text: bool = True
    #: folder with the release's per-split media folders (absolute or relative to root); empty = none
    media_root: str = ""
    #: columns an utterance must have, else it is skipped (e.g. [audio])
    require: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        bad = [c for c in self.require if c not in ("audio", "text", "video")]
        if bad:
            raise ValueError(f"require: unknown column(s) {bad}; choose from ['audio', 'text', 'video']")


# --------------------------------------------------------------------------------------
# text repair
# --------------------------------------------------------------------------------------
_MOJIBAKE = re.compile("[\u0080-\u009f]|â€|Ã[\u0080-\u00bf]|Â[\u0080-\u00bf]")



def protocol(config: "Config") -> Protocol:
    """MELD's standard train/dev/test split is NOT speaker-independent (the six main characters
    speak in every split): the protocol card says so instead of refusing the run."""
    return Protocol("standard (train/dev/test)", "speaker", False)

def _cp1252_bytes(text: str) -> bytes | None:
    """The bytes a cp1252/Latin-1 reader turned into ``text`` (None if impossible)."""
    out = bytearray()
    for ch in text:
        try:
            out += ch.encode("cp1252")
        except UnicodeEncodeError:
            if ord(ch) < 256:  # the five bytes cp1252 leaves undefined read as C1 controls
                out.append(ord(ch))
            else:
                return None
    return bytes(out)


def repair_mojibake(text: str) -> str:
    """Undo one round of "UTF-8 read as cp1252" and stray C1 controls; other text unchanged."""
    if not _MOJIBAKE.search(text):
        return text
    raw = _cp1252_bytes(text)
    if raw is not None:
        try:
            fixed = raw.decode("utf-8")
            if fixed != text:
                return fixed
        except UnicodeDecodeError:
            pass  # not double-encoded UTF-8: fall through to the C1 mapping
    return re.sub("[\u0080-\u009f]", lambda m: bytes([ord(m.group())]).decode("cp1252", errors="replace"), text)


# --------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------
def read_split_csv(path: Path) -> tuple[pd.DataFrame, str]:
    """(table of strings, encoding). Header names are checked; errors name the file."""
    raw = path.read_bytes()
    try:
        text, encoding = raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        text, encoding = raw.decode("cp1252", errors="replace"), "cp1252"
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, quoting=csv.QUOTE_MINIMAL)
    except pd.errors.ParserError as exc:
        raise ManifestError(f"{path}: cannot parse as CSV: {exc}") from None
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    return df, encoding


def _media_dir(media_root: Path, split: str) -> Path | None:
    sub = MEDIA_DIRS[split]
    for candidate in (media_root / sub, media_root / split / sub, media_root / split):
        if candidate.is_dir():
            return candidate
    return None


def build(config: Config, progress: bool = True) -> AdapterResult:
    root = Path(config.root).expanduser().resolve()
    require_dir("meld", root, LAYOUT)
    paths = {s: require_file("meld", root / f"{s}_sent_emo.csv", LAYOUT) for s in SPLITS}
    media_root = require_dir("meld", resolve_under(root, config.media_root).resolve(), LAYOUT) if config.media_root else None

    notes: list[str] = []
    skipped: list[Skip] = []
    rows: list[dict] = []
    repaired = 0
    for split, path in paths.items():
        table, encoding = read_split_csv(path)
        if encoding != "utf-8":
            notes.append(f"{path.name}: not valid UTF-8, decoded as cp1252")
        media = _media_dir(media_root, split) if media_root is not None else None
        if media_root is not None and media is None:
            notes.append(f"no media folder for {split} under {media_root} (looked for {MEDIA_DIRS[split]}/): "
                         "its utterances have no audio")
        seen: set[str] = set()
        for rec in table.to_dict("records"):
            dia, utt = rec["Dialogue_ID"].strip(), rec["Utterance_ID"].strip()
            if not (dia.isdigit() and utt.isdigit()):
                skipped.append(Skip(f"{split}_sr{rec['Sr No.'].strip()}", str(path), "malformed dialogue/utterance id"))
                continue
            sid = f"{split}_dia{int(dia)}_utt{int(utt)}"
            if sid in seen:
                skipped.append(Skip(sid, str(path), "duplicate utterance id"))
                continue
            seen.add(sid)
            emotion = rec["Emotion"].strip().lower()
            if emotion not in CLASSES:
                skipped.append(Skip(sid, str(path), "label outside class set"))
                continue
            sentiment = rec["Sentiment"].strip().lower()
            utterance, speaker = rec["Utterance"], rec["Speaker"]
            if config.repair_text:
                fixed_u, fixed_s = repair_mojibake(utterance), repair_mojibake(speaker)
                repaired += (fixed_u != utterance) + (fixed_s != speaker)
                utterance, speaker = fixed_u, fixed_s
            clip = media / f"dia{int(dia)}_utt{int(utt)}.mp4" if media is not None else None
            row = {
                "id": sid,
                "label": TO_KEMDY20[emotion] if config.label_names == "kemdy20" else emotion,
                "group": speaker.strip(),
                "split": SPLITS[split],
                "text": utterance.strip(),
                "sentiment": sentiment,
                "target_sentiment": SENTIMENT.get(sentiment, float("nan")),
                "dialogue": str(int(dia)),
                "utterance": str(int(utt)),
                "season": rec["Season"].strip(),
                "episode": rec["Episode"].strip(),
                "episode_start": rec["StartTime"].strip(),
                "episode_end": rec["EndTime"].strip(),
                "_source": str(path),
            }
            if media_root is not None:
                row["audio"] = str(clip) if clip is not None and clip.is_file() else ""
                row["video"] = row["audio"]  # the same mp4: its audio track and its video track
            rows.append(row)
        notes.append(f"{path.name}: {len(table)} rows")

    rows = apply_require(rows, config.require, "_source", skipped)
    if not rows:
        raise ManifestError(f"{root}: no utterances ({len(skipped)} skipped)")
    df = pd.DataFrame(rows).drop(columns=["_source"])
    notes.append(label_distribution(df))
    unknown = int(df["target_sentiment"].isna().sum())
    if unknown:
        notes.append(f"{unknown} utterance(s) with a sentiment outside negative/neutral/positive (target NaN)")
    train_spk = set(df.loc[df["split"] == "train", "group"])
    test_spk = set(df.loc[df["split"] == "test", "group"])
    shared = train_spk & test_spk
    n_shared = int(df.loc[(df["split"] == "test") & df["group"].isin(shared)].shape[0])
    notes.append(f"official splits are NOT speaker-independent: {len(shared)} speakers appear in train and test "
                 f"({n_shared} of {int((df['split'] == 'test').sum())} test utterances)")
    notes.append(f"text: {repaired} string(s) repaired (mojibake/C1 controls)" if config.repair_text
                 else "text: kept verbatim (repair_text: false)")
    if media_root is not None:
        n = int((df["audio"] == "").sum())
        notes.append(f"media: {len(df) - n} utterances with an mp4, {n} without"
                     + (f" (e.g. {', '.join(df.loc[df['audio'] == '', 'id'].head(3))})" if n else ""))
    return AdapterResult(manifest=Manifest(df, source=str(root)), skipped=skipped, notes=notes)
