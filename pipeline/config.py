"""The experiment config: YAML files in ``configs/`` mapped onto dataclasses.

One file names the corpus (``dataset``), the cache (``cache``), one encoder per
modality (``features``), how to extract (``extract``) and what to train (``train``).
``--set key.sub=value`` overrides any field; an unknown key or a wrong type is an
error naming the key and the file. Every output folder stores the resolved config.

Relative paths in a config resolve against the current working directory, as with
most ML tools, so ``configs/demo.yaml`` run from the repository root finds ``data/demo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from mer.features.registry import options_class
from mer.pipeline.adapters import config_class
from mer.pipeline.cache import path_component_problem
from mer.pipeline.config_schema import ConfigError, TaggedBy, apply_overrides, from_dict, load_yaml, to_dict
from mer.train.config import TrainConfig
from mer.train.finetune_config import FinetuneConfig

DatasetSection = Annotated[object, TaggedBy("name", config_class)]
EncoderSection = Annotated[object, TaggedBy("encoder", options_class)]


@dataclass
class CacheConfig:
    #: cache root; features land in <root>/<corpus>/<modality>/<encoder key>/
    root: str = "cache"
    #: float dtype of stored features; float16 halves the bytes, float32 keeps every bit
    dtype: Literal["float16", "float32"] = "float16"
    #: samples per HDF5 shard (a shard is one Dask task and one atomic file)
    shard_size: int = 256

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError("shard_size must be >= 1")


@dataclass
class ExtractConfig:
    #: auto | cpu | cuda | cuda:1. Mixed precision is NOT set here but per encoder
    #: (``features.<m>.autocast``), because it changes the features and so belongs in the key.
    device: str = "auto"
    #: batches decoded ahead of the model by the prefetch thread pool (0 = no prefetch)
    prefetch: int = 4
    #: threads that decode/resample/preprocess ahead of the model
    io_threads: int = 2
    #: a count (e.g. 3) or a fraction (e.g. 0.01) of failed samples tolerated per modality
    max_failures: float = 0
    #: dask.distributed scheduler address; empty = the embedded local scheduler
    scheduler: str = ""
    #: >0 starts a LocalCluster with this many workers
    workers: int = 0


@dataclass
class ExperimentConfig:
    dataset: DatasetSection
    cache: CacheConfig = field(default_factory=CacheConfig)
    features: dict[str, EncoderSection] = field(default_factory=dict)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    #: ``mer finetune``: end-to-end fine-tuning of one encoder (optional stage)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    #: where outputs go (manifest, runs); relative to the working directory
    output: str = "runs"
    #: the file this config came from (set by the loader, not by users)
    source: str = field(default="", repr=False)

    @property
    def corpus(self) -> str:
        """Cache namespace of the corpus: ``dataset.corpus`` if set, else the adapter name."""
        return getattr(self.dataset, "corpus", "") or self.dataset.name

    def to_dict(self) -> dict[str, Any]:
        data = to_dict(self)
        data.pop("source", None)
        return data

    def dump(self, path: str | Path) -> Path:
        """Write the fully resolved config (what actually ran) as YAML."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")
        return path


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate a config file."""
    source = str(path)
    data = apply_overrides(load_yaml(path), list(overrides), source)
    data.pop("source", None)
    if "dataset" not in data:
        raise ConfigError(f"{source}: missing required key 'dataset'")
    config = from_dict(ExperimentConfig, data, source)
    config.source = source
    check_path_names(config, corpus_given=bool((data.get("dataset") or {}).get("corpus")))
    return config


def check_path_names(config: ExperimentConfig, corpus_given: bool = True) -> None:
    """The corpus and the ``features`` keys become folder names under the cache root (and in
    run folders): refuse any that could point elsewhere (``..``, ``a/b``)."""
    where = "'dataset.corpus'"
    if not corpus_given and getattr(config.dataset, "manifest", ""):
        where = f"the corpus name (from the manifest file name {Path(config.dataset.manifest).name!r})"
    names = [(where, config.corpus)] + [(f"the 'features' key {m!r}", m) for m in config.features]
    for what, name in names:
        problem = path_component_problem(name)
        if problem:
            raise ConfigError(f"{config.source}: {what} is used as a folder name under the cache root, but "
                              f"{problem}; set dataset.corpus / rename the key to a plain name")


__all__ = ["CacheConfig", "ConfigError", "ExperimentConfig", "ExtractConfig", "load_config"]
