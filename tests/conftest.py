"""Fixtures shared by the whole suite; helpers live in ``tests/kit/``.

Tests mirror the packages: ``features/``, ``pipeline/``, ``train/`` and ``app/`` (the CLI,
the experiment config, demo and ablation, and end-to-end runs).
"""

from __future__ import annotations

import pytest
import torch


def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_thread():
    """Torch on one thread for a test: tiny models are dominated by OpenMP synchronisation on a
    shared CI machine, and one thread is both faster and deterministic."""
    yield from _single_thread()


@pytest.fixture(scope="module")
def one_thread_module():
    """:func:`one_thread` for a whole module, its module-scoped fixtures included."""
    yield from _single_thread()
