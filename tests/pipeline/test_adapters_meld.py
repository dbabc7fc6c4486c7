"""MELD adapter (fixture in the release's CSV format + the real CSVs) and PyAV audio decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit.corpora import MELD_HEADER, write_meld, write_meld_media, write_mp4
from mer.features.base import SampleError
from mer.pipeline.adapters import LayoutError, build_manifest
from mer.pipeline.adapters.meld import Config, repair_mojibake
from mer.pipeline.manifest import validate
from kit.paths import REPO, SHARED_DATA

REAL = SHARED_DATA / "meld-text"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("meld")
    write_meld(root / "MELD")
    return root


@pytest.fixture(scope="module")
def media(corpus) -> Path:
    pytest.importorskip("av", reason="PyAV (mer[video]) writes the mp4 fixture")
    write_meld_media(corpus / "MELD.Raw")
    return corpus / "MELD.Raw"


def build(root, **kw):
    return build_manifest(Config(root=str(root), **kw))


def test_rows_labels_and_skips(corpus):
    result = build(corpus / "MELD")
    df = result.manifest.df.set_index("id")
    assert len(df) == 11
    assert sorted((s.id, s.reason) for s in result.skipped) == [
        ("train_dia2_utt1", "duplicate utterance id"), ("train_dia2_utt1", "label outside class set")]
    assert df.loc["train_dia1_utt0", "text"] == "Oh my God, he’s lost it. He’s totally lost it."  # quoted, commas
    assert df.loc["train_dia1_utt0", "label"] == "sadness" and df.loc["train_dia1_utt0", "target_sentiment"] == -1.0
    assert df.loc["train_dia2_utt0", "text"] == "Nestlé Toll House?"
    assert df.loc["train_dia1_utt2", "group"] == "Richard’s Date"
    assert df.loc["train_dia1_utt2", "episode_end"] == "0:19:08,781"
    assert df.loc["dev_dia0_utt1", "split"] == "val" and df.loc["test_dia0_utt0", "split"] == "test"
    assert df.loc["dev_dia0_utt1", "text"] == "“Good-bye Phoebe and Ursula.” You just wrote this!"
    assert "audio" not in df.columns and "start" not in df.columns
    assert any("NOT speaker-independent" in n for n in result.notes)
    validate(result.manifest.df, "meld", check_files=True)


def test_mojibake_repair(corpus):
    df = build(corpus / "MELD").manifest.df.set_index("id")
    assert df.loc["train_dia1_utt1", "text"] == "I don’t know what you’re talking about."
    assert df.loc["train_dia1_utt2", "text"] == "Well I’m not sure."
    raw = build(corpus / "MELD", repair_text=False).manifest.df.set_index("id")
    assert raw.loc["train_dia1_utt1", "text"] == "I donâ€™t know what youâ€™re talking about."
    assert repair_mojibake("Ã©tÃ©") == "été"
    assert repair_mojibake("café — “fine”…") == "café — “fine”…"  # correct text is never touched
    assert repair_mojibake("a\x85b\x97c") == "a…b—c"


def test_cp1252_file(tmp_path):
    root = tmp_path / "old"
    write_meld(root)
    line = '1,I\x92m fine.,Joey,joy,positive,0,0,1,1,"00:00:01,000","00:00:02,000"'
    (root / "dev_sent_emo.csv").write_bytes((MELD_HEADER + "\r\n" + line + "\r\n").encode("latin-1"))
    result = build(root)
    assert result.manifest.df.set_index("id").loc["dev_dia0_utt0", "text"] == "I’m fine."
    assert any("decoded as cp1252" in n for n in result.notes)


def test_label_names_kemdy20(corpus):
    df = build(corpus / "MELD", label_names="kemdy20").manifest.df
    assert set(df["label"]) == {"angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"} - {"disgust"}


def test_media(corpus, media):
    result = build(corpus / "MELD", media_root=str(media))
    df = result.manifest.df.set_index("id")
    assert df.loc["train_dia0_utt0", "audio"].endswith("MELD.Raw/train/train_splits/dia0_utt0.mp4")
    assert df.loc["dev_dia0_utt1", "audio"].endswith("MELD.Raw/dev_splits_complete/dia0_utt1.mp4")
    assert df.loc["test_dia1_utt0", "audio"] == ""  # the clip the release lacks: text kept
    assert any("10 utterances with an mp4, 1 without" in n for n in result.notes)
    req = build(corpus / "MELD", media_root=str(media), require=["audio"])
    assert [s.reason for s in req.skipped if s.id == "test_dia1_utt0"] == ["missing audio"]


def test_decode_av_mp4(tmp_path):
    pytest.importorskip("av")
    from mer.features.av_audio import av_duration, decode_av

    sr = 48000
    t = np.arange(int(6.5 * sr)) / sr
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = write_mp4(tmp_path / "dia0_utt0.mp4", np.stack([tone, tone]), sr)
    assert av_duration(path) == pytest.approx(6.5, abs=0.03)
    full = decode_av(path, sr)
    assert abs(len(full) - len(tone)) <= 1024  # AAC frames are 1024 samples
    # lossy codec: close to the source sine, and not time-shifted
    assert np.abs(full[4800:-4800] - tone[4800:len(full) - 4800]).max() < 0.05
    # a window past SEEK_MIN_S is decoded after a seek; it equals the slice of the full decode
    window = decode_av(path, sr, 5.5, 6.0)
    np.testing.assert_array_equal(window, full[int(5.5 * sr):int(6.0 * sr)])
    low = decode_av(path, 16000, 1.0, 2.0)
    assert len(low) == 16000
    spectrum = np.abs(np.fft.rfft(low))
    assert np.argmax(spectrum) * 16000 / len(low) == pytest.approx(440, abs=2)
    with pytest.raises(SampleError, match="past the end"):
        decode_av(path, sr, 1.0, 9.0)
    with pytest.raises(SampleError, match="not found"):
        decode_av(tmp_path / "none.mp4", sr)
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(SampleError, match="cannot open"):
        decode_av(tmp_path / "junk.mp4", sr)


def test_layout_errors(tmp_path, corpus):
    with pytest.raises(LayoutError) as err:
        build(tmp_path / "none")
    assert err.value.missing == str(tmp_path / "none")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "train_sent_emo.csv").write_text(MELD_HEADER + "\n")
    with pytest.raises(LayoutError) as err:
        build(tmp_path / "m")
    assert err.value.missing == str(tmp_path / "m" / "dev_sent_emo.csv") and "test_sent_emo.csv" in str(err.value)
    with pytest.raises(LayoutError):
        build(corpus / "MELD", media_root="no_media_here")


@pytest.mark.realdata
@pytest.mark.skipif(not REAL.is_dir(), reason="shared/data/meld-text not present")
def test_real_csvs():
    result = build(REAL)
    df = result.manifest.df
    counts = {s: len(pd.read_csv(REAL / f"{s}_sent_emo.csv", dtype=str, keep_default_na=False))
              for s in ("train", "dev", "test")}
    assert counts == {"train": 9989, "dev": 1109, "test": 2610}
    assert not result.skipped  # the release has no duplicate ids or unknown labels
    assert df["split"].value_counts().to_dict() == {"train": 9989, "test": 2610, "val": 1109}
    assert set(df["label"]) == {"anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"}
    assert set(df["target_sentiment"]) == {-1.0, 0.0, 1.0}
    assert df["id"].is_unique
    first = df.set_index("id").loc["train_dia0_utt0"]
    assert first["text"] == "also I was the point person on my company’s transition from the KL-5 to GR-6 system."
    assert first["group"] == "Chandler"
    assert any("0 string(s) repaired" in n for n in result.notes)


@pytest.mark.realdata
@pytest.mark.skipif(not REAL.is_dir(), reason="shared/data/meld-text not present")
def test_cli_manifest_real(tmp_path):
    from click.testing import CliRunner

    from mer.cli import cli

    config = REPO / "configs" / "meld.yaml"
    res = CliRunner().invoke(cli, ["manifest", "-c", str(config), "--set", f"dataset.root={REAL}",
                                   "--out", str(tmp_path / "manifest.csv")])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "13708 samples" in res.output and "skipped: none" in res.output
