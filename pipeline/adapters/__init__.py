"""Corpus adapters: a corpus on disk → a :class:`~mer.pipeline.manifest.Manifest`.

Each adapter module defines ``Config`` (a dataclass whose ``name`` field is the adapter
name, selected by ``dataset.name`` in a config) and ``build(config, progress=True) -> AdapterResult``.
Optionally:

* ``VERSION`` (int, default 1): bump it when the adapter builds a different manifest from the
  same ``dataset`` section; it is part of the dataset key, so older manifests are rebuilt.
* ``protocol(config) -> Protocol``: the protocol and fold the section selects, what the groups
  are and whether the protocol is speaker-independent (default: ``dataset.protocol`` or the
  manifest's own split, groups, speaker-independent).
* ``FOLD_FIELD`` and ``folds(config, manifest) -> list[(fold name, value)]``: the folds of the
  configured protocol family, and the value of ``dataset.<FOLD_FIELD>`` that selects each
  (``mer train --folds``, the ``folds`` axis of ``mer ablate``). Without them the corpus has
  one split and no cross-validation.

Modules are imported lazily.
"""

from __future__ import annotations

import importlib

from typing import Any

from mer.pipeline.adapters.base import AdapterResult, LayoutError, Protocol, Skip
from mer.pipeline.config_schema import ConfigError

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


def adapter_version(name: str) -> int:
    """The adapter's ``VERSION`` (1 when it declares none)."""
    return int(getattr(_module(name), "VERSION", 1))


def protocol_of(config) -> Protocol:
    """The protocol the ``dataset`` section selects (see the module docstring)."""
    module = _module(config.name)
    if hasattr(module, "protocol"):
        return module.protocol(config)
    return Protocol(str(getattr(config, "protocol", "") or "the manifest's split column"))


def folds_of(config, manifest) -> tuple[str, list[tuple[str, Any]]]:
    """(``dataset`` field, [(fold name, its value)]) of the configured protocol's folds.

    ConfigError when the adapter or the configured protocol has no folds (the message says
    which protocol has them).
    """
    module = _module(config.name)
    if not hasattr(module, "folds"):
        raise ConfigError(f"dataset {config.name!r} has one split and no cross-validation folds")
    try:
        folds = module.folds(config, manifest)
    except ValueError as exc:
        raise ConfigError(f"dataset {config.name!r}: {exc}") from None
    if not folds:
        raise ConfigError(f"dataset {config.name!r}: the manifest holds no fold")
    return module.FOLD_FIELD, folds


__all__ = ["ADAPTERS", "AdapterResult", "LayoutError", "Protocol", "Skip", "adapter_version", "build_manifest",
           "config_class", "folds_of", "protocol_of"]
