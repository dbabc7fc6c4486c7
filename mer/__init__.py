"""mer: multimodal emotion recognition.

The code lives in three packages, one per stage of the one-way data flow:
``mer.pipeline`` (corpus adapters, manifests, extraction orchestration, CLI),
``mer.features`` (frozen encoders) and ``mer.train`` (heads, losses, trainer,
evaluation).

``mer.load_run(path)`` loads a trained run for prediction (:mod:`mer.predict`). It is a lazy
attribute: ``import mer.features...`` from the lower layers runs this file, and must not import
the application (torch, the trainer, the CLI) with it.
"""

from typing import Any

__version__ = "0.1.0"

#: attributes resolved on first use: name -> (module, attribute)
_LAZY = {"load_run": ("mer.predict", "load_run")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'mer' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
