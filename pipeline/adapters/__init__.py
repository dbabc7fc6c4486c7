"""Corpus adapters: a corpus on disk → a :class:`~mer.pipeline.manifest.Manifest`.

Each adapter module defines ``Config`` (a dataclass whose ``name`` field is the adapter
name, selected by ``dataset.name`` in a config) and ``build(config, progress=True) -> AdapterResult``.
Modules are imported lazily.
"""

from __future__ import annotations

import importlib

from mer.pipeline.adapters.base import AdapterResult, LayoutError, Skip

ADAPTERS: dict[str, str] = {
    "generic": "generic",
    "demo": "demo",
    "kemdy20": "kemdy20",
    "ravdess": "ravdess",
    "mosei": "mosei",
    "meld": "meld",
    "cremad": "cremad",
    "e4": "e4_study",
}


def _module(name: str):
    if name not in ADAPTERS:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    return importlib.import_module(f"mer.pipeline.adapters.{ADAPTERS[name]}")


def config_class(name: str) -> type:
    return _module(name).Config


def build_manifest(config, progress: bool = True) -> AdapterResult:
    """Run the adapter named by ``config.name`` (``progress``: its progress bar, where it has one)."""
    return _module(config.name).build(config, progress=progress)


__all__ = ["ADAPTERS", "AdapterResult", "LayoutError", "Skip", "build_manifest", "config_class"]
