"""From an experiment config to what each stage takes: the application's glue.

The stages below never see the whole experiment: the pipeline takes its
:class:`~mer.pipeline.config.PipelineConfig`, training a :class:`~mer.train.job.TrainJob`
(the ``train`` section, the manifest, where each modality's cache is). This module builds
those from an :class:`~mer.config.ExperimentConfig`, so ``mer train``, ``mer ablate``,
``mer demo`` and the Python API assemble a run the same way.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from mer.config import ExperimentConfig
from mer.features.registry import build_encoder
from mer.pipeline.layout import recorded_keys
from mer.pipeline.manifest import Manifest
from mer.train.data import (CacheError, DataError, ModalitySource, TrainData, check_modalities_in_manifest,
                            load_train_data)
from mer.train.job import TrainJob
from mer.train.run import RunResult, model_modalities, resolve_modalities, train_seeds


def where(config: ExperimentConfig) -> str:
    return config.source or "config"


def experiment_modalities(config: ExperimentConfig) -> list[str]:
    """``train.modalities``, or every ``features`` key."""
    return resolve_modalities(config.train, list(config.features), where(config))


def trained_modalities(config: ExperimentConfig) -> list[str]:
    """The modalities the configured model trains on (DataError when it cannot take them)."""
    return model_modalities(config.train, list(config.features), where(config))


def extract_command(config: ExperimentConfig, modality: str, overrides: tuple[str, ...] | list[str] = ()) -> str:
    """The exact command that builds ``modality``'s cache for this config."""
    sets = "".join(f" --set {o}" for o in overrides)
    return f"mer extract -c {config.source or '<config.yaml>'}{sets} --modality {modality}"


def manifest_for(config: ExperimentConfig, overrides: tuple[str, ...] | list[str] = ()) -> tuple[Manifest, Path]:
    """The manifest the caches were built from: ``<cache root>/<corpus>/manifest.csv``."""
    path = config.layout.manifest_path
    if not path.is_file():
        cmds = "\n".join(f"  {extract_command(config, m, overrides)}" for m in experiment_modalities(config))
        raise CacheError(f"cannot train: no manifest at {path}; extract the features first "
                         f"(it writes the manifest):\n{cmds}")
    return Manifest.load(path), path.resolve()


def modality_sources(config: ExperimentConfig, modalities: list[str],
                     overrides: tuple[str, ...] | list[str] = ()) -> dict[str, ModalitySource]:
    """Each modality's cache folder, with the encoder key that extraction RECORDED for its options.

    No weight folder is hashed and no hub is asked: the key comes from ``spec.json``. Only when
    two caches record the same options (the weights changed in place and were re-extracted) is
    the key computed, to pick the one of the current weights.
    """
    out = {}
    for m in modalities:
        if m not in config.features:
            known = ", ".join(sorted(config.features)) or "none"
            raise DataError(f"{where(config)}: train.modalities names {m!r}, which is not a key of "
                            f"'features' (known: {known})")
        options = config.features[m]
        encoder = build_encoder(options)
        keys = recorded_keys(config.layout, m, encoder.options_material())
        key = keys[0] if len(keys) == 1 else encoder.key()
        out[m] = ModalitySource(m, options.encoder, key, config.layout.encoder_dir(m, key),
                                repair=extract_command(config, m, overrides))
    return out


def experiment_record(config: ExperimentConfig) -> dict:
    """The resolved config as plain data (a run's config.yaml)."""
    return config.to_dict()


def train_job(config: ExperimentConfig, modalities: list[str], overrides: tuple[str, ...] | list[str] = ()) -> TrainJob:
    """The manifest on disk, the caches of ``modalities`` and the ``train`` section, as one job."""
    manifest, manifest_path = manifest_for(config, overrides)
    check_modalities_in_manifest(manifest, {m: _column(config, m) for m in modalities if m in config.features})
    sources = modality_sources(config, modalities, overrides)
    return TrainJob(train=config.train, manifest=manifest, manifest_path=manifest_path, sources=sources,
                    record=experiment_record(config))


def _column(config: ExperimentConfig, modality: str) -> str:
    return getattr(config.features[modality], "column", "") or ""


def load_experiment_data(config: ExperimentConfig, manifest: Manifest, modalities: list[str] | None = None, *,
                         device="cpu", sequences: bool = False, reuse: bool = False,
                         overrides: tuple[str, ...] | list[str] = (), log=None) -> TrainData:
    """The training tensors of ``modalities`` (default: the experiment's) for ``manifest``."""
    modalities = list(modalities or experiment_modalities(config))
    check_modalities_in_manifest(manifest, {m: _column(config, m) for m in modalities if m in config.features})
    sources = modality_sources(config, modalities, overrides)
    return load_train_data(config.train, manifest, sources, device=device, sequences=sequences, reuse=reuse,
                           log=log)


def default_run_dir(config: ExperimentConfig, modalities: list[str]) -> Path:
    """``<output>/<corpus>/<model>-<m1+m2>-<YYYYmmdd-HHMMSS>`` (a suffix if it exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(config.output) / config.corpus / f"{config.train.model}-{'+'.join(modalities)}-{stamp}"
    path, k = base, 2
    while path.exists():
        path = base.with_name(f"{base.name}-{k}")
        k += 1
    return path


def train_experiment(config: ExperimentConfig, run_dir: Path | None = None, seeds: list[int] | None = None,
                     overrides: tuple[str, ...] | list[str] = (), progress: bool = True,
                     log: Callable[[str], None] = print) -> tuple[Path, dict, list[RunResult]]:
    """``mer train``: verify caches, load the features once, train every seed.

    Returns (run folder, summary, per-seed results).
    """
    modalities = trained_modalities(config)
    listed = experiment_modalities(config)
    if modalities != listed:
        log(f"{config.train.model} trains on {modalities} only (of {listed})")
    job = train_job(config, modalities, overrides)
    run_dir = Path(run_dir) if run_dir else default_run_dir(config, modalities)
    summary, results = train_seeds(job, run_dir, list(seeds if seeds is not None else config.train.seeds), progress,
                                   log)
    return run_dir, summary, results


__all__ = ["default_run_dir", "experiment_modalities", "extract_command", "load_experiment_data", "manifest_for",
           "modality_sources", "train_experiment", "train_job", "trained_modalities"]
