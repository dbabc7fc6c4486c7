"""``mer finetune`` from an experiment config: pick the modality, write the manifest, build the job."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

from mer.config import ExperimentConfig
from mer.pipeline.adapters import protocol_of
from mer.pipeline.corpus import dataset_key, prepare_manifest
from mer.train.errors import DataError
from mer.train.finetune import FinetuneJob, FinetuneResult, finetune
from mer.train.finetune_data import FINETUNE_FAMILIES


def pick_modality(config: ExperimentConfig, requested: str = "") -> str:
    """``requested``, else ``finetune.modality``, else the only hf-text/hf-audio key of ``features``."""
    name = requested or config.finetune.modality
    candidates = [m for m, o in config.features.items() if o.encoder in FINETUNE_FAMILIES]
    where = config.source or "config"
    if not name:
        if len(candidates) != 1:
            raise DataError(f"{where}: say which modality to fine-tune (--modality or finetune.modality); "
                            f"hf-text/hf-audio modalities: {candidates or 'none'}")
        return candidates[0]
    if name not in config.features:
        raise DataError(f"{where}: finetune.modality {name!r} is not a key of 'features' "
                        f"(known: {', '.join(sorted(config.features)) or 'none'})")
    family = config.features[name].encoder
    if family not in FINETUNE_FAMILIES:
        raise DataError(f"{where}: features.{name} uses encoder {family!r}; mer finetune trains "
                        f"{' or '.join(FINETUNE_FAMILIES)} encoders only")
    return name


def finetune_job(config: ExperimentConfig, modality: str = "", overrides: tuple[str, ...] | list[str] = (),
                 progress: bool = True) -> FinetuneJob:
    """The manifest written from ``dataset`` and the sections fine-tuning reads."""
    config = copy.deepcopy(config)
    config.finetune.modality = pick_modality(config, modality)
    adapter, manifest_path = prepare_manifest(config.pipeline, progress=progress)
    sets = "".join(f" --set {o}" for o in overrides)
    return FinetuneJob(finetune=config.finetune, train=config.train,
                       encoder_options=config.features[config.finetune.modality], manifest=adapter.manifest,
                       manifest_path=manifest_path, run_root=Path(config.output) / config.corpus,
                       record=config.to_dict(), command_args=f"-c {config.source or '<config.yaml>'}{sets}",
                       protocol=protocol_of(config.dataset), adapter=config.dataset.name,
                       dataset_key=dataset_key(config.dataset))


def finetune_experiment(config: ExperimentConfig, run_dir: str | Path | None = None, *, modality: str = "",
                        overrides: tuple[str, ...] | list[str] = (), progress: bool = True,
                        log: Callable[[str], None] = print, on_step: Callable[[int], None] | None = None
                        ) -> FinetuneResult:
    """``mer finetune``: fine-tune ``features.<modality>``'s encoder; resumes a killed run."""
    job = finetune_job(config, modality, overrides, progress)
    return finetune(job, run_dir, progress=progress, log=log, on_step=on_step)


__all__ = ["finetune_experiment", "finetune_job", "pick_modality"]
