"""The synthetic demo corpus: deterministic, well-formed, and informative in every modality.

The E4 parser here is written from the documented KEMDy20 format (docs/datasets.md), not
from the generator, so a format drift in either shows up as a failure.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from scipy import stats

from mer.pipeline.adapters.generic import load_generic
from mer.pipeline.demo_corpus import generate

EMOTIONS = {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"}
HIGH_AROUSAL = {"angry", "fear", "happy", "surprise"}
LOW_AROUSAL = {"sad", "neutral"}
SIZE = 200

DATETIME = r"\d{4}-\d{4}-\d{4}-\d{2}-\d{3}"
E4_HEADER = re.compile(rf"^(\d+\.\d+),({DATETIME})$")
E4_ROW = re.compile(rf"^(-?\d+\.\d+),({DATETIME})(?:,([A-Za-z0-9_]+))?$")
IBI_HEADER = re.compile(rf"^(\d+\.\d+),IBI,({DATETIME})$")
IBI_ROW = re.compile(rf"^(\d+\.\d+),(\d+\.\d+),({DATETIME})(?:,([A-Za-z0-9_]+))?$")


# ------------------------------------------------------------------ fixtures
def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("demo") / "corpus"
    path = generate(root, size=SIZE, seed=0)
    assert path == root / "corpus.csv"
    return root


@pytest.fixture(scope="module")
def raw(corpus) -> pd.DataFrame:
    return pd.read_csv(corpus / "corpus.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def manifest(corpus):
    return load_generic(corpus / "corpus.csv")


def _parse_datetime(text: str) -> datetime:
    """``YYYY-MMDD-HHMM-SS-mmm`` (read as UTC)."""
    base = datetime.strptime(text[:-4], "%Y-%m%d-%H%M-%S").replace(tzinfo=timezone.utc)
    return base + timedelta(milliseconds=int(text[-3:]))


def _utc(unix: float) -> datetime:
    return datetime.fromtimestamp(0, tz=timezone.utc) + timedelta(milliseconds=round(unix * 1000))


def parse_e4_signal(path: Path) -> pd.DataFrame:
    """Strict reader of a KEMDy20 EDA/TEMP file: one row per 4 Hz sample with its unix time."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = E4_HEADER.match(lines[0])
    assert header, f"{path}: bad line 1 {lines[0]!r}"
    start = float(header.group(1))
    assert _parse_datetime(header.group(2)) == _utc(start), f"{path}: start datetime != start unix time"
    assert lines[1] == "4.000000,hz", f"{path}: bad line 2 {lines[1]!r}"
    values, tags = [], []
    for i, line in enumerate(lines[2:]):
        row = E4_ROW.match(line)
        assert row, f"{path}: bad row {i + 3}: {line!r}"
        assert _parse_datetime(row.group(2)) == _utc(start) + timedelta(milliseconds=250 * i), \
            f"{path}: row {i + 3} datetime is not start + {i} / 4 s"
        values.append(float(row.group(1)))
        tags.append(row.group(3) or "")
    return pd.DataFrame({"time": start + np.arange(len(values)) / 4.0, "value": values, "tag": tags})


def parse_ibi(path: Path) -> pd.DataFrame:
    """Strict reader of a KEMDy20 IBI file: beat time (unix), interval (s), tag."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = IBI_HEADER.match(lines[0])
    assert header, f"{path}: bad line 1 {lines[0]!r}"
    start = float(header.group(1))
    assert _parse_datetime(header.group(2)) == _utc(start)
    rows = []
    for i, line in enumerate(lines[1:]):
        row = IBI_ROW.match(line)
        assert row, f"{path}: bad row {i + 2}: {line!r}"
        offset = float(row.group(1))
        stamp = _parse_datetime(row.group(3))
        assert abs((stamp - _utc(start + offset)).total_seconds()) <= 0.001, f"{path}: row {i + 2} datetime != time"
        rows.append((start + offset, float(row.group(2)), row.group(4) or ""))
    df = pd.DataFrame(rows, columns=["time", "ibi", "tag"])
    assert df["time"].is_monotonic_increasing, f"{path}: beat times go backwards"
    return df


@pytest.fixture(scope="module")
def bio(corpus, raw) -> dict[str, pd.DataFrame]:
    """All E4 rows of all speakers, by signal, with the speaker as a column."""
    out = {}
    for signal, parser in (("EDA", parse_e4_signal), ("TEMP", parse_e4_signal), ("IBI", parse_ibi)):
        frames = []
        for speaker in sorted(raw["group"].unique()):
            frame = parser(corpus / signal / f"{speaker}.csv")
            frame["speaker"] = speaker
            frames.append(frame)
        out[signal] = pd.concat(frames, ignore_index=True)
    return out


# ------------------------------------------------------------- determinism
def test_same_seed_gives_byte_identical_files(corpus, tmp_path):
    again = tmp_path / "again"
    generate(again, size=SIZE, seed=0)
    first, second = _hashes(corpus), _hashes(again)
    assert len(first) > SIZE  # every wav, three bio files per speaker, corpus.csv
    assert "corpus.csv" in first
    assert first == second


def test_another_seed_gives_different_files(corpus, tmp_path):
    other = tmp_path / "other"
    generate(other, size=SIZE, seed=1)
    first, second = _hashes(corpus), _hashes(other)
    assert first["corpus.csv"] != second["corpus.csv"]
    common = set(first) & set(second)
    same = [name for name in common if first[name] == second[name]]
    assert len(common) > 0 and not same


def test_regenerating_replaces_the_old_corpus(tmp_path):
    root = tmp_path / "corpus"
    generate(root, size=SIZE, seed=0)
    generate(root, size=120, seed=3)
    df = pd.read_csv(root / "corpus.csv", dtype=str, keep_default_na=False)
    assert len(df) == 120
    assert sorted(str(p.relative_to(root)) for p in root.glob("wav/*/*.wav")) == sorted(df["audio"])


def test_refuses_bad_arguments_and_foreign_folders(tmp_path):
    with pytest.raises(ValueError, match="too small"):
        generate(tmp_path / "tiny", size=30)
    with pytest.raises(ValueError, match="seed"):
        generate(tmp_path / "neg", size=SIZE, seed=-1)
    foreign = tmp_path / "foreign"
    (foreign / "wav").mkdir(parents=True)
    (foreign / "wav" / "keep.txt").write_text("not ours")
    with pytest.raises(FileExistsError, match="not a demo corpus"):
        generate(foreign, size=SIZE)
    assert (foreign / "wav" / "keep.txt").read_text() == "not ours"


# ---------------------------------------------------------------- manifest
def test_manifest_loads_and_has_the_documented_shape(manifest, raw):
    df = manifest.df
    assert len(df) == SIZE
    assert df["id"].is_unique
    assert set(df["label"]) == EMOTIONS
    assert df["group"].nunique() >= 10
    counts = df["label"].value_counts()
    assert counts.idxmax() == "neutral"
    assert 0.30 <= counts["neutral"] / len(df) <= 0.45
    assert (df["bio_format"] == "kemdy20").all()
    assert (df["bio_tag"] == df["id"]).all()
    assert (df["bio_end"] > df["bio_start"]).all()
    for column in ("target_arousal", "target_valence"):
        assert df[column].between(1.0, 5.0).all()
    # high-arousal classes are rated more aroused, happy more pleasant than sad
    means = df.groupby("label")[["target_arousal", "target_valence"]].mean()
    assert means.loc["angry", "target_arousal"] > means.loc["neutral", "target_arousal"] > means.loc["sad", "target_arousal"]
    assert means.loc["happy", "target_valence"] > means.loc["neutral", "target_valence"] > means.loc["sad", "target_valence"]
    # text is the string itself; files are written relative to the corpus folder
    assert raw["text"].str.len().gt(10).all() and not raw["text"].str.endswith(".txt").any()
    for column in ("audio", "eda", "temp", "ibi"):
        paths = raw[column][raw[column] != ""]
        assert not paths.map(lambda p: Path(p).is_absolute()).any()
        folders = paths.str.split("/").str[1].str.removesuffix(".csv")
        assert (folders == raw.loc[paths.index, "group"]).all(), f"{column}: file not in its speaker's place"
    assert manifest.has("eda").all() and manifest.has("audio").all()
    missing_ibi = 1 - manifest.has("ibi").mean()
    assert 0.08 <= missing_ibi <= 0.35


def test_splits_are_speaker_independent_and_hold_every_class(manifest):
    df = manifest.df
    assert set(df["split"]) == {"train", "val", "test"}
    speakers = {split: set(part["group"]) for split, part in df.groupby("split")}
    assert not speakers["train"] & speakers["val"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["val"] & speakers["test"]
    for split, part in df.groupby("split"):
        assert set(part["label"]) == EMOTIONS, split


# --------------------------------------------------------------- bio files
def _windows_ms(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"start": (df["bio_start"] * 1000).round().astype(np.int64).to_numpy(),
                         "end": (df["bio_end"] * 1000).round().astype(np.int64).to_numpy()}, index=df["id"].to_numpy())


@pytest.mark.parametrize("signal", ["EDA", "TEMP"])
def test_e4_signal_tags_cover_exactly_each_utterance(signal, bio, manifest):
    rows, df = bio[signal], manifest.df
    windows, speaker_of = _windows_ms(df), df.set_index("id")["group"]
    tagged = rows[rows["tag"] != ""]
    assert set(tagged["tag"]) <= set(df["id"]), "a tag that is not a manifest id"
    assert set(tagged["tag"]) == set(df["id"]), "an utterance without tagged rows"
    assert (tagged["speaker"] == speaker_of[tagged["tag"]].to_numpy()).all(), "tag in another speaker's file"
    times_ms = (rows["time"] * 1000).round().astype(np.int64)
    for sample_id, window in windows.iterrows():
        own = rows["speaker"] == speaker_of[sample_id]
        inside = own & (times_ms >= window["start"]) & (times_ms < window["end"])
        assert (rows.loc[inside, "tag"] == sample_id).all() and ((rows["tag"] == sample_id) == inside).all(), sample_id
    if signal == "EDA":
        assert rows["value"].between(0.05, 20.0).all(), "EDA outside a plausible µS range"
    else:
        assert rows["value"].between(28.0, 37.0).all(), "skin temperature outside a plausible range"


def test_ibi_rows_match_the_manifest(bio, manifest):
    rows, df = bio["IBI"], manifest.df
    windows, speaker_of = _windows_ms(df), df.set_index("id")["group"]
    assert rows["ibi"].between(60 / 115, 60 / 50).all(), "heart rate outside 50-115 bpm"
    tagged = rows[rows["tag"] != ""]
    assert set(tagged["tag"]) <= set(df["id"])
    with_ibi = set(df.loc[manifest.has("ibi"), "id"])
    assert set(tagged["tag"]) == with_ibi, "IBI rows must exist exactly for the ids whose ibi cell is filled"
    for sample_id, beats in tagged.groupby("tag"):
        window = windows.loc[sample_id]
        ms = beats["time"] * 1000
        assert (beats["speaker"] == speaker_of[sample_id]).all()
        assert ((ms >= window["start"] - 1) & (ms < window["end"] + 1)).all(), sample_id


def test_audio_is_16k_mono_pcm16_of_one_to_four_seconds(corpus, raw):
    for _, row in raw.iterrows():
        info = sf.info(corpus / row["audio"])
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        assert 1.0 <= info.duration <= 4.0
        window = float(row["bio_end"]) - float(row["bio_start"])
        assert abs(info.duration - window) < 0.002, "bio window and audio length disagree"


# ------------------------------------------------------------ informativeness
def _crude_pitch_hz(x: np.ndarray, sr: int = 16000) -> float:
    """Median autocorrelation pitch over the loud 40 ms frames."""
    frame, hop = 640, 320
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    energy = (frames ** 2).mean(axis=1)
    frames = frames[energy > 0.3 * energy.max()]
    spec = np.fft.rfft(frames - frames.mean(axis=1, keepdims=True), 2 * frame)
    ac = np.fft.irfft(np.abs(spec) ** 2)[:, :frame]
    lo, hi = sr // 400, sr // 70
    return float(np.median(sr / (lo + np.argmax(ac[:, lo:hi], axis=1))))


def _arousal_groups(df: pd.DataFrame, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    labels = df.set_index("id")["label"].reindex(values.index)
    return values[labels.isin(HIGH_AROUSAL)].to_numpy(), values[labels.isin(LOW_AROUSAL)].to_numpy()


def _centred(values: pd.Series, df: pd.DataFrame) -> pd.Series:
    """Subtract each speaker's median: the crudest speaker normalisation."""
    speaker = df.set_index("id")["group"].reindex(values.index)
    return values - values.groupby(speaker).transform("median")


def test_audio_energy_and_pitch_follow_arousal(corpus, raw):
    rms_db, pitch_st = {}, {}
    for _, row in raw.iterrows():
        x, sr = sf.read(corpus / row["audio"])
        rms_db[row["id"]] = 10 * np.log10(np.mean(x ** 2))
        pitch_st[row["id"]] = 12 * np.log2(_crude_pitch_hz(x, sr))
    high, low = _arousal_groups(raw, pd.Series(rms_db))
    assert stats.mannwhitneyu(high, low, alternative="greater").pvalue < 0.01
    high, low = _arousal_groups(raw, _centred(pd.Series(pitch_st), raw))
    assert stats.mannwhitneyu(high, low, alternative="greater").pvalue < 0.01
    assert np.median(high) - np.median(low) > 1.0  # semitones


def test_biosignals_follow_arousal(bio, raw):
    ibi = bio["IBI"][bio["IBI"]["tag"] != ""]
    heart_rate = (60.0 / ibi["ibi"]).groupby(ibi["tag"]).mean()
    high, low = _arousal_groups(raw, _centred(heart_rate, raw))
    assert stats.mannwhitneyu(high, low, alternative="greater").pvalue < 0.01

    eda = bio["EDA"][bio["EDA"]["tag"] != ""]
    slope = eda.groupby("tag").apply(lambda g: np.polyfit(g["time"], g["value"], 1)[0], include_groups=False)
    high, low = _arousal_groups(raw, slope)
    assert stats.mannwhitneyu(high, low, alternative="greater").pvalue < 0.01

    temp = bio["TEMP"][bio["TEMP"]["tag"] != ""]
    drift = temp.groupby("tag")["value"].agg(lambda v: v.iloc[-1] - v.iloc[0])
    high, low = _arousal_groups(raw, drift)
    assert stats.mannwhitneyu(high, low, alternative="less").pvalue < 0.01  # vasoconstriction cools the skin


CUE_WORDS = {
    "angry": r"angry|furious|ridiculous|unacceptable|\bmad\b|scream|how dare|sick and tired",
    "disgust": r"disgusting|gross|revolting|nasty|repulsive|yuck|throw up|filthy",
    "fear": r"scared|terrified|nervous|afraid|frightening|worried|pounding",
    "happy": r"happy|wonderful|\blove\b|great time|glad|fantastic|smiling|made my day",
    "sad": r"\bsad\b|miss them|breaks my heart|cried|lonely|depressing|empty",
    "surprise": r"\bwow\b|no way|can't believe|surprise|nowhere|shocked|unexpected|never saw",
}


@pytest.mark.parametrize("emotion", sorted(CUE_WORDS))
def test_text_cue_words_occur_mostly_in_their_own_emotion(emotion, raw):
    has_cue = raw["text"].str.lower().str.contains(CUE_WORDS[emotion])
    own = raw["label"] == emotion
    table = [[int((has_cue & own).sum()), int((~has_cue & own).sum())],
             [int((has_cue & ~own).sum()), int((~has_cue & ~own).sum())]]
    assert stats.fisher_exact(table, alternative="greater").pvalue < 0.01, table
    # ... but not always: text alone must not be enough
    assert has_cue[own].mean() < 0.9
    assert (~raw["text"].str.lower().str.contains("|".join(CUE_WORDS.values()))).mean() > 0.35
