"""``mer import-csd``: a MOSEI-format corpus (labels .csd through the real ``mosei`` adapter) plus
a feature .csd written with ``write_csd``, aligned into the cache and read back through
``FeatureStore`` and ``mer train``. Expected rows are computed here with a plain loop over the
file's intervals, independently of ``overlapping_rows``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from mer.features.registry import build_encoder
from mer.pipeline.cache import sha256_file
from mer.cli import cli
from mer.config import load_config
from mer.pipeline.csd import interval_id, write_csd
from mer.pipeline.manifest import Manifest
from mer.pipeline.store import FeatureStore

EMOTIONS = ["happy", "sad", "anger", "surprise", "disgust", "fear"]
DIMS = ["sentiment", *EMOTIONS]
NAMES = ["f0", "energy", "vuv"]
#: videos of the labels file; ABSENT is not in the feature file; SHORT's rows stop at 4 s
VIDEOS = [f"vid{k:02d}" for k in range(8)]
ABSENT, SHORT, INF = "vid06", "vid07", "vid05"
FOLDS = {"train": VIDEOS[:4], "valid": ["vid04", "vid05"], "test": VIDEOS[6:]}
#: per video: four labelled segments (start, end) in seconds
SEGMENTS = [(0.2, 1.3), (1.3, 2.75), (3.0, 4.1), (5.0, 6.0)]
STEP = 0.5  # feature rows: [k*STEP, (k+1)*STEP)


pytestmark = pytest.mark.usefixtures("one_thread")


def feature_rows(video: str) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3) features and (T, 2) intervals of one video of the feature file."""
    n = 8 if video == SHORT else 14  # SHORT: rows up to 4.0 s, so its [5, 6) segment has none
    k = np.arange(n)
    v = VIDEOS.index(video)
    feats = np.stack([100 * v + k, np.sin(k + v), (k + v) % 2], axis=1).astype(np.float32)
    if video == INF:
        feats[0, 1] = -np.inf  # COVAREP-like; row [0, 0.5) lies in the (0.2, 1.3) segment only
    ivs = np.stack([k * STEP, (k + 1) * STEP], axis=1).astype(np.float32)
    return feats, ivs


def expected(video: str, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    feats, ivs = feature_rows(video)
    rows = [i for i in range(len(ivs)) if ivs[i, 0] < end and ivs[i, 1] > start]
    return feats[rows], np.clip(ivs[rows], start, end)


@pytest.fixture(scope="module")
def mosei(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mosei")
    rng = np.random.default_rng(0)
    labels = {}
    for v in VIDEOS:
        values = np.zeros((len(SEGMENTS), 7), np.float32)
        values[:, 0] = rng.uniform(-3, 3, len(SEGMENTS))
        for i in range(len(SEGMENTS)):  # one or two emotions present per segment
            values[i, 1 + (i + VIDEOS.index(v)) % 6] = 1.0
            if i % 2:
                values[i, 1 + (i + 2) % 6] = 0.6666667
        labels[v] = (values, np.array(SEGMENTS, np.float32))
    write_csd(root / "data" / "CMU_MOSEI_Labels.csd", "All Labels", labels, {"dimension names": DIMS})
    csd = write_csd(root / "feats" / "COVAREP.csd", "COVAREP",
                    {v: feature_rows(v) for v in VIDEOS if v != ABSENT}, {"dimension names": NAMES})
    (root / "folds.yaml").write_text(yaml.safe_dump(FOLDS))
    config = {
        "dataset": {"name": "mosei", "root": str(root / "data"), "folds": str(root / "folds.yaml")},
        "cache": {"root": str(root / "cache"), "dtype": "float32", "shard_size": 8},
        "extract": {"device": "cpu", "prefetch": 1, "io_threads": 2},
        "train": {"model": "unimodal", "multilabel": True, "classes": EMOTIONS, "epochs": 3, "batch_size": 8,
                  "hidden": 8, "plots": False, "device": "cpu", "lr": 0.01},
        "output": str(root / "runs"),
    }
    bare = root / "bare.yaml"
    bare.write_text(yaml.safe_dump(config, sort_keys=False))
    config["features"] = {"covarep": {"encoder": "csd", "path": str(csd)}}
    full = root / "config.yaml"
    full.write_text(yaml.safe_dump(config, sort_keys=False))
    ids = [interval_id(v, s, e) for v in VIDEOS for s, e in SEGMENTS]
    # the import, once, from the config WITHOUT features.covarep (the CLI prints what to add)
    result = CliRunner().invoke(cli, ["import-csd", "-c", str(bare), "--csd", str(csd), "--modality", "covarep"])
    return {"root": root, "csd": csd, "bare": bare, "config": full, "ids": ids, "first": result}


def failures(directory: Path) -> dict[str, dict]:
    return {x["id"]: x for x in map(json.loads, (directory / "failures.jsonl").read_text().splitlines())}


def test_import_aligns_each_interval_and_records_samples_without_rows(mosei):
    first = mosei["first"]
    assert first.exit_code == 1, first.output  # failures exist and max_failures is 0
    assert "covarep: 7 of 8 manifest videos are in the file" in first.output
    assert "to train on it, add to" in first.output and "covarep: {encoder: csd, path: " in first.output
    assert "error: covarep: 6 of 32 samples have no aligned rows or failed" in first.output
    config = load_config(mosei["config"])
    store = FeatureStore.for_config(config, "covarep")  # the spec's key finds the importer's cache
    assert store.spec["family"] == "csd" and store.spec["status"] == "complete"
    assert store.spec["columns"] == ["video_id"] and store.spec["encoder"]["identity"]["root"] == "COVAREP"
    assert store.spec["encoder"]["identity"]["sha256"] == sha256_file(mosei["csd"])
    frames_spec = store.output("frames")
    assert frames_spec.shape == (3,) and frames_spec.ragged and frames_spec.attrs["names"] == NAMES
    ids = mosei["ids"]
    batch = store.get(ids[::-1])  # any order: joined by id
    failed = failures(store.path)
    for j, sample_id in enumerate(ids[::-1]):
        video = sample_id.split("[")[0]
        start, end = (float(x) for x in sample_id.split("[")[1].rstrip("]").split("-"))
        if sample_id in failed:
            assert not batch.present[j] and batch.failed[j] and len(batch["frames"][j]) == 0
            continue
        want_f, want_i = expected(video, start, end)
        assert batch.present[j] and len(want_f) > 0
        np.testing.assert_array_equal(batch["frames"][j], want_f)
        np.testing.assert_array_equal(batch["intervals"][j], want_i)
    # every failure is a sample without rows (stage align) or a non-finite row, naming the file
    assert sorted(failed) == sorted([interval_id(ABSENT, s, e) for s, e in SEGMENTS]
                                    + [interval_id(SHORT, 5.0, 6.0), interval_id(INF, 0.2, 1.3)])
    assert failed[interval_id(ABSENT, 0.2, 1.3)]["stage"] == "align"
    assert failed[interval_id(ABSENT, 0.2, 1.3)]["message"] == f"video '{ABSENT}' not in COVAREP.csd"
    short = failed[interval_id(SHORT, 5.0, 6.0)]
    assert short["stage"] == "align" and short["message"] == f"no rows of COVAREP.csd overlap [5.000, 6.000) of '{SHORT}'"
    inf = failed[interval_id(INF, 0.2, 1.3)]
    assert inf["stage"] == "features" and "1 NaN/inf value(s) in the 3 row(s) of video 'vid05'" in inf["message"]
    assert str(mosei["csd"]) in inf["message"] and all(f["modality"] == "covarep" for f in failed.values())
    manifest = Manifest.load(Path(config.cache.root) / config.corpus / "manifest.csv")
    assert store.is_complete(manifest)


def test_rerun_is_a_noop_and_mer_extract_only_verifies(mosei):
    config = load_config(mosei["config"])
    directory = FeatureStore.for_config(config, "covarep").path
    before = {p.name: sha256_file(p) for p in directory.glob("shard-*.h5")}
    again = CliRunner().invoke(cli, ["import-csd", "-c", str(mosei["config"]), "--modality", "covarep",
                                     "--max-failures", "6"])
    assert again.exit_code == 0, again.output
    assert "4 complete shard(s) verified, 0 shard(s) to extract" in again.output
    assert "to train on it" not in again.output  # the config already names it
    extracted = CliRunner().invoke(cli, ["extract", "-c", str(mosei["config"]), "--max-failures", "0.2"])
    assert extracted.exit_code == 0, extracted.output  # 6 <= 0.2 * 32
    assert "0 shard(s) to extract" in extracted.output and "loading" not in extracted.output
    assert {p.name: sha256_file(p) for p in directory.glob("shard-*.h5")} == before
    # with nothing imported, mer extract refuses and names the command to run
    fresh = CliRunner().invoke(cli, ["extract", "-c", str(mosei["config"]), "--set",
                                     f"cache.root={mosei['root'] / 'fresh'}"])
    assert fresh.exit_code == 2 and "mer import-csd -c <config> --modality <name>" in fresh.output


def test_key_follows_content_root_and_options_not_the_path(mosei, tmp_path):
    from mer.features.csd_seq import Options

    key = build_encoder(Options(path=str(mosei["csd"]))).key()
    moved = tmp_path / "elsewhere.csd"
    shutil.copy(mosei["csd"], moved)
    assert build_encoder(Options(path=str(moved))).key() == key
    assert build_encoder(Options(path=str(moved), root="COVAREP")).key() == key
    assert build_encoder(Options(path=str(moved), nonfinite="zero")).key() != key
    with pytest.raises(ValueError, match="no root group 'FACET'"):
        build_encoder(Options(path=str(moved), root="FACET")).key()
    write_csd(moved, "COVAREP", {"vid00": feature_rows("vid01")}, {"dimension names": NAMES})
    assert build_encoder(Options(path=str(moved))).key() != key  # other content, other cache
    # --csd naming another file than the config's features.covarep.path is refused
    out = CliRunner().invoke(cli, ["import-csd", "-c", str(mosei["config"]), "--modality", "covarep",
                                   "--csd", str(moved)])
    assert out.exit_code == 2 and "is not the file features.covarep.path names" in out.output


def test_nonfinite_zero_keeps_the_sample_with_zeros(mosei, tmp_path):
    out = CliRunner().invoke(cli, ["import-csd", "-c", str(mosei["config"]), "--modality", "covarep",
                                   "--set", "features.covarep.nonfinite=zero", "--set", f"cache.root={tmp_path}",
                                   "--max-failures", "5"])
    assert out.exit_code == 0, out.output
    config = load_config(mosei["config"], ["features.covarep.nonfinite=zero", f"cache.root={tmp_path}"])
    sample = interval_id(INF, 0.2, 1.3)
    batch = FeatureStore.for_config(config, "covarep").get([sample])
    want, _ = expected(INF, 0.2, 1.3)
    want[~np.isfinite(want)] = 0
    assert batch.present[0]
    np.testing.assert_array_equal(batch["frames"][0], want)


def test_train_unimodal_multilabel_over_the_imported_sequence(mosei, tmp_path):
    out = CliRunner().invoke(cli, ["train", "-c", str(mosei["config"]), "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert out.exit_code == 0, out.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["test"]["per_target"]) == set(EMOTIONS)
    assert metrics["run"]["missing"] == {"covarep": 6}
    preds = pd.read_csv(tmp_path / "run" / "predictions.csv", keep_default_na=False)
    assert len(preds) == 32 and (preds["missing"] == "covarep").sum() == 6
