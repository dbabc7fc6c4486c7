"""The training loop on in-memory TrainData: schedules, early stopping with the best state
restored, balanced sampling, optimisers. (The data path itself is tested through real caches
in test_train_data.py.)"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from mer.train.config import TrainConfig
from mer.train.criterion import Criterion
from mer.train.data import ModalityData, TrainData
from mer.train.models.concat import Concat
from mer.train.trainer import epoch_order, fit, sampling_weights, score_split, seed_everything


pytestmark = pytest.mark.usefixtures("one_thread")


def memory_data(n: int = 80, counts=(0.75, 0.25), seed: int = 0, noise: float = 1.0) -> TrainData:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) > counts[0]).astype(np.int64)
    x = rng.normal(size=(n, 3)) * noise + y[:, None] * 2.0
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4), dtype=object)
    mod = ModalityData("a", "synth", "k", "pooled", present=torch.ones(n, dtype=torch.bool),
                       x=torch.tensor(x, dtype=torch.float32))
    return TrainData(ids=[f"s{i:03d}" for i in range(n)], split=split, label_text=["c0", "c1"] * (n // 2),
                     classes=["c0", "c1"], multilabel=False, y=torch.tensor(y), labeled=torch.ones(n, dtype=torch.bool),
                     group_y=torch.tensor(y), num_groups=2, modalities={"a": mod}, manifest_fingerprint="f",
                     manifest_source="<memory>", device=torch.device("cpu"))


def model_for(data: TrainData, train: TrainConfig) -> Concat:
    seed_everything(0)
    return Concat(**Concat.from_config(train, data.inputs(), data.num_classes))


@pytest.mark.parametrize("schedule,expected", [("step", [0.1, 0.1, 0.05, 0.05, 0.025]),
                                               ("cosine", [0.1 * (1 + np.cos(np.pi * e / 5)) / 2 for e in range(5)]),
                                               ("none", [0.1] * 5)])
def test_lr_schedules(schedule, expected):
    data = memory_data()
    train = TrainConfig(epochs=5, lr=0.1, schedule=schedule, step_size=2, step_gamma=0.5, patience=100, hidden=4,
                        batch_size=16)
    result = fit(model_for(data, train), data, train, seed=0, progress=False)
    assert [h["lr"] for h in result.history] == pytest.approx(expected)


def test_early_stopping_restores_the_best_epoch():
    data = memory_data(noise=3.0)
    train = TrainConfig(epochs=40, lr=0.05, patience=3, hidden=8, batch_size=8, optimizer="sgd")
    model = model_for(data, train)
    result = fit(model, data, train, seed=0, progress=False)
    scores = [h["val_macro_f1"] for h in result.history]
    best = int(np.argmax(scores))  # the first of the best scores
    assert result.best_epoch == best + 1 and result.best_score == scores[best]
    assert result.stopped_early and len(scores) == result.best_epoch + train.patience < train.epochs
    assert scores[-1] != result.best_score  # the last epoch's weights are not the ones kept
    # the weights in the model are the best epoch's: re-scoring gives its validation score
    again = score_split(model, data, "val", Criterion(False), fast=True)["macro_f1"]
    assert again == pytest.approx(result.best_score, abs=1e-12)


def test_balanced_sampling_draws_classes_evenly_and_is_seeded():
    data = memory_data(n=400, counts=(0.9, 0.1))
    rows = data.rows("train")
    weights = sampling_weights(data, rows)
    y = data.y[torch.as_tensor(rows)].numpy()
    n1 = (y == 1).sum()
    np.testing.assert_allclose(weights.numpy(), np.where(y == 1, 1 / n1, 1 / (len(y) - n1)))
    g = torch.Generator().manual_seed(0)
    draws = np.concatenate([y[epoch_order(len(rows), g, weights).numpy()] for _ in range(20)])
    assert abs(draws.mean() - 0.5) < 0.05  # vs 0.1 without balancing
    a = epoch_order(len(rows), torch.Generator().manual_seed(3), weights)
    b = epoch_order(len(rows), torch.Generator().manual_seed(3), weights)
    assert torch.equal(a, b)
    train = TrainConfig(epochs=2, balanced_sampling=True, hidden=4)
    result = fit(model_for(data, train), data, train, seed=0, progress=False)
    assert len(result.history) == 2


def test_fit_does_not_touch_test_rows():
    """Changing every test sample's features changes nothing the trainer does."""
    data = memory_data()
    train = TrainConfig(epochs=4, lr=0.05, hidden=4, batch_size=8)
    changed = copy.deepcopy(data)
    test = torch.as_tensor(data.rows("test"))
    changed.modalities["a"].x[test] = 100.0
    changed.y[test] = 1 - changed.y[test]
    a = fit(model_for(data, train), data, train, seed=0, progress=False)
    b = fit(model_for(changed, train), changed, train, seed=0, progress=False)
    assert a.history == b.history
