"""``release_encoders``: loaded models are freed, and the costly full ``gc.collect()`` runs only
when a reference cycle would otherwise keep an encoder or its model alive."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
import torch

from mer.features.base import Encoder, OutputSpec
from mer.pipeline import shard_task


class ModelEncoder(Encoder):
    family = "test-model"
    columns = ("audio",)

    def __init__(self):
        super().__init__({})
        self._model = torch.nn.Linear(4, 3)

    def outputs(self):
        return [OutputSpec("x", (3,))]

    def prepare(self, row):
        return row

    def encode(self, batch):
        return [{"x": self._model(torch.zeros(4)).detach().numpy()} for _ in batch]


@pytest.fixture
def collections(monkeypatch):
    """Count full collections; automatic collection off, so only refcounting or an explicit
    gc.collect() can free anything during the test."""
    calls = []
    real = gc.collect

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(gc, "collect", counting)
    was_enabled = gc.isenabled()
    gc.disable()
    shard_task.release_encoders()
    calls.clear()
    yield calls
    if was_enabled:
        gc.enable()


def install(encoder: Encoder, slot: str = "k") -> None:
    """Register ``encoder`` as loaded, as :func:`shard_task.loaded_encoder` does."""
    shard_task._LOADED[(slot, "cpu")] = encoder
    shard_task._ENCODE_LOCKS[id(encoder)] = threading.Lock()


def test_refcount_frees_without_full_collection(collections):
    encoder = ModelEncoder()
    refs = [weakref.ref(encoder), weakref.ref(encoder._model), weakref.ref(encoder._model.weight)]
    install(encoder)
    del encoder
    assert all(r() is not None for r in refs)  # still loaded
    assert shard_task.release_encoders() == 1
    assert [r() for r in refs] == [None, None, None]
    assert collections == []
    assert shard_task._LOADED == {} and shard_task._ENCODE_LOCKS == {}


def test_model_in_a_cycle_is_collected(collections):
    encoder = ModelEncoder()
    encoder._model.loop = [encoder._model]  # the model survives the reference drop
    model = weakref.ref(encoder._model)
    install(encoder)
    del encoder
    assert shard_task.release_encoders() == 1
    assert len(collections) == 1
    assert model() is None


def test_encoder_in_a_cycle_is_collected(collections):
    encoder = ModelEncoder()
    encoder.me = encoder
    refs = [weakref.ref(encoder), weakref.ref(encoder._model)]
    install(encoder, "a")
    install(ModelEncoder(), "b")  # an acyclic one beside it changes nothing
    del encoder
    assert shard_task.release_encoders() == 2
    assert len(collections) == 1
    assert [r() for r in refs] == [None, None]


def test_nothing_loaded(collections):
    assert shard_task.release_encoders() == 0
    assert collections == []


def test_encoder_held_by_the_caller_stays_usable(collections):
    encoder = ModelEncoder()
    install(encoder)
    assert shard_task.release_encoders() == 1
    assert len(collections) == 1  # it could not be freed, so a collection was tried
    assert encoder.encode([{}])[0]["x"].shape == (3,)
