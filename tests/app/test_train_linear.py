"""``train.model=linear``: scikit-learn's logistic regression, C chosen on validation, as a mer run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from mer.ablate import ablate
from mer.cli import cli
from mer.config import load_config
from mer.experiment import train_experiment
from mer.train.evaluate import evaluate_run, load_checkpoint
from mer.train.models.linear import Linear
from kit.train_corpus import CLASSES, extract_all, make_corpus

QUIET = {"progress": False, "log": lambda line: None}
GRID = [1e-3, 0.01, 0.1, 10.0]
DIMS = {"text": 24, "audio": 16}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("linear")
    # many noisy dimensions for ~75 training rows, so that C matters; audio missing on some rows
    path, table = make_corpus(root, n=120, dims=DIMS, classes=CLASSES, val=True, noise=2.0, spread=0.5, missing={"audio": [3, 10, 17, 40, 41, 90]},
                              train={"plots": False, "linear": {"c": GRID}})
    extract_all(path)
    return path, table


def _vectors(table: pd.DataFrame, column: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    present = (table[column].fillna("") != "").to_numpy()
    x = np.zeros((len(table), dim))
    x[present] = [np.array(v.split(";"), float) for v in table.loc[present, column]]
    return x, present


def _by_hand(table: pd.DataFrame):
    """The features the linear model must see, from the corpus CSV (float64 throughout)."""
    table = table.sort_values("id").reset_index(drop=True)
    train = (table["split"] == "train").to_numpy()
    parts, flags = [], []
    for m, d in DIMS.items():
        x, present = _vectors(table, f"feat_{m}", d)
        rows = train & present  # standardised with the training split's present rows only
        mean, std = x[rows].mean(0), x[rows].std(0)
        parts.append(np.where(present[:, None], (x - mean) / std, 0.0))
        flags.append(present.astype(float))
    f = np.column_stack(parts + flags)
    mean, std = f[train].mean(0), f[train].std(0)
    f = (f - mean) / np.where(std > 1e-8, std, 1.0)
    y = table["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    return table, f, y


def test_linear_is_sklearn_logistic_regression_with_c_chosen_on_validation(corpus, tmp_path):
    path, table = corpus
    folder, _, _ = train_experiment(load_config(path, ["train.model=linear"]), tmp_path / "run", **QUIET)
    table, f, y = _by_hand(table)
    split = table["split"].to_numpy()
    tr, va = split == "train", split == "val"
    # every C of the grid, fitted on train and scored on val, as scikit-learn gives it
    scores = {}
    for c in GRID:
        lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000).fit(f[tr], y[tr])
        scores[c] = f1_score(y[va], lr.predict(f[va]), average="macro")
    history = pd.read_csv(folder / "history.csv")
    np.testing.assert_allclose(history["val_macro_f1"], [scores[c] for c in GRID], atol=1e-9)
    chosen = max(GRID, key=lambda c: (scores[c], -c))  # the best; the smallest C among ties
    assert len(set(scores.values())) > 1  # C mattered on this corpus
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["run"]["best_epoch"] == GRID.index(chosen) + 1
    assert metrics["run"]["best_val"] == pytest.approx(scores[chosen])
    # the run's probabilities are that regression's predict_proba, for every row (test included)
    lr = LogisticRegression(C=chosen, class_weight="balanced", max_iter=2000).fit(f[tr], y[tr])
    preds = pd.read_csv(folder / "predictions.csv", keep_default_na=False).sort_values("id")
    np.testing.assert_allclose(preds[[f"prob_{c}" for c in CLASSES]].to_numpy(), lr.predict_proba(f), atol=2e-4)
    assert (preds["prediction"].to_numpy() == np.array(CLASSES)[lr.predict(f)]).mean() > 0.98


def test_linear_run_reloads_and_reproduces_metrics_exactly(corpus, tmp_path):
    path, _ = corpus
    folder, _, _ = train_experiment(load_config(path, ["train.model=linear", "train.modalities=[audio]",
                                                       "train.select_metric=uar"]), tmp_path / "run", **QUIET)
    metrics = json.loads((folder / "metrics.json").read_text())
    for split in ("test", "val", "train"):
        assert json.loads(json.dumps(evaluate_run(folder, split))) == metrics[split], split
    ckpt = load_checkpoint(folder)
    assert ckpt["model"] == "linear" and ckpt["init_kwargs"]["inputs"][0]["name"] == "audio"
    out = CliRunner().invoke(cli, ["evaluate", str(folder), "--json"])
    assert out.exit_code == 0, out.output


def test_linear_without_class_weights_and_in_an_ablation(corpus, tmp_path):
    path, table = corpus
    folder, _, _ = train_experiment(load_config(path, ["train.model=linear", "train.class_weights=none",
                                                       "train.modalities=[text]", "train.linear.c=[0.1]"]),
                                    tmp_path / "run", **QUIET)
    table = table.sort_values("id").reset_index(drop=True)
    x, _ = _vectors(table, "feat_text", DIMS["text"])
    tr = (table["split"] == "train").to_numpy()
    x = (x - x[tr].mean(0)) / x[tr].std(0)
    y = table["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    lr = LogisticRegression(C=0.1, max_iter=2000).fit(x[tr], y[tr])  # no class_weight
    preds = pd.read_csv(folder / "predictions.csv", keep_default_na=False).sort_values("id")
    np.testing.assert_allclose(preds[[f"prob_{c}" for c in CLASSES]].to_numpy(), lr.predict_proba(x), atol=2e-4)

    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"model": ["linear"], "modalities": [["text"], ["text", "audio"]],
                                    "seeds": [0]}), encoding="utf-8")
    _, result = ablate(str(path), str(grid), out=str(tmp_path / "ablate"), progress=False, log=lambda s: None)
    assert list(result["status"]) == ["done", "done"] and result["test_uar"].notna().all()


def test_linear_refuses_a_learned_layer_mix_and_a_bad_grid(corpus):
    spec = {"name": "audio", "dim": 4, "layers": 3, "family": "hf-audio", "ragged": False, "layer": ""}
    with pytest.raises(ValueError, match="cannot learn train.layer=weighted"):
        Linear([spec], 3, layer="weighted")
    assert Linear([spec], 3, layer="1").in_dim == 5
    path, _ = corpus
    with pytest.raises(Exception, match="train.linear.c must be a non-empty list of distinct positive"):
        load_config(path, ["train.linear.c=[0.1, 0]"])
