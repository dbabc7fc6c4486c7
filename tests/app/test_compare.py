"""``mer compare``: paired over seeds for multi-seed results, over test samples for single runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats as sps

from mer.cli import cli
from mer.config import load_config
from mer.experiment import train_experiment
from kit.train_corpus import extract_all, make_corpus

QUIET = {"progress": False, "log": lambda line: None}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    path, _ = make_corpus(root, n=96, dims={"text": 6, "audio": 5}, noise=2.0, spread=1.0,
                          train={"plots": False, "epochs": 5})
    extract_all(path)
    out = {}
    for name, sets in {"concat": ["train.model=concat"], "unimodal": ["train.model=unimodal"]}.items():
        out[name], _, _ = train_experiment(load_config(path, sets), root / name, seeds=[0, 1, 2], **QUIET)
    return out


def _uar(folder, seed):
    return json.loads((folder / f"seed{seed}" / "metrics.json").read_text())["test"]["uar"]


def test_several_seeds_are_paired_by_seed(runs):
    res = CliRunner().invoke(cli, ["compare", str(runs["concat"]), str(runs["unimodal"]), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    a = [_uar(runs["concat"], s) for s in range(3)]
    b = [_uar(runs["unimodal"], s) for s in range(3)]
    assert out["runs"] == ["seed0", "seed1", "seed2"] and out["scores"] == {"a": a, "b": b}
    if a != b:
        assert out["test"]["p_values"]["t"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert out["summary_a"]["std"] == pytest.approx(np.std(a, ddof=1))
    text = CliRunner().invoke(cli, ["compare", str(runs["concat"]), str(runs["unimodal"])]).output
    assert "A − B" in text and "t p =" in text


def test_single_runs_are_paired_over_test_samples_and_mismatches_refused(runs, tmp_path):
    a, b = runs["concat"] / "seed0", runs["unimodal"] / "seed0"
    res = CliRunner().invoke(cli, ["compare", str(a), str(b), "--metric", "macro_f1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    ma = json.loads((a / "metrics.json").read_text())["test"]["macro_f1"]
    mb = json.loads((b / "metrics.json").read_text())["test"]["macro_f1"]
    assert out["test"]["method"] == "paired-samples"
    assert out["test"]["difference"] == pytest.approx(ma - mb)
    assert out["summary_a"]["interval"]["estimate"] == pytest.approx(ma)
    # a multi-seed folder against a single run: different runs, refused with exit code 2
    bad = CliRunner().invoke(cli, ["compare", str(runs["concat"]), str(b)])
    assert bad.exit_code == 2 and "pair results of the same folds and seeds" in bad.output
