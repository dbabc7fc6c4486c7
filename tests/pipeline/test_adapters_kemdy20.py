"""KEMDy20 adapter on a byte-faithful fixture (two header rows, cp949, tags, ties, disqust)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from kit.corpora import (
    KEMDY20_E4_START,
    write_kemdy20,
)
from mer.pipeline.adapters import LayoutError, build_manifest
from mer.pipeline.adapters._common import overlap_groups
from mer.pipeline.adapters.kemdy20 import Config, clean_transcript, parse_label, scan_tags
from mer.pipeline.manifest import validate
from kit.paths import REPO


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kemdy") / "KEMDy20_v1_1"
    write_kemdy20(root)
    return root


def build(root: Path, **kw):
    kw.setdefault("n_val_sessions", 1)
    kw.setdefault("k", 2)
    return build_manifest(Config(root=str(root), **kw))


def test_fixture_is_byte_faithful(corpus):
    raw = (corpus / "annotation" / "Sess01_eval.csv").read_bytes()
    lines = raw.split(b"\r\n")
    assert lines[0].startswith(b"Numb,Wav, ,Segment ID,Total Evaluation, , ,Eval01F, , ,")
    assert lines[1].startswith(b" ,start,end, ,Emotion,Valence,Arousal,Emotion,Valence,Arousal")
    assert len(lines[0].split(b",")) == len(lines[1].split(b",")) == len(lines[2].split(b",")) == 37
    txt = (corpus / "wav" / "Session01" / "Sess01_script01_User002M_001.txt").read_bytes()
    assert txt == "n/ 아 친구들도? l/\n".encode("cp949")
    with pytest.raises(UnicodeDecodeError):
        txt.decode("utf-8")


def test_labels_text_and_skips(corpus):
    result = build(corpus)
    df = result.manifest.df.set_index("id")
    # 14 annotated segments: 1 tie, 1 label outside the set, 1 without wav -> 11 rows
    assert len(df) == 11
    reasons = {s.id: s.reason for s in result.skipped}
    assert reasons == {
        "Sess01_script01_User001F_001": "tie label dropped",
        "Sess03_script01_User006F_002": "label outside class set",
        "Sess02_script01_User003F_003": "missing audio",
    }
    skipped_sources = {s.id: s.source for s in result.skipped}
    assert skipped_sources["Sess01_script01_User001F_001"].endswith("annotation/Sess01_eval.csv")
    assert df.loc["Sess01_script01_User002M_002", "label"] == "disgust"  # 'disqust' in the corpus
    assert df.loc["Sess01_script01_User001F_002", "label"] == ""  # empty cell = unlabeled, kept
    assert df.loc["Sess01_script01_User002M_001", "text"] == "아 친구들도?"
    assert df.loc["Sess01_script01_User002M_002", "text"] == "그건 좀 1시에"
    assert df.loc["Sess01_script01_User002M_001", "target_valence"] == 2.5
    assert df.loc["Sess03_script01_User005M_001", "target_arousal"] == 4.4
    assert df.loc["Sess01_script01_User002M_001", "group"] == "User002M"
    assert df.loc["Sess02_script01_User004M_001", "audio"].endswith("wav/Session02/Sess02_script01_User004M_001.wav")
    assert Path(df.loc["Sess02_script01_User004M_001", "audio"]).is_absolute()
    assert any(n.startswith("transcripts: 11 cp949, 0 UTF-8") for n in result.notes)
    validate(result.manifest.df, "kemdy20", check_files=True)


def test_tie_options_and_marks(corpus):
    first = build(corpus, ties="first").manifest.df.set_index("id")
    assert first.loc["Sess01_script01_User001F_001", "label"] == "happy"
    multi = build(corpus, ties="multilabel", keep_marks=True).manifest.df.set_index("id")
    assert multi.loc["Sess01_script01_User001F_001", "label"] == "happy;neutral"
    assert multi.loc["Sess01_script01_User002M_001", "text"] == "n/ 아 친구들도? l/"
    dropped = build(corpus, keep_unlabeled=False)
    assert "Sess01_script01_User001F_002" in {s.id for s in dropped.skipped if s.reason == "unlabeled"}


def test_parse_label_and_clean_unit():
    assert parse_label(" Neutral ", "drop") == ("neutral", "")
    assert parse_label("disqust;angry", "first") == ("disgust", "")
    assert parse_label("angry;neutral", "drop") == (None, "tie label dropped")
    assert parse_label("", "drop") == ("", "")
    assert clean_transcript("N/ 네 u/ 그래 + 요 *") == "네 그래 요"


def test_biosignals_by_tag(corpus):
    result = build(corpus)
    df = result.manifest.df.set_index("id")
    seg = "Sess01_script01_User002M_001"
    assert df.loc[seg, "eda"].endswith("EDA/Session01/Sess01_script01_User002M.csv")
    assert df.loc[seg, "temp"].endswith("TEMP/Session01/Sess01_script01_User002M.csv")
    assert df.loc[seg, "ibi"].endswith("IBI/Session01/Sess01_script01_User002M.csv")
    assert df.loc[seg, "bio_format"] == "kemdy20" and df.loc[seg, "bio_tag"] == seg
    # index 0 in its file: rows 4..11 at 4 Hz -> [start + 1.0, start + 3.0)
    assert df.loc[seg, "bio_start"] == KEMDY20_E4_START + 1.0
    assert df.loc[seg, "bio_end"] == KEMDY20_E4_START + 3.0
    # the segment without IBI rows: empty IBI path (mask), other signals and modalities kept
    gap = df.loc["Sess01_script01_User001F_003"]
    assert gap["ibi"] == "" and gap["eda"] != "" and gap["temp"] != "" and gap["audio"] != ""
    # tag-less TEMP file: kept because EDA gives the window
    tagless = df.loc["Sess03_script01_User005M_001"]
    assert tagless["temp"].endswith("TEMP/Session03/Sess03_script01_User005M.csv")
    assert not math.isnan(tagless["bio_start"])
    note = next(n for n in result.notes if n.startswith("biosignals per segment"))
    assert "EDA 11/11" in note and "TEMP 11/11" in note and "IBI 10/11" in note
    assert any("without any segment tag" in n for n in result.notes)


def test_scan_tags_ibi_times(corpus):
    scan = scan_tags(corpus / "IBI" / "Session01" / "Sess01_script01_User002M.csv", "ibi")
    first, last = scan.windows["Sess01_script01_User002M_001"]
    # beats at 0.59375 + 0.78125 k; the first inside [1.0, 3.0) is k=1 (1.375), last k=3 (2.9375)
    assert first == pytest.approx(KEMDY20_E4_START + 1.375)
    assert last == pytest.approx(KEMDY20_E4_START + 2.9375 + 1 / 64)  # half-open: one E4 tick past the beat


def test_lmr_cl_split_and_kfold(corpus):
    result = build(corpus, test_sessions=[4, 10, 15, 16, 20, 21, 23, 26], val_sessions=[2])
    df = result.manifest.df
    sessions = {s: set(df.loc[df["split"] == s, "session"]) for s in ("train", "val", "test")}
    assert sessions == {"train": {"Sess01", "Sess03"}, "val": {"Sess02"}, "test": {"Sess04"}}
    assert overlap_groups(df) == {}
    for col in ("fold_1", "fold_2"):
        assert set(df[col]) <= {"train", "val", "test"}
        assert overlap_groups(df, col) == {}
    tests = [set(df.loc[df[f"fold_{i}"] == "test", "session"]) for i in (1, 2)]
    assert tests[0] | tests[1] == {"Sess01", "Sess02", "Sess03", "Sess04"} and not tests[0] & tests[1]
    dist = next(n for n in result.notes if n.startswith("labels per split"))
    assert "test (2): happy=1, neutral=1" in dist
    kfold = build(corpus, protocol="kfold", fold=2).manifest.df
    assert (kfold["split"] == kfold["fold_2"]).all()


def test_drawn_validation_is_deterministic(corpus):
    a = build(corpus, n_val_sessions=1, seed=3).manifest.df
    b = build(corpus, n_val_sessions=1, seed=3).manifest.df
    assert (a["split"] == b["split"]).all()
    assert a.loc[a["split"] == "val", "session"].nunique() == 1
    assert set(a.loc[a["split"] == "test", "session"]) == {"Sess04"}


def test_layout_errors(tmp_path, corpus):
    with pytest.raises(LayoutError) as err:
        build(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and "annotation/SessNN_eval.csv" in str(err.value)
    (tmp_path / "k").mkdir()
    with pytest.raises(LayoutError) as err:
        build(tmp_path / "k")
    assert err.value.missing == str(tmp_path / "k" / "annotation")
    (tmp_path / "k" / "annotation").mkdir()
    with pytest.raises(LayoutError) as err:
        build(tmp_path / "k")
    assert err.value.missing.endswith("SessNN_eval.csv")
    # a listed biosignal folder that is absent
    (tmp_path / "k" / "annotation" / "Sess01_eval.csv").write_bytes((corpus / "annotation" / "Sess01_eval.csv").read_bytes())
    (tmp_path / "k" / "wav").mkdir()
    with pytest.raises(LayoutError) as err:
        build(tmp_path / "k")
    assert err.value.missing == str(tmp_path / "k" / "EDA")
    # without biosignals the same tree builds; every segment misses its wav -> skipped
    with pytest.raises(Exception) as err:
        build(tmp_path / "k", biosignals=[])
    assert "no segments left" in str(err.value)
    res = build(tmp_path / "k", biosignals=[], require=[])
    assert len(res.manifest) == 4 and (res.manifest.df["audio"] == "").all()


def test_config_validation():
    with pytest.raises(ValueError, match="biosignals"):
        Config(biosignals=["ecg"])
    with pytest.raises(ValueError, match="fold"):
        Config(k=3, fold=4)


def test_cli_manifest(corpus, tmp_path):
    from click.testing import CliRunner

    from mer.cli import cli

    config = REPO / "configs" / "kemdy20.yaml"
    out = tmp_path / "m.csv"
    res = CliRunner().invoke(cli, ["manifest", "-c", str(config), "--set", f"dataset.root={corpus}",
                                   "--set", "dataset.n_val_sessions=1", "--set", "dataset.k=2",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert out.is_file() and (tmp_path / "skipped.csv").is_file()
    assert "tie label dropped" in (tmp_path / "skipped.csv").read_text()
    assert "biosignals per segment" in res.output


def test_e4_reader_finds_every_attached_signal(corpus):
    """The E4 reader (features.e4_io) finds tagged rows for every path the adapter filled,
    inside the adapter's [bio_start, bio_end) window."""
    from mer.features.e4_io import read_ibi, read_signal, segment_positions

    df = build(corpus).manifest.df
    checked = 0
    for row in df.to_dict("records"):
        for signal in ("eda", "temp", "ibi"):
            if not row[signal] or row[signal].endswith("TEMP/Session03/Sess03_script01_User005M.csv"):
                continue  # the tag-less file is cut by the window, not by tags
            data = (read_ibi if signal == "ibi" else read_signal)(row[signal], "kemdy20")
            pos = segment_positions(data, row["bio_tag"])
            assert len(pos) > 0, (row["id"], signal)
            assert (data.times[pos] >= row["bio_start"]).all() and (data.times[pos] < row["bio_end"]).all()
            checked += 1
    assert checked == 11 + 10 + 10  # EDA 11, TEMP 11 minus the tag-less one, IBI 10


def test_no_progress_hides_the_adapters_bar(corpus, capsys):
    """`mer extract --no-progress` reaches the adapter: its per-session bar is not drawn."""
    from mer.pipeline.adapters import build_manifest

    config = Config(root=str(corpus), n_val_sessions=1, k=2)
    build_manifest(config, progress=True)
    assert "kemdy20 sessions" in capsys.readouterr().err
    build_manifest(config, progress=False)
    assert "kemdy20 sessions" not in capsys.readouterr().err
