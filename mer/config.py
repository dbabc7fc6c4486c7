"""The experiment config: one YAML file mapped onto the stages' own sections.

One file names the corpus (``dataset``), the cache (``cache``), one encoder per modality
(``features``), how to extract (``extract``), what to train (``train``), the optional
fine-tuning stage (``finetune``) and where runs go (``output``). The pipeline's sections are
:class:`mer.pipeline.config.PipelineConfig`; the training sections are
:class:`mer.train.config.TrainConfig` and :class:`mer.train.finetune_config.FinetuneConfig`.
Only this application layer reads YAML and composes them.

``--set key.sub=value`` overrides any field; an unknown key or a wrong type is an error naming
the key and the file. Changing the tag of a tagged section from the command line
(``--set features.audio.encoder=egemaps``, ``--set dataset.name=...``) starts that section from
the new type's defaults: the file's other keys of that section are dropped, and a note says
which. Every output folder stores the resolved config.

Relative paths in a config resolve against the current working directory, as with most ML
tools, so ``configs/demo.yaml`` run from the repository root finds ``data/demo``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mer.pipeline.config import CacheConfig, ExtractConfig, PipelineConfig, check_path_names
from mer.pipeline.config_schema import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from mer.train.config import TrainConfig
from mer.train.finetune_config import FinetuneConfig

#: keys that choose a section's type: (path of the section's parent, tag key)
TAGGED_SECTIONS = (("dataset", "name"), ("features.*", "encoder"))
SECTION_ORDER = ("dataset", "cache", "features", "extract", "train", "finetune", "output")


@dataclass
class ExperimentConfig(PipelineConfig):
    train: TrainConfig = field(default_factory=TrainConfig)
    #: ``mer finetune``: end-to-end fine-tuning of one encoder (optional stage)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    #: where outputs go (runs, ablations); relative to the working directory
    output: str = "runs"
    #: what the loader changed and the user should know (printed by the CLI; not saved)
    notes: list[str] = field(default_factory=list, init=False, repr=False, compare=False)

    @property
    def pipeline(self) -> PipelineConfig:
        """The pipeline stages' sections alone."""
        return PipelineConfig(dataset=self.dataset, cache=self.cache, features=self.features,
                              extract=self.extract, source=self.source)

    def to_dict(self) -> dict[str, Any]:
        data = to_dict(self)
        return {k: data[k] for k in SECTION_ORDER}

    def dump(self, path: str | Path) -> Path:
        """Write the fully resolved config (what actually ran) as YAML."""
        return dump_config(self.to_dict(), path)


def dump_config(data: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _tag_switches(data: dict, overrides: list[str]) -> list[tuple[str, str, Any]]:
    """The ``--set`` items that change a tagged section's tag: (section path, tag key, new value)."""
    switches = []
    for item in overrides:
        dotted = item.split("=", 1)[0].strip()
        parts = dotted.split(".")
        for parent, tag in TAGGED_SECTIONS:
            prefix = parent.split(".")
            if len(parts) != len(prefix) + 1 or parts[-1] != tag:
                continue
            if all(p == "*" or p == q for p, q in zip(prefix, parts)):
                switches.append((".".join(parts[:-1]), tag, dotted))
    return switches


def _section(data: dict, dotted: str) -> dict | None:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def _reset_switched_sections(original: dict, overrides: list[str], source: str) -> tuple[dict, list[str]]:
    """Drop the file's keys of every section whose tag ``--set`` changes; the notes say which."""
    data = copy.deepcopy(original)
    notes = []
    for section, tag, dotted in _tag_switches(original, overrides):
        old = _section(data, section)
        new_value = apply_overrides({}, [o for o in overrides if o.split("=", 1)[0].strip() == dotted], source)
        for part in dotted.split("."):
            new_value = new_value[part]
        if old is None or old.get(tag) == new_value:
            continue
        set_here = {o.split("=", 1)[0].strip().split(".")[-1] for o in overrides
                    if o.split("=", 1)[0].strip().startswith(section + ".")}
        dropped = sorted(k for k in old if k != tag and k not in set_here)
        for k in dropped:
            del old[k]
        if dropped:
            notes.append(f"--set {dotted}={new_value}: '{section}' starts from the defaults of {new_value!r}; "
                         f"dropped the file's {', '.join(f'{section}.{k}' for k in dropped)}")
    return data, notes


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override and validate a config file."""
    source = str(path)
    overrides = list(overrides)
    data, notes = _reset_switched_sections(load_yaml(path), overrides, source)
    data = apply_overrides(data, overrides, source)
    data.pop("source", None)
    if "dataset" not in data:
        raise ConfigError(f"{source}: missing required key 'dataset'")
    config = from_dict(ExperimentConfig, data, source)
    config.source = source
    config.notes = notes
    check_path_names(config, corpus_given=bool((data.get("dataset") or {}).get("corpus")))
    return config


__all__ = ["CacheConfig", "ConfigError", "ExperimentConfig", "ExtractConfig", "dump_config", "load_config"]
