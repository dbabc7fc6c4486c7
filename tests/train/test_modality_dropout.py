"""Modality dropout (ModDrop): hidden modalities look exactly like genuinely missing ones,
every sample keeps one modality it has, draws are seeded, and the trainer stays deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mer.train.config import TrainConfig
from mer.train.data import ModalityData, TrainData
from mer.train.modality_dropout import drop_modalities
from mer.train.models.common import Batch
from mer.train.models.concat import Concat
from mer.train.trainer import fit, seed_everything


def batch(n: int = 6000, absent_b: float = 0.3, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(n, d, generator=g) + 5.0 for m, d in (("a", 4), ("b", 3), ("c", 2))}
    present = {m: torch.ones(n, dtype=torch.bool) for m in x}
    present["b"] = torch.rand(n, generator=g) > absent_b
    x["b"] = x["b"] * present["b"][:, None]  # genuinely absent rows arrive as zeros
    y = torch.randint(0, 3, (n,), generator=g)
    return Batch(x=x, present=present, y=y, group_y=y)


def test_zero_probability_returns_the_batch_untouched():
    b = batch(50)
    assert drop_modalities(b, 0.0, torch.Generator().manual_seed(0)) is b


def test_hidden_entries_look_missing_and_the_rest_is_unchanged():
    b = batch()
    out = drop_modalities(b, 0.4, torch.Generator().manual_seed(1))
    for m in b.x:
        hidden = b.present[m] & ~out.present[m]
        assert not (out.present[m] & ~b.present[m]).any(), "an absent modality became present"
        assert (out.x[m][hidden] == 0).all()
        assert torch.equal(out.x[m][out.present[m]], b.x[m][out.present[m]])
    kept = torch.stack([out.present[m] for m in b.x], dim=1)
    assert kept.any(dim=1).all(), "a sample lost every modality"
    assert torch.equal(out.y, b.y) and torch.equal(out.group_y, b.group_y)
    # rate: a modality is hidden with p, except where that would empty the sample. For "a" with
    # b present (prob .7): P(hidden) = p − P(a is the one un-hidden of 3 all hidden) = .4 − .4³/3;
    # with b absent: .4 − .4²/2. Weighted: .7·(.4 − .064/3) + .3·(.4 − .08)
    expected_a = 0.7 * (0.4 - 0.064 / 3) + 0.3 * (0.4 - 0.08)
    rate_a = float((b.present["a"] & ~out.present["a"]).float().mean())
    assert rate_a == pytest.approx(expected_a, abs=0.02)


def test_draws_are_seeded():
    b = batch(500)
    one = drop_modalities(b, 0.5, torch.Generator().manual_seed(3))
    two = drop_modalities(b, 0.5, torch.Generator().manual_seed(3))
    three = drop_modalities(b, 0.5, torch.Generator().manual_seed(4))
    assert all(torch.equal(one.present[m], two.present[m]) for m in b.x)
    assert any(not torch.equal(one.present[m], three.present[m]) for m in b.x)


def test_a_single_modality_or_non_tensor_inputs_are_left_alone():
    b = batch(40)
    solo = Batch(x={"a": b.x["a"]}, present={"a": b.present["a"]}, y=b.y, group_y=b.group_y)
    assert drop_modalities(solo, 0.9, torch.Generator().manual_seed(0)) is solo
    padded = object()  # a sequence modality (mer.train.sequences.Padded) is not a Tensor
    mixed = Batch(x={"a": b.x["a"], "b": b.x["b"], "s": padded}, present=dict(b.present, s=b.present["a"]),
                  y=b.y, group_y=b.group_y)
    out = drop_modalities(mixed, 0.5, torch.Generator().manual_seed(0))
    assert out.x["s"] is padded and torch.equal(out.present["s"], mixed.present["s"])


def test_config_rejects_a_probability_of_one():
    with pytest.raises(ValueError, match="modality_dropout"):
        TrainConfig(modality_dropout=1.0)


def two_modality_data(n: int = 96) -> TrainData:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, n)
    mods = {}
    for m in ("a", "b"):
        x = rng.normal(size=(n, 3)) + y[:, None]
        mods[m] = ModalityData(m, "synth", "k", "pooled", present=torch.ones(n, dtype=torch.bool),
                               x=torch.tensor(x, dtype=torch.float32))
    split = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n // 4), dtype=object)
    return TrainData(ids=[f"s{i}" for i in range(n)], split=split, label_text=[str(v) for v in y], classes=["0", "1"],
                     multilabel=False, y=torch.tensor(y), labeled=torch.ones(n, dtype=torch.bool),
                     group_y=torch.tensor(y), num_groups=2, modalities=mods, manifest_fingerprint="f",
                     manifest_source="<memory>", device=torch.device("cpu"))


def weights_after_fit(p: float) -> list[torch.Tensor]:
    torch.set_num_threads(1)
    data = two_modality_data()
    train = TrainConfig(epochs=4, lr=0.01, patience=100, hidden=8, batch_size=16, modality_dropout=p)
    seed_everything(0)
    model = Concat(**Concat.from_config(train, data.inputs(), data.num_classes))
    fit(model, data, train, seed=0, progress=False)
    return [t.detach().clone() for t in model.state_dict().values()]


def test_training_with_modality_dropout_is_deterministic_and_changes_the_fit():
    first, again, plain = weights_after_fit(0.5), weights_after_fit(0.5), weights_after_fit(0.0)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, plain))
