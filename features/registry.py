"""Encoder families by name. Modules are imported lazily so that parsing a config never
imports transformers or opensmile for an encoder it does not use."""

from __future__ import annotations

import importlib

from mer.features.base import Encoder

# family name -> module under mer.features (or a full module path); each module defines ``Options`` (a dataclass
# whose ``encoder`` field is the family name) and ``ENCODER`` (the Encoder subclass).
FAMILIES: dict[str, str] = {
    "hf-text": "hf_text",
    "hf-audio": "hf_audio",
    "e4": "e4",
    "logmel": "logmel",
    "egemaps": "egemaps",
    "landmarks": "landmarks",
    "face-landmarks": "face_landmarks",
    "hf-vision": "hf_vision",
    "hf-video": "hf_video",
    "csd": "csd_seq",
}


def _module(family: str):
    """A registered family, or a custom encoder named by its module path (``mylab.encoders.prosody``,
    any importable module defining ``Options`` and ``ENCODER``; it must contain a dot)."""
    if family in FAMILIES:
        target = FAMILIES[family]
        return importlib.import_module(target if "." in target else f"mer.features.{target}")
    if "." in family:
        try:
            return importlib.import_module(family)
        except ModuleNotFoundError as exc:
            raise KeyError(f"custom encoder module {family!r} cannot be imported ({exc})") from None
    raise KeyError(f"unknown encoder {family!r}; known: {', '.join(sorted(FAMILIES))} "
                   f"(or a custom encoder's module path, e.g. mylab.encoders.prosody)")


def options_class(family: str) -> type:
    return _module(family).Options


def build_encoder(options) -> Encoder:
    """An (unloaded) encoder from its parsed options."""
    return _module(options.encoder).ENCODER(options)
