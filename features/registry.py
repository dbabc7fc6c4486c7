"""Encoder families by name. Modules are imported lazily so that parsing a config never
imports transformers or opensmile for an encoder it does not use."""

from __future__ import annotations

import importlib

from mer.features.base import Encoder

# family name -> module under mer.features; each module defines ``Options`` (a dataclass
# whose ``encoder`` field is the family name) and ``ENCODER`` (the Encoder subclass).
FAMILIES: dict[str, str] = {
    "hf-text": "hf_text",
    "hf-audio": "hf_audio",
    "e4": "e4",
    "logmel": "logmel",
    "egemaps": "egemaps",
    "landmarks": "landmarks",
}


def _module(family: str):
    if family not in FAMILIES:
        raise KeyError(f"unknown encoder {family!r}; known: {', '.join(sorted(FAMILIES))}")
    return importlib.import_module(f"mer.features.{FAMILIES[family]}")


def options_class(family: str) -> type:
    return _module(family).Options


def build_encoder(options) -> Encoder:
    """An (unloaded) encoder from its parsed options."""
    return _module(options.encoder).ENCODER(options)
