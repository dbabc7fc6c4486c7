"""A ``spec.json`` replaced by garbage is reported by ``mer cache verify`` and refused by the
readers and ``mer extract`` with one message naming the file (issue 15, item 7), never echoing
what the file holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from kit.toy_corpus import make_corpus, write_config

from mer.pipeline.cache import CacheError, scan
from mer.cli import cli
from mer.config import load_config
from mer.pipeline.extract import extract
from mer.pipeline.store import FeatureStore

GARBAGE = {
    "binary": (b"\xff\xfeSECRETLINE\x00", "not UTF-8 text (invalid byte at offset 0)"),
    "text": (b"root:x:0:0:SECRETLINE\n", "not valid JSON (Expecting value at line 1 column 1)"),
    "list": (b'["SECRETLINE"]', "not a JSON object (a JSON list)"),
    "object": (b'{"SECRETLINE": 1}', "it names no encoder 'key'"),
    "no outputs": (b'{"key": "k", "outputs": []}', "'outputs' is not a non-empty list"),
    "outputs": (b'{"key": "k", "outputs": [{"name": "SECRETLINE"}]}',
                "'outputs'[0] is not an output spec (name, shape, ragged)"),
    "format": (b'{"format": "SECRETLINE"}', "its 'format' is not 'mer-feature-cache'"),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("spec")
    csv, _ = make_corpus(root / "corpus", 6)
    config_path = write_config(root / "c.yaml", csv, root / "cache", shard_size=4)
    extract(load_config(config_path), progress=False)
    from mer.features.registry import build_encoder

    config = load_config(config_path)
    directory = Path(config.cache.root) / config.corpus / "audio" / build_encoder(config.features["audio"]).key()
    return config_path, directory


@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_cache_verify_reports_a_garbage_spec(built, case):
    config_path, directory = built
    spec = directory / "spec.json"
    original = spec.read_bytes()
    content, detail = GARBAGE[case]
    spec.write_bytes(content)
    try:
        assert scan(directory, verify=False).spec_problem == detail
        result = CliRunner().invoke(cli, ["cache", "verify", "--root", str(directory.parents[2])])
        assert result.exit_code == 1, result.output
        assert f"BAD-SPEC {spec}: {detail}" in result.output
        assert "remove each bad spec.json named above, then re-run mer extract" in result.output
        with pytest.raises(CacheError, match="spec.json") as info:
            FeatureStore(directory)
        extracted = CliRunner().invoke(cli, ["extract", "-c", str(config_path), "--no-progress"])
        assert extracted.exit_code == 2 and f"error: {spec}: {detail}" in extracted.output
        for text in (result.output, str(info.value), extracted.output):
            assert "SECRETLINE" not in text
    finally:
        spec.write_bytes(original)
    assert CliRunner().invoke(cli, ["cache", "verify", "--root", str(directory.parents[2])]).exit_code == 0


def test_a_removed_spec_is_rebuilt_by_extract(built):
    config_path, directory = built
    spec = directory / "spec.json"
    before = json.loads(spec.read_text())
    spec.unlink()
    result = CliRunner().invoke(cli, ["cache", "verify", "--root", str(directory.parents[2])])
    assert result.exit_code == 1 and "BAD-SPEC" in result.output and "missing" in result.output
    extract(load_config(config_path), progress=False)
    after = json.loads(spec.read_text())
    assert {k: after[k] for k in ("key", "outputs", "status")} == {k: before[k] for k in ("key", "outputs", "status")}
