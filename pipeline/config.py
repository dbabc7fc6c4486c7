"""The pipeline's own config sections: the corpus (``dataset``), the cache, one encoder per
modality (``features``) and how to extract (``extract``).

These are what the pipeline stages (manifest, extraction, CSD import, the cache) take. The
experiment config of the application (:mod:`mer.config`) composes them with the training
sections and is the only place that reads YAML files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from mer.features.registry import options_class
from mer.pipeline.adapters import config_class
from mer.pipeline.config_schema import ConfigError, TaggedBy
from mer.pipeline.layout import CacheLayout, path_component_problem

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
class PipelineConfig:
    """The sections the pipeline stages read; nothing about training."""

    dataset: DatasetSection
    cache: CacheConfig = field(default_factory=CacheConfig)
    features: dict[str, EncoderSection] = field(default_factory=dict)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    #: the file this config came from, for messages (set by the loader, not by users)
    source: str = field(default="", repr=False)

    @property
    def corpus(self) -> str:
        """Cache namespace of the corpus: ``dataset.corpus`` if set, else the adapter name."""
        return getattr(self.dataset, "corpus", "") or self.dataset.name

    @property
    def layout(self) -> CacheLayout:
        return CacheLayout(self.cache.root, self.corpus)


def check_path_names(config: PipelineConfig, corpus_given: bool = True) -> None:
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


__all__ = ["CacheConfig", "DatasetSection", "EncoderSection", "ExtractConfig", "PipelineConfig", "check_path_names"]
