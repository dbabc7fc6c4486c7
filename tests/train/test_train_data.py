"""The data path through REAL caches (``mer extract`` with the test encoder
``kit.synth``): join by id, presence, NaN exclusion, train-only standardisation,
labels, the carved validation split, and the refusal when a cache is missing."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mer.config import load_config
from mer.pipeline.cache import read_sidecar, sha256_file, write_json
from mer.pipeline.corpus import prepare_manifest
from mer.pipeline.manifest import Manifest
from mer.train.data import ManifestRows, resolve_splits
from mer.train.errors import CacheError, DataError, DataWarning
from mer.experiment import load_experiment_data, manifest_for, modality_sources
from mer.train.trainer import fit, seed_everything
from kit.train_corpus import extract_all, make_corpus

MISSING = [3, 10, 11]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    path, table = make_corpus(root, n=60, dims={"text": 4, "audio": 3}, layers={"text": 2},
                              missing={"audio": MISSING}, unlabeled=[5])
    extract_all(path)
    return path, table


def parsed(table, m: str, shape) -> dict[str, np.ndarray]:
    return {i: np.array([float(v) for v in s.split(";")]).reshape(shape)
            for i, s in zip(table["id"], table[f"feat_{m}"]) if s}


def test_join_by_id_presence_and_train_only_standardisation(corpus):
    path, table = corpus
    config = load_config(path)
    manifest, _ = manifest_for(config)
    data = load_experiment_data(config, manifest, ["text", "audio"])
    assert data.ids == sorted(table["id"])
    audio = data.modalities["audio"]
    absent_ids = {table["id"][r] for r in MISSING}
    assert {i for i, p in zip(data.ids, audio.present.tolist()) if not p} == absent_ids
    assert (audio.x[~audio.present] == 0).all()
    # standardised with the statistics of the present TRAINING rows only
    raw = parsed(table, "audio", (3,))
    train_ids = [i for i, s in zip(data.ids, data.split) if s == "train" and i in raw]
    values = np.stack([raw[i] for i in train_ids])
    np.testing.assert_allclose(audio.stats["mean"], values.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(audio.stats["std"], values.std(0), rtol=1e-5)
    # every present row is ITS id's features (a row-position join would shift after the gaps)
    for k, i in enumerate(data.ids):
        if i in raw:
            back = audio.x[k].numpy() * audio.stats["std"] + audio.stats["mean"]
            np.testing.assert_allclose(back, raw[i], rtol=1e-4, atol=1e-4)
    text = data.modalities["text"]
    assert text.x.shape == (60, 2, 4) and text.layers == 2  # all-layer cache kept whole
    assert text.stats["mean"].shape == (2, 4)
    # the unlabeled row stays in the table but not in any split's supervised rows
    unl = data.ids.index(table["id"][5])
    assert not bool(data.labeled[unl]) and int(data.y[unl]) == -1
    assert unl not in set(data.rows("train")) | set(data.rows("val")) | set(data.rows("test"))
    assert data.missing_text()[data.ids.index(table["id"][3])] == "audio"


def test_rows_by_split_and_label_with_numpy_or_tensor_labels():
    # the one row rule of TrainData.rows and FinetuneData.rows (ManifestRows), against hand-picked indices
    @dataclasses.dataclass
    class View(ManifestRows):
        ids: list
        split: np.ndarray
        classes: list
        labeled: object

    split = np.array(["train", "val", "train", "test", "", "train"], dtype=object)
    mask = np.array([True, True, False, True, True, True])
    for labeled in (mask, torch.as_tensor(mask)):
        view = View(list("abcdef"), split, ["x", "y"], labeled)
        assert len(view) == 6 and view.num_classes == 2
        assert view.rows("train").tolist() == [0, 5]
        assert view.rows("train", labeled_only=False).tolist() == [0, 2, 5]
        assert view.rows("all").tolist() == [0, 1, 3, 4, 5]
        assert view.rows("all", labeled_only=False).tolist() == [0, 1, 2, 3, 4, 5]
        assert view.rows("other").tolist() == []


def test_changing_a_test_sample_does_not_change_the_statistics(corpus, tmp_path):
    path, table = corpus
    config = load_config(path)
    data = load_experiment_data(config, manifest_for(config)[0], ["audio"])
    # the same corpus with one test sample's features changed, in a fresh cache
    changed = table.copy()
    r = int(np.flatnonzero((changed["split"] == "test") & (changed["feat_audio"] != ""))[0])
    changed.loc[r, "feat_audio"] = "100;-50;7"
    changed.to_csv(tmp_path / "corpus.csv", index=False)
    other = load_config(path, [f"dataset.manifest={tmp_path / 'corpus.csv'}", f"cache.root={tmp_path / 'cache'}"])
    extract_all(Path(path), ["audio"], [f"dataset.manifest={tmp_path / 'corpus.csv'}", f"cache.root={tmp_path / 'cache'}"])
    data2 = load_experiment_data(other, manifest_for(other)[0], ["audio"])
    np.testing.assert_array_equal(data.modalities["audio"].stats["mean"], data2.modalities["audio"].stats["mean"])
    np.testing.assert_array_equal(data.modalities["audio"].stats["std"], data2.modalities["audio"].stats["std"])
    k = data.ids.index(changed["id"][r])
    assert not torch.equal(data.modalities["audio"].x[k], data2.modalities["audio"].x[k])


def republish(h5: Path) -> None:
    """Make a shard edited in place complete again: its sidecar gets the new size and sha256."""
    side = h5.with_suffix(".json")
    meta = read_sidecar(side)
    meta.update(sha256=sha256_file(h5), bytes=h5.stat().st_size)
    write_json(side, meta)


def test_nan_features_are_reported_and_excluded(corpus, tmp_path):
    path, table = corpus
    # copy the cache, then put a NaN into one stored sample (the extractor itself refuses NaN)
    import shutil

    config = load_config(path)
    src = modality_sources(config, ["audio"])["audio"]
    cache_copy = tmp_path / "cache"
    shutil.copytree(Path(config.cache.root), cache_copy)
    config = load_config(path, [f"cache.root={cache_copy}"])
    src = modality_sources(config, ["audio"])["audio"]
    victim = sorted(i for i, s in zip(table["id"], table["feat_audio"]) if s and table["split"][list(table["id"]).index(i)] == "train")[2]
    for shard in sorted(src.dir.glob("shard-*.h5")):
        with h5py.File(shard, "r+") as f:
            ids = list(f["ids"].asstr()[:])
            if victim in ids:
                f["pooled"][ids.index(victim), 1] = np.nan
                edited = shard
    republish(edited)  # as if the writer had stored the NaN: readers refuse bytes that differ from the sidecar
    with pytest.warns(DataWarning, match=rf"1 sample\(s\) have NaN/inf features .*{victim}"):
        data = load_experiment_data(config, manifest_for(config)[0], ["text", "audio"])
    k = data.ids.index(victim)
    audio = data.modalities["audio"]
    assert not bool(audio.present[k]) and (audio.x[k] == 0).all()
    assert np.isfinite(audio.stats["mean"]).all() and np.isfinite(audio.stats["std"]).all()
    assert any(victim in note for note in data.notes)
    # training on it: every loss term stays finite
    config.train.model, config.train.epochs = "lmr", 2
    config.train.lmr.branch = {"text": "identity", "audio": "identity"}  # small and fast
    from mer.train.models.lmr import LMR

    seed_everything(0)
    model = LMR(**LMR.from_config(config.train, data.inputs(), data.num_classes))
    result = fit(model, data, config.train, seed=0, progress=False)
    for row in result.history:
        assert all(np.isfinite(v) for k2, v in row.items() if k2.startswith("loss"))


def test_val_is_carved_from_training_groups_deterministically(corpus):
    path, _ = corpus
    manifest = manifest_for(load_config(path))[0]
    a = resolve_splits(manifest, "split", 0.15, seed=0)
    b = resolve_splits(manifest, "split", 0.15, seed=0)
    c = resolve_splits(manifest, "split", 0.5, seed=3)
    assert a.val_carved and a.val_groups == b.val_groups and (a.split == b.split).all()
    groups = manifest.df["group"].to_numpy()
    original = manifest.df["split"].to_numpy()
    train_groups = set(groups[original == "train"])
    assert len(a.val_groups) == round(0.15 * len(train_groups))  # 6 training groups -> 1
    assert set(a.val_groups) <= train_groups and set(c.val_groups) <= train_groups
    assert (original[a.split == "val"] == "train").all()  # never taken from test
    assert set(groups[a.split == "val"]) == set(a.val_groups)
    assert (a.split[original == "test"] == "test").all()
    assert "carved 1 of 6 training groups" in a.note


def test_an_existing_val_split_is_used_as_is(tmp_path):
    path, _ = make_corpus(tmp_path, n=24, dims={"text": 3}, val=True)
    manifest = Manifest.load(path.parent / "corpus.csv")
    info = resolve_splits(manifest, "split", 0.15, seed=0)
    assert not info.val_carved and (info.split == manifest.df["split"].to_numpy()).all()


def test_multilabel_targets_are_multi_hot(tmp_path):
    path, table = make_corpus(tmp_path, n=30, dims={"text": 3}, multilabel=True)
    extract_all(path)
    config = load_config(path)
    data = load_experiment_data(config, manifest_for(config)[0], ["text"])
    assert data.multilabel and data.y.shape == (30, 3) and data.y.dtype == torch.float32
    for k, i in enumerate(data.ids):
        want = set(table.loc[table["id"] == i, "label"].item().split(";"))
        got = {c for c, v in zip(data.classes, data.y[k].tolist()) if v}
        assert got == want
    # contrastive groups: equal label sets <=> equal group ids
    y = data.y.numpy()
    g = data.group_y.numpy()
    same_set = (y[:, None, :] == y[None, :, :]).all(-1)
    assert (same_set == (g[:, None] == g[None, :])).all()


def test_unknown_label_outside_the_classes_is_an_error(corpus):
    path, _ = corpus
    config = load_config(path, ["train.classes=[ang, hap]"])
    with pytest.raises(DataError, match=r"label\(s\) \['neu'\] are not among the classes"):
        load_experiment_data(config, manifest_for(config)[0], ["text"])


def test_missing_cache_refuses_with_the_extract_command(corpus, tmp_path):
    path, _ = corpus
    config = load_config(path, ["features.audio.dim=9"])  # another encoder key: no such cache
    with pytest.raises(CacheError) as err:
        load_experiment_data(config, manifest_for(config)[0], ["text", "audio"], overrides=["features.audio.dim=9"])
    msg = str(err.value)
    assert f"mer extract -c {path} --set features.audio.dim=9 --modality audio" in msg
    assert "--modality text" not in msg
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_experiment_data(load_config(path), manifest_for(config)[0], ["text"])  # text alone is fine


def test_layer_choice_names_the_cached_hidden_states(corpus):
    from mer.train.data import resolve_layer

    assert resolve_layer("8", 3, [4, 8, 12], "x") == "1"
    assert resolve_layer("-1", 3, [4, 8, 12], "x") == "-1"
    assert resolve_layer("weighted", 3, [4, 8, 12], "x") == "weighted"
    assert resolve_layer("2", 3, None, "x") == "2"
    with pytest.raises(DataError, match=r"not among the cached layers \[4, 8, 12\]"):
        resolve_layer("5", 3, [4, 8, 12], "x")
    with pytest.raises(DataError, match="out of range"):
        resolve_layer("3", 3, None, "x")
    path, _ = corpus
    config = load_config(path, ["train.layer=0"])
    data = load_experiment_data(config, manifest_for(config)[0], ["text", "audio"])
    assert data.modalities["text"].layer == "0" and data.modalities["audio"].layer == ""
    from mer.train.models.concat import Concat

    model = Concat(**Concat.from_config(config.train, data.inputs(), data.num_classes)).eval()
    x = data.modalities["text"].x[:4]
    present = torch.ones(4, dtype=torch.bool)
    torch.testing.assert_close(model.inputs["text"](x, present), x[:, 0])


def test_a_modality_no_sample_has_is_refused_before_any_encoder_is_built(tmp_path, monkeypatch):
    path, _ = make_corpus(tmp_path, n=24, dims={"text": 3, "audio": 2}, missing={"audio": list(range(24))})
    config = load_config(path)
    prepare_manifest(config)  # what `mer manifest` / `mer extract` write first

    def must_not_build(options):  # resolving a hub model would go online
        raise AssertionError("an encoder was built for a modality no sample has")

    monkeypatch.setattr("mer.features.registry.build_encoder", must_not_build)
    with pytest.raises(DataError, match=r"no sample has modality 'audio' \(manifest column 'feat_audio' is empty "
                                        r"in all 24 rows\); train on the others: --set train.modalities=\[text\]"):
        load_experiment_data(config, manifest_for(config)[0], ["text", "audio"])
