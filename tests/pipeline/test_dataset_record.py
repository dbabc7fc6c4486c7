"""Manifests record their dataset section; adapters enumerate their folds (issue 13)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mer.pipeline.adapters import config_class, folds_of, protocol_of
from mer.pipeline.config_schema import ConfigError
from mer.pipeline.config import PipelineConfig
from mer.pipeline.corpus import dataset_differences, dataset_key, dataset_record, prepare_manifest, recorded_dataset
from mer.pipeline.manifest import Manifest, ManifestError


def generic_csv(tmp_path, folds=2):
    rows = []
    for i in range(8):
        row = {"id": f"u{i}", "label": "a" if i % 2 else "b", "group": f"g{i // 2}", "split": "train"}
        for k in range(1, folds + 1):
            row[f"fold_{k}"] = "test" if i // 2 == k else "train"
        rows.append(row)
    path = tmp_path / "corpus.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def section(name, **kw):
    return config_class(name)(**kw)


def test_prepare_manifest_records_the_section_and_writes_one_file_per_section(tmp_path):
    csv = generic_csv(tmp_path)
    base = PipelineConfig(dataset=section("generic", manifest=str(csv)))
    base.cache.root = str(tmp_path / "cache")
    _, path1 = prepare_manifest(base, progress=False)
    fold2 = PipelineConfig(dataset=section("generic", manifest=str(csv), fold=2), cache=base.cache)
    _, path2 = prepare_manifest(fold2, progress=False)
    assert path1.name == f"manifest-{dataset_key(base.dataset)}.csv" != path2.name
    assert Manifest.load(path1).split_ids("test") == []  # the first file is not rewritten
    assert Manifest.load(path2).split_ids("test") == ["u4", "u5"]
    latest = base.layout.manifest_path  # manifest.csv: the latest built
    assert recorded_dataset(latest) == dataset_record(fold2.dataset)
    meta = json.loads(path2.with_name(path2.name + ".json").read_text())
    assert meta["dataset"]["section"]["fold"] == 2 and meta["dataset_key"] == dataset_key(fold2.dataset)
    assert dataset_differences(recorded_dataset(path1), dataset_record(fold2.dataset)) == ["dataset.fold: 0 -> 2"]
    assert dataset_differences(None, dataset_record(fold2.dataset)) == [
        "the manifest records no dataset section (written by an older mer)"]


def test_generic_folds_and_a_missing_fold_column(tmp_path):
    csv = generic_csv(tmp_path, folds=3)
    manifest = Manifest(pd.read_csv(csv, dtype=str, keep_default_na=False))
    cfg = section("generic", manifest=str(csv))
    assert folds_of(cfg, manifest) == ("fold", [("fold1", 1), ("fold2", 2), ("fold3", 3)])
    assert protocol_of(section("generic", manifest=str(csv), fold=2)).name == "fold_2 column"
    from mer.pipeline.adapters import build_manifest
    with pytest.raises(ManifestError, match=r"dataset.fold=4 needs a column 'fold_4'"):
        build_manifest(section("generic", manifest=str(csv), fold=4))
    plain = Manifest(pd.read_csv(csv, dtype=str, keep_default_na=False).drop(columns=["fold_1", "fold_2", "fold_3"]))
    with pytest.raises(ConfigError, match=r"has no fold_<k> column: it holds one split"):
        folds_of(cfg, plain)


def test_ravdess_cremad_kemdy20_folds_and_protocols():
    groups = Manifest(pd.DataFrame({"id": ["a", "b", "c"], "label": "x", "split": "",
                                    "group": ["Actor_03", "Actor_01", "Actor_12"]}))
    assert folds_of(section("ravdess", protocol="fold2"), groups) == (
        "protocol", [("fold1", "fold1"), ("fold2", "fold2"), ("fold3", "fold3"), ("fold4", "fold4")])
    assert folds_of(section("ravdess", protocol="loao-5"), groups)[1] == [
        ("loao-1", "loao-1"), ("loao-3", "loao-3"), ("loao-12", "loao-12")]
    with pytest.raises(ConfigError, match="protocol 'mpuc' is one split"):
        folds_of(section("ravdess", protocol="mpuc"), groups)
    assert folds_of(section("cremad", n_folds=3), groups)[1] == [("fold1", "fold1"), ("fold2", "fold2"),
                                                                  ("fold3", "fold3")]
    assert folds_of(section("kemdy20", protocol="kfold", k=3, fold=2), groups) == (
        "fold", [("fold1", 1), ("fold2", 2), ("fold3", 3)])
    with pytest.raises(ConfigError, match="set dataset.protocol=kfold"):
        folds_of(section("kemdy20"), groups)
    with pytest.raises(ConfigError, match="'mosei' has one split"):
        folds_of(section("mosei"), groups)
    assert protocol_of(section("ravdess", protocol="fold3")) == protocol_of(section("cremad", protocol="fold3"))
    assert not protocol_of(section("meld")).speaker_independent
    assert protocol_of(section("kemdy20", protocol="kfold", k=5, fold=2)).name == "kfold fold_2 of 5"


def test_ravdess_group_protocol_is_your_own_folds():
    """`protocol: group<k>` with `groups`: leave-N-actors-out folds over the actors a corpus copy
    has (RAVDESS actors 1-12 in ../shared), each fold's validation actors given or by the rule."""
    from mer.pipeline.adapters.ravdess import protocol_actors

    groups = [[1, 2, 7, 8], [3, 4, 9, 10], [5, 6, 11, 12]]
    cfg = section("ravdess", protocol="group2", groups=groups, group_val_actors=[[3, 4], [5, 6], [1, 2]])
    assert folds_of(cfg, Manifest(pd.DataFrame({"id": ["a"], "label": "x", "split": "", "group": ["Actor_01"]})))[1] \
        == [("group1", "group1"), ("group2", "group2"), ("group3", "group3")]
    assert protocol_actors("group2", cfg) == ({3, 4, 9, 10}, {5, 6})
    # without validation actors: the lowest-numbered male (odd) and female training actor of the groups
    ruled = section("ravdess", protocol="group1", groups=groups)
    assert protocol_actors("group1", ruled) == ({1, 2, 7, 8}, {3, 4})
    with pytest.raises(ValueError, match="group4 needs groups"):
        section("ravdess", protocol="group4", groups=groups)
    with pytest.raises(ValueError, match="one list per group"):
        section("ravdess", protocol="group1", groups=groups, group_val_actors=[[3, 4]])
    with pytest.raises(ValueError, match="both test and validation"):
        section("ravdess", protocol="group1", groups=[[1, 2]], group_val_actors=[[2, 3]])
