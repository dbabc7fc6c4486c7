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
from mer.pipeline.adapters import protocol_of
from mer.pipeline.corpus import dataset_differences, dataset_key, dataset_record, prepare_manifest, recorded_dataset
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


def manifest_for(config: ExperimentConfig, overrides: tuple[str, ...] | list[str] = (),
                 log: Callable[[str], None] | None = None) -> tuple[Manifest, Path]:
    """The manifest of the config's ``dataset`` section: ``<cache root>/<corpus>/manifest-<key>.csv``.

    Never a stale one: when the manifest on disk was built from another dataset section (another
    protocol or fold, ``channel``, ``merge_calm``, ...), or records none, it is REBUILT from the
    config's section (the adapter reads the corpus again, which is cheap) and ``log`` gets one line
    naming what differed. Caches are keyed by encoder and sample id, not by manifest, so the
    features extracted for the other section serve this one; the caller's cache check refuses,
    with the extract command, if this section holds a sample they do not cover. Each section has
    its own file, so an earlier run's manifest (which ``mer evaluate`` checks by fingerprint) is
    never rewritten.
    """
    latest = config.layout.manifest_path
    key = dataset_key(config.dataset)
    keyed = config.layout.keyed_manifest_path(key)
    wanted = dataset_record(config.dataset)
    if keyed.is_file() and not dataset_differences(recorded_dataset(keyed), wanted):
        return Manifest.load(keyed), keyed.resolve()
    if not latest.is_file():
        cmds = "\n".join(f"  {extract_command(config, m, overrides)}" for m in experiment_modalities(config))
        raise CacheError(f"cannot train: no manifest at {latest}; extract the features first "
                         f"(it writes the manifest):\n{cmds}")
    differences = dataset_differences(recorded_dataset(latest), wanted)
    _, path = prepare_manifest(config.pipeline, progress=False)
    if differences:
        (log or print)(f"manifest {latest} was built from another dataset section ({'; '.join(differences)}): "
                       f"rebuilt it from this config as {path}")
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


def train_job(config: ExperimentConfig, modalities: list[str], overrides: tuple[str, ...] | list[str] = (),
              log: Callable[[str], None] | None = None) -> TrainJob:
    """The manifest of the dataset section (:func:`manifest_for`), the caches of ``modalities``
    and the ``train`` section, as one job."""
    notes: list[str] = []

    def note(line: str) -> None:
        notes.append(line)
        (log or print)(line)

    manifest, manifest_path = manifest_for(config, overrides, note)
    sources = manifest_sources(config, manifest, modalities, overrides)
    return TrainJob(train=config.train, manifest=manifest, manifest_path=manifest_path, sources=sources,
                    record=config.to_dict(), protocol=protocol_of(config.dataset),
                    adapter=config.dataset.name, dataset_key=dataset_key(config.dataset), notes=notes)


def manifest_sources(config: ExperimentConfig, manifest: Manifest, modalities: list[str],
                     overrides: tuple[str, ...] | list[str] = ()) -> dict[str, ModalitySource]:
    """:func:`modality_sources`, after refusing a modality that no row of ``manifest`` has."""
    columns = {m: getattr(config.features[m], "column", "") or "" for m in modalities if m in config.features}
    check_modalities_in_manifest(manifest, columns)
    return modality_sources(config, modalities, overrides)


def load_experiment_data(config: ExperimentConfig, manifest: Manifest, modalities: list[str] | None = None, *,
                         device="cpu", sequences: bool = False, reuse: bool = False,
                         overrides: tuple[str, ...] | list[str] = (), log=None) -> TrainData:
    """The training tensors of ``modalities`` (default: the experiment's) for ``manifest``."""
    modalities = list(modalities or experiment_modalities(config))
    sources = manifest_sources(config, manifest, modalities, overrides)
    return load_train_data(config.train, manifest, sources, device=device, sequences=sequences, reuse=reuse,
                           log=log)


def default_run_dir(config: ExperimentConfig, modalities: list[str], prefix: str = "") -> Path:
    """``<output>/<corpus>/<prefix><model>-<m1+m2>-<YYYYmmdd-HHMMSS>`` (a suffix if it exists)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(config.output) / config.corpus / f"{prefix}{config.train.model}-{'+'.join(modalities)}-{stamp}"
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
    job = train_job(config, modalities, overrides, log)
    run_dir = Path(run_dir) if run_dir else default_run_dir(config, modalities)
    summary, results = train_seeds(job, run_dir, list(seeds if seeds is not None else config.train.seeds), progress,
                                   log)
    return run_dir, summary, results


__all__ = ["default_run_dir", "experiment_modalities", "extract_command", "load_experiment_data", "manifest_for",
           "modality_sources", "train_experiment", "train_job", "trained_modalities"]
