"""``mer import-csd``: a CMU Multimodal SDK feature sequence (``.csd``) -> a cached sequence modality.

CMU-MOSEI's features (COVAREP, FACET, OpenFace, GloVe vectors, ...) come as computational
sequences: per video, rows of features with a time interval each. The import aligns each
manifest sample's ``[start, end)`` interval of its ``video_id`` (the ``mosei`` adapter writes both)
to the rows that overlap it (:func:`mer.pipeline.csd.align_to_segments`) and stores them as
ragged ``frames`` (T, D) + ``intervals`` (T, 2) in the feature cache, under the key of the
``csd`` encoder spec (:mod:`mer.features.csd_seq`). A config with

.. code-block:: yaml

    features:
      covarep: {encoder: csd, path: CMU_MOSEI_COVAREP.csd}

then trains on it like on any extracted modality.

How it writes: NOT with a second writer. The import IS a ``mer extract`` run of one modality
whose encoder is :class:`CsdImporter` (this module, used as a custom encoder module): the same
lock, plan, resumable shards (:func:`mer.pipeline.shard_task.run_shard` ->
:func:`mer.pipeline.shard.write_h5` -> :func:`mer.pipeline.cache.publish_shard`), the same
``spec.json`` and ``failures.jsonl``. :class:`CsdImporter` subclasses the spec encoder and only
adds the reading: its key, outputs and presence rule are the spec's, so the directory it writes
is the one ``mer train`` looks up. A killed import resumes; a re-run over a complete import
loads nothing. Samples whose video is not in the file, or whose interval no row overlaps, are
per-sample failures (stage ``align``) in ``failures.jsonl``; NaN/inf in a sample's rows are a
failure (stage ``features``) unless ``nonfinite: zero``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer.features.base import SampleError
from mer.features.csd_seq import CsdSequenceEncoder, file_sha256
from mer.features.csd_seq import Options as CsdOptions
from mer.pipeline.config import PipelineConfig
from mer.pipeline.config_schema import ConfigError
from mer.pipeline.csd import CsdError, CsdSequence, align_to_segments, read_csd

log = logging.getLogger("mer.extract")

#: videos whose rows stay decoded (segments of one video are neighbours in a shard: ids sort by video)
VIDEO_CACHE = 4


@dataclass
class Options(CsdOptions):
    """The ``csd`` spec's options, run by this module (``encoder`` is not part of the key)."""

    encoder: str = "mer.pipeline.import_csd"


class _CachedSequence:
    """What :func:`align_to_segments` reads from a sequence (``path``, ``dim``, ``in``, ``read``),
    with the last few videos kept decoded and a lock, so that ``prepare`` in the prefetch
    threads reads each video once and not once per segment."""

    def __init__(self, seq: CsdSequence, size: int = VIDEO_CACHE):
        self.seq = seq
        self.path = seq.path
        self.dim = seq.dim
        self.size = size
        self._videos: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, video: str) -> bool:
        with self._lock:
            return video in self.seq

    def read(self, video: str) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if video in self._videos:
                self._videos.move_to_end(video)
                return self._videos[video]
            value = self.seq.read(video)
            self._videos[video] = value
            while len(self._videos) > self.size:
                self._videos.popitem(last=False)
            return value


def _bound(value: Any, default: float) -> float:
    """A manifest's start/end: NaN or empty means the video's beginning/end."""
    if value is None or value == "":
        return default
    value = float(value)
    return default if math.isnan(value) else value


class CsdImporter(CsdSequenceEncoder):
    """The ``csd`` spec encoder that actually reads and aligns the file (see the module doc)."""

    def __init__(self, options: CsdOptions):
        super().__init__(options)
        self._seq: _CachedSequence | None = None

    def load(self, device: Any) -> None:
        self.device = device
        seq = read_csd(self.options.path, self.header.root)
        if seq.dim != self.header.dim:
            seq.close()
            raise CsdError(f"{self.options.path}: videos have {seq.dim} feature dimensions, the first has "
                           f"{self.header.dim}")
        self._seq = _CachedSequence(seq)

    def prepare(self, row: dict) -> dict[str, np.ndarray]:
        if self._seq is None:
            raise RuntimeError("csd import: prepare() before load()")
        video = str(row.get(self.options.video_column) or "").strip()
        start, end = _bound(row.get("start"), -math.inf), _bound(row.get("end"), math.inf)
        seg = next(align_to_segments(self._seq, [(row["id"], video, start, end)]))
        if seg.problem:
            raise SampleError("align", seg.problem)
        frames = np.asarray(seg.features)
        bad = ~np.isfinite(frames)
        if bad.any():
            if self.options.nonfinite == "fail":
                raise SampleError("features", f"{self.options.path}: {int(bad.sum())} NaN/inf value(s) in the "
                                              f"{len(frames)} row(s) of video {video!r} overlapping [{start:.3f}, "
                                              f"{end:.3f}); set nonfinite: zero to store them as 0")
            frames = np.where(bad, 0, frames)
        return {"frames": frames, "intervals": np.asarray(seg.intervals, dtype=np.float32)}

    def encode(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return list(batch)


ENCODER = CsdImporter


# --------------------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------------------
@dataclass
class ImportResult:
    report: Any  # mer.pipeline.extract.ExtractReport
    options: CsdOptions
    #: False when the config has no ``features.<modality>``: the snippet to add is in :attr:`snippet`
    configured: bool
    videos_in_file: int
    videos_in_manifest: int

    @property
    def snippet(self) -> str:
        o = self.options
        extra = "".join(f", {k}: {getattr(o, k)}" for k in ("root", "video_column", "nonfinite")
                        if getattr(o, k) != getattr(CsdOptions(path="x"), k))
        name = next(iter(self.report.modalities))
        return f"features:\n  {name}: {{encoder: csd, path: {o.path}{extra}}}"


def resolve_options(config: PipelineConfig, modality: str, csd: str | None, root: str | None) -> tuple[CsdOptions, bool]:
    """The ``csd`` options to import with, and whether the config names them itself."""
    where = config.source or "config"
    options = config.features.get(modality)
    if options is None:
        if not csd:
            raise ConfigError(f"{where}: no 'features.{modality}' in the config; give the file with --csd "
                              f"(or add features.{modality}: {{encoder: csd, path: FILE.csd}})")
        return CsdOptions(path=str(csd), root=root or ""), False
    if getattr(options, "encoder", None) != "csd":
        raise ConfigError(f"{where}: features.{modality} is encoder {getattr(options, 'encoder', '?')!r}, not 'csd': "
                          f"mer import-csd writes csd sequence caches only; pick another modality name")
    if root is not None and root != options.root:
        raise ConfigError(f"{where}: --root {root!r} differs from features.{modality}.root {options.root!r}; "
                          f"set it in the config (or --set features.{modality}.root=...)")
    if csd and Path(csd).resolve() != Path(options.path).resolve():
        mine, theirs = _sha(csd, "--csd"), _sha(options.path, f"features.{modality}.path")
        if mine != theirs:
            raise ConfigError(f"{where}: --csd {csd} (sha256 {mine[:12]}) is not the file features.{modality}.path "
                              f"names ({options.path}, sha256 {theirs[:12]}): mer train would look for the cache "
                              f"of the config's file. Fix features.{modality}.path, or drop --csd")
        options = dataclasses.replace(options, path=str(csd))
    return options, True


def _sha(path: str, what: str) -> str:
    try:
        return file_sha256(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def import_csd(config: PipelineConfig, modality: str, csd: str | None = None, root: str | None = None, *,
               max_failures: float | None = None, wait: bool = False, progress: bool = True) -> ImportResult:
    """Align ``csd`` (default: ``features.<modality>.path``) to the manifest and cache it.

    Returns the extraction report of the one modality (failures, shards) with what was
    imported. Raises ConfigError for a request that cannot work (no video column, no such
    file, a file that is not a computational sequence), CacheLocked / CacheError as extract.
    """
    from mer.features.registry import build_encoder
    from mer.pipeline.adapters import build_manifest
    from mer.pipeline.extract import extract

    where = config.source or "config"
    spec_options, configured = resolve_options(config, modality, csd, root)
    options = Options(**{f.name: getattr(spec_options, f.name) for f in dataclasses.fields(CsdOptions)
                         if f.name != "encoder"})
    importer = CsdImporter(options)
    try:
        key = importer.key()
        header = importer.header
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"{where}: features.{modality}: {exc}") from None
    spec_key = build_encoder(spec_options).key()
    if key != spec_key:  # the importer must write where the spec looks
        raise RuntimeError(f"csd importer key {key} != spec key {spec_key}")

    manifest = build_manifest(config.dataset).manifest
    column = options.video_column
    videos = set(manifest.df[column]) - {""} if column in manifest.df.columns else set()
    if not videos:
        raise ConfigError(f"{where}: the manifest of dataset {config.dataset.name!r} has no '{column}' values: "
                          f"import-csd aligns each sample's {column}/start/end interval (the mosei adapter writes "
                          f"them); set features.{modality}.video_column to the column naming the video")
    with read_csd(options.path, header.root) as seq:
        in_file = len(videos & set(seq.videos()))
    log.info("%s: %s '%s' (%d dims): %d of the manifest's %d videos are in the file", modality,
             Path(options.path).name, header.root, header.dim, in_file, len(videos))

    run_config = PipelineConfig(dataset=config.dataset, cache=config.cache, features={modality: options},
                                extract=dataclasses.replace(config.extract, scheduler="", workers=0),
                                source=config.source)
    report = extract(run_config, [modality], device="cpu", max_failures=max_failures, wait=wait, progress=progress)
    return ImportResult(report=report, options=spec_options, configured=configured, videos_in_file=in_file,
                        videos_in_manifest=len(videos))


__all__ = ["CsdImporter", "ImportResult", "Options", "import_csd", "resolve_options"]
