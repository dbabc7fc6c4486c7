"""RAVDESS adapter: file-name parsing, protocols, landmarks; the real 240-clip subset."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from kit.corpora import ravdess_name, write_ravdess
from mer.pipeline.adapters import LayoutError, build_manifest
from mer.pipeline.adapters._common import overlap_groups
from mer.pipeline.adapters.ravdess import Config, protocol_actors
from mer.pipeline.manifest import validate
from kit.paths import REPO, SHARED_DATA

REAL = SHARED_DATA / "ravdess-speech-subset"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("ravdess")
    info = write_ravdess(base / "ravdess", landmarks=base / "landmarks")
    return base, info


def build(root, **kw):
    return build_manifest(Config(root=str(root), **kw))


def test_speech_rows_labels_and_skips(corpus):
    base, info = corpus
    result = build(base / "ravdess")
    df = result.manifest.df.set_index("id")
    assert len(df) == 48 + 2  # base clips + calm + stereo; song excluded
    reasons = sorted(s.reason for s in result.skipped)
    assert reasons == sorted([
        "song excluded by channel option", "invalid emotion code", "invalid intensity code",
        "duplicate clip (kept 03-01-05-02-02-01-04.flac)",
    ])
    assert df.loc[ravdess_name(3, 1, 5, 2, 2, 1, 18), "label"] == "angry"
    assert df.loc[ravdess_name(3, 1, 5, 2, 2, 1, 18), "target_intensity"] == 2.0
    assert df.loc[ravdess_name(3, 1, 5, 2, 2, 1, 18), "text"] == "Dogs are sitting by the door"
    assert df.loc[ravdess_name(3, 1, 1, 1, 1, 1, 18), "text"] == "Kids are talking by the door"
    assert df.loc[ravdess_name(3, 1, 1, 1, 1, 1, 18), "group"] == "Actor_18"
    assert df.loc[ravdess_name(3, 1, 1, 1, 1, 1, 18), "sex"] == "female"
    assert df.loc[info["calm"], "label"] == "calm"
    assert df.loc[info["stereo"], "audio"].endswith(".flac")
    assert df.loc[ravdess_name(3, 1, 5, 2, 2, 1, 4), "audio"].endswith(".flac")
    assert "landmarks" not in df.columns
    validate(result.manifest.df, "ravdess", check_files=True)


def test_channel_and_merge_calm(corpus):
    base, info = corpus
    both = build(base / "ravdess", channel="both", merge_calm=True).manifest.df.set_index("id")
    assert len(both) == 51 and both.loc[info["song"], "channel"] == "song"
    assert both.loc[info["calm"], "label"] == "neutral"
    song = build(base / "ravdess", channel="song").manifest.df
    assert song["id"].tolist() == [info["song"]]


def test_protocols(corpus):
    base, _ = corpus
    df = build(base / "ravdess", protocol="fold1").manifest.df
    actors = lambda split, col="split": sorted(int(g[6:]) for g in set(df.loc[df[col] == split, "group"]))  # noqa: E731
    assert actors("test") == [1, 11, 20, 21] and actors("val") == [2, 3]
    assert actors("test", "fold_4") == [3, 5, 7, 24] and actors("val", "fold_4") == [1, 2]
    for col in ("split", "fold_1", "fold_2", "fold_3", "fold_4"):
        assert overlap_groups(df, col) == {}
    tests = [set(df.loc[df[f"fold_{i}"] == "test", "group"]) for i in range(1, 5)]
    assert sum(len(t) for t in tests) == 16 and len(set().union(*tests)) == 16
    assert protocol_actors("mpuc") == ({1, 4, 21}, {8, 9, 20})
    loao = build(base / "ravdess", protocol="loao-7").manifest.df
    assert set(loao.loc[loao["split"] == "test", "group"]) == {"Actor_07"}
    assert set(loao.loc[loao["split"] == "val", "group"]) == {"Actor_01", "Actor_02"}
    custom = build(base / "ravdess", protocol="custom", test_actors=[4], val_actors=[3]).manifest.df
    assert set(custom.loc[custom["split"] == "test", "group"]) == {"Actor_04"}
    assert set(custom.loc[custom["split"] == "val", "group"]) == {"Actor_03"}
    with pytest.raises(ValueError, match="protocol"):
        Config(protocol="fold5")
    with pytest.raises(ValueError, match="test_actors"):
        Config(protocol="custom")


def test_landmarks_matching(corpus):
    base, _ = corpus
    result = build(base / "ravdess", landmarks_root=str(base / "landmarks"))
    df = result.manifest.df.set_index("id")
    assert Path(df.loc[ravdess_name(3, 1, 5, 2, 2, 1, 1), "landmarks"]).name == ravdess_name(1, 1, 5, 2, 2, 1, 1) + ".csv"
    assert Path(df.loc[ravdess_name(3, 1, 1, 1, 1, 1, 2), "landmarks"]).name == ravdess_name(2, 1, 1, 1, 1, 1, 2) + ".csv"
    assert (df["landmarks"] != "").sum() == 2
    assert any("2 clips matched an OpenFace CSV, 48 without landmarks" in n for n in result.notes)


def test_layout_errors(tmp_path):
    with pytest.raises(LayoutError) as err:
        build(tmp_path / "absent")
    assert err.value.missing == str(tmp_path / "absent") and "Actor_01" in str(err.value)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "03-01-01-01-01-01-01.wav").write_bytes(b"")
    with pytest.raises(LayoutError) as err:
        build(tmp_path / "flat")
    assert err.value.missing == str(tmp_path / "flat" / "Actor_01")


@pytest.mark.realdata
@pytest.mark.skipif(not REAL.is_dir(), reason="shared/data/ravdess-speech-subset not present")
def test_real_subset():
    result = build(REAL, protocol="custom", test_actors=[4])
    df = result.manifest.df
    assert len(df) == 240 and not result.skipped
    per_actor = df.groupby("group").size().to_dict()
    assert per_actor == {f"Actor_{a:02d}": 60 for a in (1, 2, 3, 4)}
    counts = Counter(df["label"])
    assert counts["neutral"] == 16 and all(counts[e] == 32 for e in
                                           ("calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"))
    for actor in ("Actor_01", "Actor_04"):
        sub = Counter(df.loc[df["group"] == actor, "label"])
        assert sub["neutral"] == 4 and sub["angry"] == 8
    assert set(df.loc[df["split"] == "test", "group"]) == {"Actor_04"}
    assert set(df.loc[df["split"] == "train", "group"]) == {"Actor_01", "Actor_02", "Actor_03"}
    assert all(p.endswith(".flac") for p in df["audio"])


@pytest.mark.realdata
@pytest.mark.skipif(not REAL.is_dir(), reason="shared/data/ravdess-speech-subset not present")
def test_cli_manifest_real(tmp_path):
    from click.testing import CliRunner

    from mer.cli import cli

    config = REPO / "configs" / "ravdess.yaml"
    out = tmp_path / "manifest.csv"
    res = CliRunner().invoke(cli, ["manifest", "-c", str(config), "--set", f"dataset.root={REAL}",
                                   "--set", "dataset.protocol=custom", "--set", "dataset.test_actors=[4]",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "240 samples" in res.output and "skipped: none" in res.output
