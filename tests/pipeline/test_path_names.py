"""Names that become folder names under the cache root are validated (issue 15, item 10):
``dataset.corpus``, a ``features`` key and the corpus derived from a manifest file name
cannot make ``mer extract`` write outside the cache root."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from kit.toy_corpus import make_corpus, write_config

from mer.pipeline.cache import CacheError
from mer.pipeline.layout import encoder_dir, path_component_problem
from mer.cli import cli
from mer.config import load_config
from mer.pipeline.config_schema import ConfigError


@pytest.mark.parametrize("name,problem", [("..", "'..' is not a folder of its own"), (".", "'.' is not a folder of its own"),
                                          ("../../x", "it contains a path separator"),
                                          ("a\\b", "it contains a path separator"), ("", "it is empty"),
                                          ("  ", "it is empty"), ("x\ny", "it contains a control character"),
                                          ("x\0y", "it contains a control character")])
def test_bad_names_are_refused_with_their_reason(name, problem):
    assert path_component_problem(name) == problem
    with pytest.raises(CacheError, match="cannot be a folder name under the cache root"):
        encoder_dir("cache", name, "audio", "toy-0123")
    with pytest.raises(CacheError):
        encoder_dir("cache", "toy", name, "toy-0123")


@pytest.mark.parametrize("name", ["meld", "my corpus", "KEMDy20_v1.1", "..x", "x..", ".hidden", "naïve"])
def test_plain_names_pass(name):
    assert path_component_problem(name) is None
    assert encoder_dir("cache", name, "audio", "k") == Path("cache") / name / "audio" / "k"


def _outside(tmp_path: Path) -> list[str]:
    """Everything in tmp_path except what the test made on purpose."""
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if not str(p.relative_to(tmp_path)).startswith(("work", "cache")))


def test_corpus_override_cannot_escape_the_cache_root(tmp_path):
    csv, _ = make_corpus(tmp_path / "work" / "corpus", 4)
    config_path = write_config(tmp_path / "work" / "c.yaml", csv, tmp_path / "cache" / "a" / "b")
    with pytest.raises(ConfigError, match=r"'dataset.corpus' is used as a folder name .* path separator"):
        load_config(config_path, ["dataset.corpus=../../../x"])
    result = CliRunner().invoke(cli, ["extract", "-c", str(config_path), "--set", "dataset.corpus=../../../x"])
    assert result.exit_code == 2 and "'dataset.corpus'" in result.output
    assert _outside(tmp_path) == [] and not (tmp_path / "cache").exists()


def test_features_key_cannot_escape_the_cache_root(tmp_path):
    csv, _ = make_corpus(tmp_path / "work" / "corpus", 4)
    config_path = write_config(tmp_path / "work" / "c.yaml", csv, tmp_path / "cache" / "a" / "b",
                               features={"../../../../x": {"encoder": "kit.toy"}})
    result = CliRunner().invoke(cli, ["extract", "-c", str(config_path)])
    assert result.exit_code == 2 and "the 'features' key '../../../../x'" in result.output
    assert _outside(tmp_path) == [] and not (tmp_path / "cache").exists()


def test_a_manifest_named_dot_dot_dot_csv_is_refused(tmp_path):
    csv, _ = make_corpus(tmp_path / "work" / "corpus", 4)
    odd = csv.with_name("...csv")
    csv.rename(odd)
    config_path = write_config(tmp_path / "work" / "c.yaml", odd, tmp_path / "cache" / "a")
    data = yaml.safe_load(config_path.read_text())
    del data["dataset"]["corpus"]  # the generic adapter then names the corpus after the file: '..'
    config_path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"from the manifest file name '...csv'.*'..' is not a folder"):
        load_config(config_path)
    # naming the corpus makes the same manifest usable
    assert load_config(config_path, ["dataset.corpus=toy"]).corpus == "toy"
