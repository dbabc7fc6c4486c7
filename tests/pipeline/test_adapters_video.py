"""Adapters that read video: RAVDESS MP4 pairing by the six code fields, CREMA-D, MELD and MOSEI
``video`` columns, and the generic adapter's ``video`` path column. Real clips of
``shared/data/face-video`` are linked (never copied) into temporary layouts when present."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from kit.corpora import ravdess_name, write_mp4, write_wav
from mer.pipeline.adapters import build_manifest
from mer.pipeline.adapters.cremad import Config as CremaConfig
from mer.pipeline.adapters.cremad import fold_of, name_problem, protocol_actors
from mer.pipeline.adapters.ravdess import Config as RavdessConfig
from mer.pipeline.manifest import PATH_COLUMNS, validate

FACE_VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "face-video"
TONE = (0.1 * np.sin(np.linspace(0, 200, 4800))).astype(np.float32)[None]


def test_video_is_a_manifest_path_column():
    assert "video" in PATH_COLUMNS


def test_ravdess_pairs_audio_and_video_by_the_six_code_fields(tmp_path):
    root = tmp_path / "ravdess"
    a1 = root / "Actor_01"
    # clip A: audio-only wav + full-AV mp4 + video-only mp4 -> audio = wav, video = the 01 mp4
    write_wav(a1 / f"{ravdess_name(3, 1, 5, 2, 2, 1, 1)}.wav", seconds=0.1, sr=48000)
    write_mp4(a1 / f"{ravdess_name(1, 1, 5, 2, 2, 1, 1)}.mp4", TONE)
    write_mp4(a1 / f"{ravdess_name(2, 1, 5, 2, 2, 1, 1)}.mp4", TONE)
    # clip B: only a full-AV mp4 -> a sample whose audio is the mp4's track, id = its code
    write_mp4(a1 / f"{ravdess_name(1, 1, 3, 1, 1, 2, 1)}.mp4", TONE)
    # clip C: wav + video-only mp4 in a separate video_root (per actor)
    write_wav(root / "Actor_02" / f"{ravdess_name(3, 1, 4, 1, 2, 1, 2)}.wav", seconds=0.1, sr=48000)
    write_mp4(tmp_path / "videos" / "Actor_02" / f"{ravdess_name(2, 1, 4, 1, 2, 1, 2)}.mp4", TONE)
    # clip D: a video-only mp4 with no audio anywhere -> skipped
    write_mp4(a1 / f"{ravdess_name(2, 1, 6, 1, 1, 1, 1)}.mp4", TONE)
    # clip E: wav only -> no video
    write_wav(a1 / f"{ravdess_name(3, 1, 1, 1, 1, 1, 1)}.wav", seconds=0.1, sr=48000)
    result = build_manifest(RavdessConfig(root=str(root), video_root=str(tmp_path / "videos"), protocol="custom",
                                          test_actors=[2]))
    df = result.manifest.df.set_index("id")
    a, b = ravdess_name(3, 1, 5, 2, 2, 1, 1), ravdess_name(1, 1, 3, 1, 1, 2, 1)
    c, e = ravdess_name(3, 1, 4, 1, 2, 1, 2), ravdess_name(3, 1, 1, 1, 1, 1, 1)
    assert sorted(df.index) == sorted([a, b, c, e])
    assert Path(df.loc[a, "audio"]).suffix == ".wav" and Path(df.loc[a, "video"]).name == ravdess_name(1, 1, 5, 2, 2, 1, 1) + ".mp4"
    assert df.loc[b, "audio"] == df.loc[b, "video"] and df.loc[b, "label"] == "happy" and df.loc[b, "repetition"] == "2"
    assert Path(df.loc[c, "video"]).name == ravdess_name(2, 1, 4, 1, 2, 1, 2) + ".mp4" and df.loc[c, "split"] == "test"
    assert df.loc[e, "video"] == ""
    assert [(s.id, s.reason.split(" (")[0]) for s in result.skipped] == [(ravdess_name(2, 1, 6, 1, 1, 1, 1), "no audio")]
    assert any("video: 3 clips paired with an MP4, 1 without; 1 clips take their audio" in n for n in result.notes)
    validate(result.manifest.df, "ravdess", check_files=True)


@pytest.mark.realdata
@pytest.mark.skipif(not FACE_VIDEO.is_dir(), reason="shared/data/face-video not present")
def test_ravdess_real_full_av_clip(tmp_path):
    """The real RAVDESS full-AV clip, linked under its RAVDESS code: the sample takes audio and video from it."""
    from mer.features.audio_io import load_audio
    from mer.features.video_io import video_info

    code = "01-01-07-02-02-01-01"
    folder = tmp_path / "Actor_01"
    folder.mkdir()
    (folder / f"{code}.mp4").symlink_to(FACE_VIDEO / f"{code}_1.mp4")
    write_wav(folder / "03-01-07-02-02-01-01.wav", seconds=0.1, sr=48000)
    both = build_manifest(RavdessConfig(root=str(tmp_path), protocol="custom", test_actors=[1])).manifest.df
    assert both["id"].tolist() == ["03-01-07-02-02-01-01"] and both["video"].iloc[0].endswith(f"{code}.mp4")
    (folder / "03-01-07-02-02-01-01.wav").unlink()
    row = build_manifest(RavdessConfig(root=str(tmp_path), protocol="custom", test_actors=[1])).manifest.df.iloc[0]
    assert row["id"] == code and row["label"] == "disgust" and row["audio"] == row["video"]
    audio = load_audio(row["audio"], 16000)
    assert abs(len(audio) / 16000 - video_info(row["video"]).duration) < 0.1


CREMA_NAMES = [f"1001_DFA_{e}_XX" for e in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")]


def crema_layout(root: Path, source: Path | None) -> None:
    """The release layout: AudioWAV/*.wav + VideoFlash/*.flv (real FLVs linked when present)."""
    for k, name in enumerate(CREMA_NAMES):
        if k < 5:
            write_wav(root / "AudioWAV" / f"{name}.wav", seconds=0.1, sr=16000)
        flv = root / "VideoFlash" / f"{name}.flv"
        flv.parent.mkdir(parents=True, exist_ok=True)
        if source is not None:
            flv.symlink_to(source / f"{name}.flv")
        else:
            write_mp4(flv.with_suffix(".mp4"), TONE)
            flv.with_suffix(".mp4").rename(flv)
    write_wav(root / "AudioWAV" / "1092_DFA_ANG_XX.wav", seconds=0.1, sr=16000)  # no such actor
    write_wav(root / "AudioWAV" / "1002_IEO_HAP_HI.wav", seconds=0.1, sr=16000)  # audio only
    (root / "VideoDemographics.csv").write_text("ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n")


@pytest.mark.parametrize("real", [False, True])
def test_cremad_adapter_on_the_release_names(tmp_path, real):
    if real and not FACE_VIDEO.is_dir():
        pytest.skip("shared/data/face-video not present")
    crema_layout(tmp_path, FACE_VIDEO if real else None)
    result = build_manifest(CremaConfig(root=str(tmp_path)))
    df = result.manifest.df.set_index("id")
    assert sorted(df.index) == sorted(CREMA_NAMES + ["1002_IEO_HAP_HI"])
    assert [df.loc[n, "label"] for n in CREMA_NAMES] == ["angry", "disgust", "fearful", "happy", "neutral", "sad"]
    first = df.loc["1001_DFA_ANG_XX"]
    assert first["text"] == "Don't forget a jacket" and first["group"] == "1001" and first["sex"] == "male"
    assert first["audio"].endswith("AudioWAV/1001_DFA_ANG_XX.wav") and first["video"].endswith("VideoFlash/1001_DFA_ANG_XX.flv")
    assert df.loc["1001_DFA_SAD_XX", "audio"] == df.loc["1001_DFA_SAD_XX", "video"]  # no wav: the FLV's audio
    assert df.loc["1002_IEO_HAP_HI", "video"] == "" and df.loc["1002_IEO_HAP_HI", "target_intensity"] == 3.0
    assert math.isnan(first["target_intensity"]) and first["level"] == "XX"
    assert [s.reason for s in result.skipped] == ["unknown actor (CREMA-D actors are 1001..1091)"]
    # fold1: actors 1001, 1006, ... test; fold2 (1002, ...) validation
    assert first["split"] == "test" and df.loc["1002_IEO_HAP_HI", "split"] == "val"
    assert first["fold_5"] == "val" and first["fold_3"] == "train"
    validate(result.manifest.df, "cremad", check_files=True)
    if real:
        from mer.features.audio_io import load_audio

        assert len(load_audio(df.loc["1001_DFA_SAD_XX", "audio"], 16000)) > 16000  # MP3 track of the FLV, ~2 s


def test_cremad_folds_are_speaker_independent_and_cover_every_actor():
    config = CremaConfig()
    tests = [protocol_actors(f"fold{k}", config)[0] for k in range(1, 6)]
    assert sum(len(t) for t in tests) == 91 and len(set().union(*tests)) == 91
    test, val = protocol_actors("fold5", config)
    assert fold_of(1005, 5) == 5 and 1005 in test and 1001 in val and not test & val
    assert name_problem("1001_DFA_ANG_XX") == "" and name_problem("1001_XYZ_ANG_XX") == "unknown sentence code"
    assert name_problem("1001-DFA-ANG-XX") == "file name is not AAAA_SSS_EEE_LL"
    with pytest.raises(ValueError, match="fold must be 1..5"):
        CremaConfig(protocol="fold6")


def test_meld_video_column_is_the_utterance_mp4(tmp_path):
    from kit.corpora import write_meld
    from mer.pipeline.adapters.meld import Config as MeldConfig

    write_meld(tmp_path / "meld", media=tmp_path / "media")
    df = build_manifest(MeldConfig(root=str(tmp_path / "meld"), media_root=str(tmp_path / "media"))).manifest.df
    with_media = df[df["audio"] != ""]
    assert len(with_media) and (with_media["video"] == with_media["audio"]).all()
    assert all(Path(p).name.startswith("dia") and p.endswith(".mp4") for p in with_media["video"])
    assert (df.loc[df["audio"] == "", "video"] == "").all()


def test_generic_adapter_resolves_video_paths(tmp_path):
    from mer.pipeline.adapters.generic import Config as GenericConfig

    write_mp4(tmp_path / "clips" / "a.mp4", TONE)
    (tmp_path / "m.csv").write_text("id,label,group,split,video,start,end\na,happy,s1,train,clips/a.mp4,0.0,0.05\n")
    df = build_manifest(GenericConfig(manifest=str(tmp_path / "m.csv"))).manifest.df
    assert df.loc[0, "video"] == str(tmp_path / "clips" / "a.mp4")


def test_mosei_raw_video_windows(tmp_path):
    from kit.corpora import MOSEI_LABELS, write_mosei
    from mer.pipeline.adapters.mosei import Config as MoseiConfig

    root = write_mosei(tmp_path / "mosei")
    videos = sorted(MOSEI_LABELS)
    write_mp4(root / "Raw" / "Videos" / "Full" / "Combined" / f"{videos[0]}.mp4", TONE)
    result = build_manifest(MoseiConfig(root=str(root), video_root="Raw/Videos/Full/Combined"))
    df = result.manifest.df
    mine = df["video_id"] == videos[0]
    assert mine.any() and (df.loc[mine, "video"].str.endswith(f"{videos[0]}.mp4")).all()
    assert (df.loc[~mine, "video"] == "").all() and (df["end"] > df["start"]).all()
    assert any(n.startswith(f"video: {int(mine.sum())} intervals with a raw <video>.mp4") for n in result.notes)
