"""CMU-MOSEI adapter and the .csd reader (fixture in the SDK layout + the real MOSI labels file)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import h5py
import numpy as np
import pytest

from kit.corpora import MOSEI_LABELS, write_mosei
from mer.pipeline.adapters import LayoutError, build_manifest
from mer.pipeline.adapters._common import overlap_groups
from mer.pipeline.adapters.mosei import Config, best_text, hash_split, read_transcript, TranscriptSegment
from mer.pipeline.csd import CsdError, align_to_segments, interval_id, overlapping_rows, read_csd, write_csd
from mer.pipeline.manifest import ManifestError, validate
from kit.paths import REPO, SHARED_DATA

REAL_CSD = SHARED_DATA / "cmu-csd" / "CMU_MOSI_Opinion_Labels.csd"
AUDIO = "Raw/Audio/Full/WAV_16000"
TEXT = "Raw/Transcript/Segmented/Combined"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_mosei(tmp_path_factory.mktemp("mosei") / "CMU_MOSEI")


def build(root, **kw):
    return build_manifest(Config(root=str(root), **kw))


# --------------------------------------------------------------------------------------
# csd reader
# --------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.skipif(not REAL_CSD.is_file(), reason="shared/data/cmu-csd not present")
def test_read_real_mosi_labels():
    with read_csd(REAL_CSD) as seq:
        assert seq.name == "Opinion Segment Labels"
        assert seq.metadata["root name"] == "Opinion Segment Labels"
        assert seq.metadata["dimension names"] == ["sentiment score"]
        assert seq.metadata["alignment compatible"] is True and seq.metadata["md5"] is None
        assert seq.metadata["dataset name"] == "CMU-MOSI"
        assert len(seq) == 93 and seq.dim == 1
        assert seq.videos()[0] == "03bSnISJMiM"
        feats, ivs = seq.read("03bSnISJMiM")
        assert feats.shape == (13, 1) and ivs.shape == (13, 2) and feats.dtype == np.float32
        assert feats[0, 0] == np.float32(2.4) and ivs[0, 0] == np.float32(51.904533)
        with h5py.File(REAL_CSD, "r") as f:  # the plain h5py reading agrees, for every video
            data = f["Opinion Segment Labels/data"]
            assert sum(data[v]["features"].shape[0] for v in data) == sum(len(seq.features(v)) for v in seq.videos()) == 2199


def test_write_read_roundtrip_matches_real_layout(tmp_path):
    feats = np.array([[1.0, 0.5], [2.0, 0.25]], np.float32)
    ivs = np.array([[0.0, 1.0], [1.0, 2.5]], np.float32)
    path = write_csd(tmp_path / "x.csd", "COVAREP", {"v1": (feats, ivs)}, {"dimension names": ["f0", "vuv"]})
    with h5py.File(path, "r") as f:
        ds = f["COVAREP/metadata/root name"]
        assert ds.shape == (1,) and h5py.check_string_dtype(ds.dtype).length is None
        assert ds[0] == b'"COVAREP"'
    with read_csd(path) as seq:
        assert seq.name == "COVAREP" and seq.dimension_names == ["f0", "vuv"] and seq.videos() == ["v1"]
        np.testing.assert_array_equal(seq.features("v1"), feats)
        np.testing.assert_array_equal(seq.intervals("v1"), ivs)
        with pytest.raises(KeyError, match="v2"):
            seq.features("v2")


def test_csd_errors(tmp_path):
    with pytest.raises(CsdError, match="not found"):
        read_csd(tmp_path / "none.csd")
    (tmp_path / "bad.csd").write_text("not hdf5")
    with pytest.raises(CsdError, match="not an HDF5"):
        read_csd(tmp_path / "bad.csd")
    with h5py.File(tmp_path / "nodata.csd", "w") as f:
        f.create_group("Seq").create_group("metadata")
    with pytest.raises(CsdError, match="Seq/data"):
        read_csd(tmp_path / "nodata.csd")


def test_align_to_segments_against_a_loop(tmp_path):
    rng = np.random.default_rng(0)
    starts = np.sort(rng.uniform(0, 20, 40))
    ivs = np.stack([starts, starts + rng.uniform(0, 1.5, 40)], 1)
    ivs[5, 1] = ivs[5, 0]  # a point event
    feats = rng.standard_normal((40, 3)).astype(np.float32)
    path = write_csd(tmp_path / "f.csd", "Feat", {"v": (feats, ivs)})
    segments = [("a", "v", 2.0, 6.0), ("b", "v", 10.0, 10.5), ("c", "v", 25.0, 30.0), ("d", "missing", 0.0, 1.0)]
    with read_csd(path) as seq:
        out = {a.id: a for a in align_to_segments(seq, segments)}
    for sid, _, start, end in segments[:3]:
        expected = [i for i in range(40) if (ivs[i, 0] == ivs[i, 1] and start <= ivs[i, 0] < end)
                    or (ivs[i, 0] != ivs[i, 1] and ivs[i, 0] < end and ivs[i, 1] > start)]
        np.testing.assert_array_equal(out[sid].features, feats[expected])
        assert (out[sid].intervals >= start).all() and (out[sid].intervals <= end).all()
    assert out["c"].problem.startswith("no rows") and out["c"].features.shape == (0, 3)
    assert "not in f.csd" in out["d"].problem
    np.testing.assert_array_equal(overlapping_rows(np.array([[0.0, 1.0], [1.0, 2.0]]), 1.0, 2.0), [1])


# --------------------------------------------------------------------------------------
# adapter
# --------------------------------------------------------------------------------------
def test_labels_targets_and_skips(corpus, caplog):
    with caplog.at_level(logging.WARNING):
        result = build(corpus)
    df = result.manifest.df.set_index("id")
    assert len(df) == 7
    assert sorted((s.id, s.reason) for s in result.skipped) == [
        ("_0efYOjQYRc[4.000-4.000]", "empty interval"),
        ("_0efYOjQYRc[4.500-6.000]", "duplicate interval (conflicting labels)"),
    ]
    expected = {
        "-3g5yACwYnA[0.500-3.250]": "happy",
        "-3g5yACwYnA[3.250-7.000]": "sad;fear",
        "-3g5yACwYnA[7.000-9.500]": "",
        "_0efYOjQYRc[1.000-4.000]": "happy;surprise",
        "_0efYOjQYRc[4.500-6.000]": "sad;anger;disgust",
        "aB3xYz9Q-kM[0.000-2.000]": "happy",
        "aB3xYz9Q-kM[2.000-5.500]": "anger;disgust",
    }
    assert df["label"].to_dict() == expected
    assert (df["labelled"] == "true").all()
    row = df.loc["-3g5yACwYnA[3.250-7.000]"]
    assert row["target_sad"] == float(np.float32(0.3333333)) and row["target_sentiment"] == float(np.float32(-0.3333333))
    assert row["start"] == 3.25 and row["end"] == 7.0 and row["video_id"] == row["group"] == "-3g5yACwYnA"
    assert df.loc["_0efYOjQYRc[4.500-6.000]", "target_sentiment"] == -2.0  # the first of the duplicates
    none = df.loc["-3g5yACwYnA[7.000-9.500]"]
    assert none["label"] == "" and all(none[f"target_{e}"] == 0.0 for e in ("happy", "sad", "anger", "surprise", "disgust", "fear"))
    assert "audio" not in df.columns and "text" not in df.columns
    assert any("NOT the standard CMU-MOSEI split" in n for n in result.notes)
    assert any("NOT the standard" in r.getMessage() for r in caplog.records)
    validate(result.manifest.df, "mosei", check_files=True)


def test_hash_split_is_sha256(corpus):
    df = build(corpus).manifest.df
    for vid, split in zip(df["video_id"], df["split"]):
        u = int.from_bytes(hashlib.sha256(vid.encode()).digest()[:8], "big") / 2**64
        assert split == ("train" if u < 0.7 else "val" if u < 0.8 else "test")
    assert overlap_groups(df) == {}


def test_raw_audio_and_transcripts(corpus):
    result = build(corpus, audio_root=AUDIO, transcripts=TEXT)
    df = result.manifest.df.set_index("id")
    assert df.loc["-3g5yACwYnA[3.250-7.000]", "text"] == "but the ending wasn’t great"
    assert df.loc["_0efYOjQYRc[4.500-6.000]", "text"] == "and then it got ugly"
    assert df.loc["aB3xYz9Q-kM[0.000-2.000]", "text"] == ""  # no transcript file
    assert df.loc["-3g5yACwYnA[0.500-3.250]", "audio"].endswith(f"{AUDIO}/-3g5yACwYnA.wav")
    assert df.loc["aB3xYz9Q-kM[0.000-2.000]", "audio"] == ""
    assert any("audio: 5 intervals with a <video>.wav, 2 without" in n for n in result.notes)
    assert any(n.startswith("text: 5 intervals matched") for n in result.notes)
    required = build(corpus, audio_root=AUDIO, transcripts=TEXT, require=["audio"])
    assert len(required.manifest) == 5
    assert sum(s.reason == "missing audio" for s in required.skipped) == 2


def test_transcript_matching_unit(tmp_path):
    p = tmp_path / "v.txt"
    p.write_bytes(b"v___0___0.0___2.0___hello\nbroken line\nv___1___2.0___4.0___a___b\n")
    segments, bad = read_transcript(p)
    assert bad == 1 and [s.text for s in segments] == ["hello", "a___b"]
    segs = [TranscriptSegment(0, 0.0, 2.0, "x"), TranscriptSegment(1, 2.0, 4.0, "y")]
    assert best_text(segs, 2.1, 4.0, 0.5) == "y"
    assert best_text(segs, 1.0, 3.0, 0.5) is None  # IoU 1/3 with each


def test_fold_file(corpus, tmp_path):
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"train": ["-3g5yACwYnA"], "valid": ["_0efYOjQYRc"], "test": ["aB3xYz9Q-kM"]}))
    result = build(corpus, folds=str(folds))
    df = result.manifest.df
    assert dict(df.groupby("video_id")["split"].first()) == {"-3g5yACwYnA": "train", "_0efYOjQYRc": "val", "aB3xYz9Q-kM": "test"}
    assert not any("WARNING" in n for n in result.notes)
    partial = tmp_path / "folds.yaml"
    partial.write_text("train: ['-3g5yACwYnA']\ntest: [aB3xYz9Q-kM]\n")
    res = build(corpus, folds=str(partial))
    assert (res.manifest.df.loc[res.manifest.df["video_id"] == "_0efYOjQYRc", "split"] == "").all()
    assert any("in no fold" in n for n in res.notes)
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps({"train": ["a"], "test": ["a"]}))
    with pytest.raises(ManifestError, match="both train and test"):
        build(corpus, folds=str(clash))


def test_layout_errors(corpus, tmp_path):
    with pytest.raises(LayoutError) as err:
        build(tmp_path)
    assert err.value.missing == str(tmp_path / "CMU_MOSEI_Labels.csd") and "All Labels" in str(err.value)
    with pytest.raises(LayoutError) as err:
        build(corpus, audio_root="Raw/Audio/nope")
    assert err.value.missing == str(corpus / "Raw/Audio/nope")
    with pytest.raises(LayoutError):
        build(corpus, folds=str(tmp_path / "missing.json"))


def test_interval_id_stable():
    assert interval_id("v", np.float32(51.904533), np.float32(55.94535)) == "v[51.905-55.945]"
    assert len({interval_id(v, s, e) for v, rows in MOSEI_LABELS.items() for s, e, _ in rows}) == 8
    assert hash_split("-3g5yACwYnA") == hash_split("-3g5yACwYnA")


def test_cli_manifest(corpus, tmp_path):
    from click.testing import CliRunner

    from mer.cli import cli

    config = REPO / "configs" / "mosei.yaml"
    out = tmp_path / "manifest.csv"
    res = CliRunner().invoke(cli, ["manifest", "-c", str(config), "--set", f"dataset.root={corpus}",
                                   "--set", f"dataset.audio_root={AUDIO}", "--set", f"dataset.transcripts={TEXT}",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "7 samples" in res.output and "empty interval" in res.output
