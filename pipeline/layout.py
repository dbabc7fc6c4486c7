"""Where everything lives under a cache root: the one module that builds those paths.

Layout::

    <cache root>/<corpus>/manifest.csv             the latest manifest built (what ``mer extract`` wrote)
    <cache root>/<corpus>/manifest.csv.json        its metadata (fingerprint, dataset section)
    <cache root>/<corpus>/manifest-<key>.csv       the manifest of one dataset section (<key> = its hash):
                                                   what runs read and record, so that building another
                                                   fold never changes the manifest an earlier run used
    <cache root>/<corpus>/skipped.csv              files the adapter left out, with the reason
    <cache root>/<corpus>/<modality>/<encoder key>/ one encoder's shards (see :mod:`.cache`)

Why one module: the corpus folder, the manifest beside the features and the encoder folders
are read by extraction, training, evaluation, fine-tuning and ``mer cache``; built in one
place, they cannot drift apart.

Training does not recompute encoder keys (that can hash a weight folder or ask a model hub):
:func:`recorded_key` finds the key that extraction recorded in ``spec.json`` for the same
encoder options.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

class CacheError(RuntimeError):
    """The cache cannot be used as asked: missing, incomplete, corrupt, the wrong encoder or dtype,
    or a name that cannot be a folder under the cache root. Training and the CLI use this one class."""


MANIFEST_NAME = "manifest.csv"
SKIPPED_NAME = "skipped.csv"
SPEC_NAME = "spec.json"


def path_component_problem(name: str) -> str | None:
    """Why ``name`` cannot be ONE folder name under the cache root (so that nothing is ever
    written outside it), or None: empty, ``.``/``..``, a path separator, or a control character."""
    if not isinstance(name, str) or not name.strip():
        return "it is empty"
    if name in (".", ".."):
        return f"{name!r} is not a folder of its own"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it contains a control character"
    return None


def check_component(what: str, name: str, root: Path | str) -> str:
    problem = path_component_problem(name)
    if problem:
        raise CacheError(f"{what} {name!r} cannot be a folder name under the cache root {root}: {problem}")
    return name


@dataclass(frozen=True)
class CacheLayout:
    """The folders of one corpus under one cache root; every name is checked to be one plain folder."""

    root: Path
    corpus: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def corpus_dir(self) -> Path:
        return self.root / check_component("corpus", self.corpus, self.root)

    @property
    def manifest_path(self) -> Path:
        """``<root>/<corpus>/manifest.csv``: beside the features built from it."""
        return self.corpus_dir / MANIFEST_NAME

    def keyed_manifest_path(self, key: str) -> Path:
        """``<root>/<corpus>/manifest-<key>.csv``: the manifest of the dataset section hashed as ``key``."""
        return self.corpus_dir / f"manifest-{check_component('dataset key', key, self.root)}.csv"

    def modality_dir(self, modality: str) -> Path:
        return self.corpus_dir / check_component("modality", modality, self.root)

    def encoder_dir(self, modality: str, key: str) -> Path:
        return self.modality_dir(modality) / check_component("encoder key", key, self.root)


def encoder_dir(root: str | Path, corpus: str, modality: str, key: str) -> Path:
    """``<root>/<corpus>/<modality>/<key>/``."""
    return CacheLayout(Path(root), corpus).encoder_dir(modality, key)


def corpus_of(manifest_path: str | Path) -> CacheLayout:
    """The layout a manifest written by ``mer extract`` sits in (its features are beside it)."""
    path = Path(manifest_path)
    return CacheLayout(path.parent.parent, path.parent.name)


def candidate_encoder_dirs(root: str | Path) -> Iterator[Path]:
    """Every ``<root>/<corpus>/<modality>/<key>/`` folder, sorted (the caller checks its content)."""
    root = Path(root)
    if not root.is_dir():
        return
    for corpus in sorted(p for p in root.iterdir() if p.is_dir()):
        for modality in sorted(p for p in corpus.iterdir() if p.is_dir()):
            yield from sorted(p for p in modality.iterdir() if p.is_dir())


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def plain_json(obj: Any) -> Any:
    """Key material as plain JSON (paths, tuples), as ``spec.json`` stores it and the key's hash sees it."""
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def recorded_keys(layout: CacheLayout, modality: str, options_material: dict[str, Any]) -> list[str]:
    """The encoder keys whose ``spec.json`` records these options (family, code version, options).

    ``options_material`` is :meth:`mer.features.base.Encoder.options_material`; it is compared
    as the plain JSON that ``spec.json`` stores. The model identity (weights hash, hub revision) is not compared: it is what
    training must not recompute; two matches mean two weight versions with the same options.
    """
    wanted = plain_json(options_material)
    folder = layout.modality_dir(modality)
    if not folder.is_dir():
        return []
    found = []
    for directory in sorted(p for p in folder.iterdir() if p.is_dir()):
        spec = _read_json(directory / SPEC_NAME)
        encoder = (spec or {}).get("encoder")
        if not isinstance(encoder, dict):
            continue
        recorded = {k: encoder.get(k) for k in wanted}
        if recorded == wanted and spec.get("key") == directory.name:
            found.append(directory.name)
    return found
