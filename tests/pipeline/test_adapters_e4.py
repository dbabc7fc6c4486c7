"""Empatica E4 study adapter: segments table, windows from tags, coverage masks; real Stress-Predict."""

from __future__ import annotations

from pathlib import Path

import pytest

from kit.corpora import E4_T0, write_e4_study
from mer.pipeline.adapters import LayoutError, build_manifest
from mer.pipeline.adapters.e4_study import Config, read_tags, tag_windows
from mer.pipeline.manifest import ManifestError, validate
from kit.paths import SHARED_DATA

REAL = SHARED_DATA / "e4-stress-predict"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e4") / "study"
    write_e4_study(root)
    t = E4_T0
    (root / "segments.csv").write_text(
        "id,recording,start,end,label,split,target_stress\n"
        f"s1,recA,{t + 20},{t + 30},calm,train,0.1\n"
        f"s2,recA,{t + 70},{t + 80},stress,test,0.9\n"
        f"s3,recB,{t + 505},{t + 515},calm,valid,0.2\n"
        f"s4,recC,{t + 1},{t + 2},calm,train,0\n"
        f"s5,recA,{t + 50},{t + 50},calm,train,0\n"
        f"s1,recA,{t + 40},{t + 45},calm,train,0\n"
        f"s6,recA,{t + 200},{t + 210},calm,train,0\n"
    )
    return root


def build(root, **kw):
    return build_manifest(Config(root=str(root), **kw))


def test_segments_table(study):
    result = build(study, segments="segments.csv")
    df = result.manifest.df.set_index("id")
    assert list(df.index) == ["s1", "s2", "s3"]
    assert sorted((s.id, s.reason) for s in result.skipped) == [
        ("s1", "duplicate id"), ("s4", "missing recording folder"), ("s5", "empty window"),
        ("s6", "no signal covers the window")]
    present = {sid: [s for s in ("eda", "temp", "bvp", "hr", "ibi") if df.loc[sid, s]] for sid in df.index}
    assert present == {"s1": ["eda", "temp", "bvp", "hr", "ibi"], "s2": ["eda", "temp", "hr"], "s3": ["eda"]}
    assert df.loc["s1", "bio_start"] == E4_T0 + 20 and df.loc["s1", "bio_end"] == E4_T0 + 30
    assert df.loc["s2", "split"] == "test" and df.loc["s3", "split"] == "val"
    assert df.loc["s3", "group"] == "recB" and df.loc["s1", "target_stress"] == 0.1
    assert (df["bio_format"] == "e4").all()
    assert df.loc["s1", "bvp"].endswith("recA/BVP.csv")
    validate(result.manifest.df, "e4", check_files=True)


def test_windows_from_tags(study):
    result = build(study, windows_from_tags=True, window_s=10, tag_labels=["baseline", "stroop"],
                   test_groups=["recB"])
    df = result.manifest.df.set_index("id")
    assert list(df.index) == [f"recA_t00_w{j:03d}" for j in range(3)] + [f"recA_t01_w{j:03d}" for j in range(6)] \
        + ["recB_t00_w000", "recB_t00_w001"]
    assert df.loc["recA_t01_w005", "bio_start"] == E4_T0 + 90 and df.loc["recA_t01_w005", "bio_end"] == E4_T0 + 100
    assert df.loc["recB_t00_w001", "bio_start"] == pytest.approx(E4_T0 + 510.03)
    assert df.loc["recA_t00_w000", "label"] == "baseline" and df.loc["recA_t01_w000", "label"] == "stroop"
    assert df.loc["recB_t00_w000", "label"] == "baseline"
    # BVP covers the first 50 s, IBI beats lie in [20, 60) s
    assert [i for i in df.index if df.loc[i, "bvp"]] == ["recA_t00_w000", "recA_t00_w001", "recA_t00_w002", "recA_t01_w000"]
    assert [i for i in df.index if df.loc[i, "ibi"]] == ["recA_t00_w001", "recA_t00_w002", "recA_t01_w000", "recA_t01_w001"]
    assert set(df.loc[df["split"] == "test"].index) == {"recB_t00_w000", "recB_t00_w001"}
    assert any("IBI 4/11" in n for n in result.notes)


def test_tag_windows_unit(tmp_path):
    assert tag_windows([0.0, 25.0, 30.0], 10.0, 0.0) == [(0, 0.0, 10.0), (0, 10.0, 20.0)]
    assert tag_windows([0.0, 20.0], 10.0, 5.0) == [(0, 0.0, 10.0), (0, 5.0, 15.0), (0, 10.0, 20.0)]
    (tmp_path / "tags_x.csv").write_bytes(b"5.5\r\n\r\n1.25\r\n")
    times, files = read_tags(tmp_path)
    assert times == [1.25, 5.5] and [f.name for f in files] == ["tags_x.csv"]


def test_errors(study, tmp_path):
    with pytest.raises(ValueError, match="segments"):
        Config(root=str(study))
    with pytest.raises(LayoutError) as err:
        build(tmp_path / "none", windows_from_tags=True)
    assert err.value.missing == str(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LayoutError) as err:
        build(tmp_path / "empty", windows_from_tags=True)
    assert "EDA.csv" in err.value.missing
    with pytest.raises(LayoutError) as err:
        build(study, segments="nope.csv")
    assert err.value.missing == str(study / "nope.csv")
    (tmp_path / "bad.csv").write_text("id,start,end\na,1,2\n")
    with pytest.raises(ManifestError, match="recording"):
        build(study, segments=str(tmp_path / "bad.csv"))


@pytest.mark.realdata
@pytest.mark.skipif(not REAL.is_dir(), reason="shared/data/e4-stress-predict not present")
def test_real_stress_predict():
    result = build(REAL, windows_from_tags=True, window_s=60, test_groups=["S03"], val_groups=["S02"])
    df = result.manifest.df
    # full 60 s windows between consecutive button presses (inter-tag gaps from the tags files):
    # S01 295,272,385,565,334,142,313,238,622 s -> 4+4+6+9+5+2+5+3+10 = 48; S02 -> 46; S03 -> 42
    assert df.groupby("recording").size().to_dict() == {"S01": 48, "S02": 46, "S03": 42}
    assert not result.skipped
    assert (df["eda"] != "").all() and (df["bvp"] != "").all() and (df["hr"] != "").all()
    assert 0 < (df["ibi"] != "").sum() < len(df)  # IBI has gaps (motion): masked, not dropped
    assert set(df.loc[df["split"] == "test", "group"]) == {"S03"}
    first = df.set_index("id").loc["S01_t00_w000"]
    assert first["bio_start"] == 1644226140.0 and first["bio_end"] == 1644226200.0
