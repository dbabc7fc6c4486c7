"""From a config to a manifest on disk: run the adapter, write manifest + skipped.csv.

Every command that needs the samples goes through :func:`prepare_manifest`, so the
manifest every stage joins on is always written next to its outputs with its fingerprint
and the dataset section it was built from.

Why the dataset section is recorded: a manifest is the split. Building it with
``dataset.protocol=fold1`` and then training with ``--set dataset.protocol=fold3`` used to
train on fold 1 while the run's config said fold 3. The recorded section (with the adapter
name and versions, hashed as the *dataset key*) lets a reader tell whether the manifest on
disk is the one its config describes (:func:`dataset_differences`). Each dataset section
gets its own file ``manifest-<key>.csv`` beside ``manifest.csv`` (the latest built), so
building another fold never rewrites the manifest an earlier run recorded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from mer.pipeline.adapters import AdapterResult, adapter_version, build_manifest
from mer.pipeline.config import PipelineConfig
from mer.pipeline.config_schema import to_dict
from mer.pipeline.layout import SKIPPED_NAME, plain_json
from mer.pipeline.manifest import MANIFEST_FORMAT

#: the metadata key (in ``manifest.csv.json``) of the dataset record
DATASET_KEY = "dataset"


def manifest_path(config: PipelineConfig) -> Path:
    """``<cache root>/<corpus>/manifest.csv``: beside the features built from it."""
    return config.layout.manifest_path


def dataset_record(dataset: Any) -> dict[str, Any]:
    """What a manifest is a function of: the adapter, its version, the manifest format and the
    ``dataset`` section, as plain JSON."""
    return {"adapter": dataset.name, "adapter_version": adapter_version(dataset.name),
            "manifest_format": MANIFEST_FORMAT, "section": plain_json(to_dict(dataset))}


def dataset_key(dataset: Any) -> str:
    """A short hash of :func:`dataset_record` (names ``manifest-<key>.csv``)."""
    text = json.dumps(dataset_record(dataset), sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def recorded_dataset(path: str | Path) -> dict[str, Any] | None:
    """The dataset record in ``<path>.json``; None when there is none (an older ``mer`` wrote it)."""
    meta = Path(path).with_name(Path(path).name + ".json")
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    record = data.get(DATASET_KEY) if isinstance(data, dict) else None
    return record if isinstance(record, dict) and "section" in record else None


def dataset_differences(recorded: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """What differs between a recorded dataset record and the wanted one, one item per field
    (``protocol: 'fold1' -> 'fold3'``); empty when they are the same."""
    if recorded is None:
        return ["the manifest records no dataset section (written by an older mer)"]
    out = [f"{k}: {recorded.get(k)!r} -> {wanted[k]!r}" for k in ("adapter", "adapter_version", "manifest_format")
           if recorded.get(k) != wanted[k]]
    old, new = recorded.get("section") or {}, wanted["section"]
    for k in sorted(set(old) | set(new)):
        if old.get(k) != new.get(k):
            out.append(f"dataset.{k}: {old.get(k)!r} -> {new.get(k)!r}")
    return out


def prepare_manifest(config: PipelineConfig, out: str | Path | None = None,
                     progress: bool = True) -> tuple[AdapterResult, Path]:
    """Run the corpus adapter and write the manifest (+ ``.json``) and ``skipped.csv``.

    Without ``out``: ``manifest.csv`` and ``manifest-<dataset key>.csv`` under the cache root;
    the returned path is the keyed one (what a run records). With ``out``: that file only.
    """
    result = build_manifest(config.dataset, progress=progress)
    key = dataset_key(config.dataset)
    result.manifest.extra.update({DATASET_KEY: dataset_record(config.dataset), "dataset_key": key})
    if out:
        path = Path(out)
        result.manifest.save(path)
    else:
        result.manifest.save(manifest_path(config))
        path = result.manifest.save(config.layout.keyed_manifest_path(key))
    result.write_skipped(path.with_name(SKIPPED_NAME))
    return result, path


__all__ = ["dataset_differences", "dataset_key", "dataset_record", "manifest_path", "prepare_manifest",
           "recorded_dataset"]
