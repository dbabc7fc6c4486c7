"""Score new inputs with a trained run: ``mer predict`` and ``mer.load_run(path).predict(...)``.

A run folder (``mer train``) holds everything a prediction needs: ``model.pt`` has the head,
its classes, the standardisation statistics of its training split, each modality's encoder KEY
and cache output, and the resolved experiment config (each modality's encoder options). So a
prediction runs exactly the run's encoders, never options re-typed by the user:

1. the inputs become manifest rows (:mod:`mer.predict_inputs`) whose ids hash the inputs'
   content;
2. each modality's encoder is built from the run's options (``--set features.<m>.<key>=...``
   may change them, e.g. where the model lives, but the encoder key must stay the run's:
   another key means other features than the head was trained on, and is refused);
3. ``mer extract`` runs over those rows into a prediction cache (default ``<run>/predict-cache``,
   corpus ``predict``), which is content-addressed: samples already there are not extracted
   again, and bad input becomes a per-sample failure record (``failures.jsonl``) while the
   sample's other modalities are used (the missing-modality path of training);
4. the features are read, standardised and scored exactly as ``mer evaluate`` does
   (:func:`mer.train.data.load_train_data` with the run's fitted statistics and classes).

The result is one row per input: id, prediction, its probability, the modalities used, the
ones missing, per-sample failures, and ``prob_<class>`` for every class.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from mer.features.base import EncoderUnavailable
from mer.features.device import resolve_device
from mer.features.registry import build_encoder
from mer.pipeline.cache import FAILURES_NAME
from mer.pipeline.config import PipelineConfig
from mer.pipeline.config_schema import ConfigError, apply_overrides, from_dict
from mer.pipeline.extract import ExtractReport, extract
from mer.pipeline.manifest import Manifest
from mer.predict_inputs import ContentHasher, RunColumns, Sample, collect_samples
from mer.train import registry
from mer.train.criterion import Criterion
from mer.train.data import DataError, Fitted, ModalitySource, apply_stats, load_train_data
from mer.train.evaluate import build_model, load_checkpoint, run_train_config
from mer.train.sequences import pad_rows
from mer.train.trainer import EVAL_CHUNK, predict_rows

#: the corpus name of a prediction cache: ``<cache root>/predict/<modality>/<encoder key>/``
PREDICT_CORPUS = "predict"
#: sections of the run's config that ``--set`` may change for a prediction
OVERRIDABLE = ("features.", "extract.")


def default_cache(run_dir: Path) -> Path:
    return Path(run_dir) / "predict-cache"


@dataclass
class PredictResult:
    """The table, and what extraction did (``samples_extracted`` 0 everywhere: all cached)."""

    table: pd.DataFrame
    report: ExtractReport
    cache: Path

    @property
    def samples_extracted(self) -> int:
        return sum(m.samples_extracted for m in self.report.modalities.values())


@dataclass
class Run:
    """A trained run loaded for prediction (:func:`load_run`)."""

    path: Path
    checkpoint: dict
    model: torch.nn.Module
    device: torch.device
    log: Callable[[str], None] = field(default=lambda line: None, repr=False)

    # --- what the run is --------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint["classes"])

    @property
    def modalities(self) -> list[str]:
        return list(self.checkpoint["modalities"])

    @property
    def multilabel(self) -> bool:
        return bool(self.checkpoint["multilabel"])

    @property
    def cache_keys(self) -> dict[str, str]:
        return dict(self.checkpoint["cache_keys"])

    @property
    def sequences(self) -> bool:
        return registry.entry(self.checkpoint["model"]).sequences

    # --- scoring ----------------------------------------------------------------------
    def predict(self, inputs: str | Path | Iterable[str | Path] = (), *, texts: Iterable[str] = (),
                audio: str | Path | None = None, video: str | Path | None = None, cache: str | Path | None = None,
                overrides: Sequence[str] = (), device: str | None = None, progress: bool = False) -> pd.DataFrame:
        """Score media files, folders, manifests and/or transcripts; one row per sample.

        See :func:`predict_samples` for the columns; :meth:`predict_detailed` also returns
        what extraction did.
        """
        return self.predict_detailed(inputs, texts=texts, audio=audio, video=video, cache=cache,
                                     overrides=overrides, device=device, progress=progress).table

    def predict_detailed(self, inputs: str | Path | Iterable[str | Path] = (), *, texts: Iterable[str] = (),
                         audio: str | Path | None = None, video: str | Path | None = None,
                         cache: str | Path | None = None, overrides: Sequence[str] = (), device: str | None = None,
                         progress: bool = False) -> PredictResult:
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        if isinstance(texts, str):
            texts = [texts]
        config = self.pipeline_config(cache, overrides)
        columns = RunColumns.of(build_encoder(config.features[m]) for m in self.modalities)
        samples = collect_samples(inputs, columns, texts, audio, video)
        return predict_samples(self, config, samples, columns, device=device, progress=progress)

    def predict_features(self, features: Mapping[str, Any], present: Mapping[str, Any] | None = None,
                         ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Score features already in hand, as the cache holds them (NOT standardised).

        ``features[m]``: an (N, D) (or (N, L, D) all-layer) array for a vector modality; for a
        model that reads sequences (``mpuc`` over frames) a list of N (T_i, D) arrays. A row that
        is None, all-NaN/inf, or has ``present[m][i]`` False is absent: it takes the learned
        missing-modality path. Every run modality must be given (None = absent for all rows).
        """
        unknown = sorted(set(features) - set(self.modalities))
        if unknown:
            raise DataError(f"{self.path}: modality(ies) {unknown} are not inputs of this run "
                            f"(it takes {self.modalities})")
        lacking = [m for m in self.modalities if m not in features]
        if lacking:
            raise DataError(f"{self.path}: give every modality of the run ({self.modalities}); missing {lacking} "
                            "(pass None for a modality that no sample has)")
        n = _feature_rows(features)
        x, pres = {}, {}
        for m in self.modalities:
            given = None if present is None else present.get(m)
            x[m], pres[m] = self._standardised(m, features[m], n, given)
        probs = self._forward(x, pres, n)
        names = list(ids) if ids is not None else [str(i) for i in range(n)]
        if len(names) != n:
            raise DataError(f"{len(names)} ids for {n} rows of features")
        present_host = {m: pres[m].cpu().numpy() for m in self.modalities}
        return result_table(names, probs, self.classes, self.multilabel, self.modalities, present_host)

    # --- pieces -----------------------------------------------------------------------
    def pipeline_config(self, cache: str | Path | None = None, overrides: Sequence[str] = ()) -> PipelineConfig:
        """The run's encoders (its ``features`` options, ``--set`` applied) over a prediction cache."""
        record = self.checkpoint["config"]
        source = str(self.path / "model.pt")
        bad = [o for o in overrides if not o.split("=", 1)[0].strip().startswith(OVERRIDABLE)]
        if bad:
            raise ConfigError(f"--set {bad[0]!r}: a prediction may change only features.* and extract.* "
                              "(the run's training settings are fixed by model.pt)")
        data = {
            "dataset": {"name": "generic", "manifest": "<predict inputs>", "corpus": PREDICT_CORPUS,
                        "missing_files": "record"},
            "cache": {"root": str(Path(cache) if cache else default_cache(self.path)),
                      # the run's dtype: float16 and float32 features differ in the last bits
                      "dtype": (record.get("cache") or {}).get("dtype", "float16"),
                      "shard_size": (record.get("cache") or {}).get("shard_size", 256)},
            "features": {m: copy.deepcopy(record["features"][m]) for m in self.modalities},
            "extract": copy.deepcopy(record.get("extract") or {}),
        }
        data = apply_overrides(data, list(overrides), f"{source} (--set)")
        config = from_dict(PipelineConfig, data, source)
        config.source = source
        check_keys(self, config, overrides)
        return config

    def _standardised(self, m: str, value: Any, n: int, given: Any) -> tuple[Any, torch.Tensor]:
        ckpt = self.checkpoint
        stats = {k: np.asarray(v.cpu().numpy() if isinstance(v, torch.Tensor) else v)
                 for k, v in ckpt["stats"][m].items()}
        shape = tuple(np.asarray(stats["mean"]).shape)
        mask = np.ones(n, dtype=bool) if given is None else np.asarray(given, dtype=bool).reshape(-1)
        if len(mask) != n:
            raise DataError(f"present[{m!r}] has {len(mask)} rows, the features {n}")
        if self.sequences and _is_ragged_spec(ckpt, m):
            rows = [None] * n if value is None else list(value)
            frames = []
            for i, r in enumerate(rows):
                a = None if r is None else np.asarray(r, dtype=np.float32).reshape(-1, shape[-1])
                if a is None or len(a) == 0 or not np.isfinite(a).all():
                    mask[i] = False
                    a = np.zeros((0, shape[-1]), np.float32)
                frames.append(a)
            lengths = np.array([len(a) for a in frames], dtype=np.int64)
            values = np.concatenate(frames) if lengths.sum() else np.zeros((0, shape[-1]), np.float32)
            frame_present = np.repeat(mask, lengths)
            values = apply_stats(values, frame_present, stats)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            return (torch.as_tensor(values, device=self.device), torch.as_tensor(offsets, device=self.device)), \
                torch.as_tensor(mask, device=self.device)
        if value is None:
            x = np.zeros((n,) + shape, np.float32)
            mask[:] = False
        else:
            x = np.stack([np.full(shape, np.nan, np.float32) if r is None else np.asarray(r, np.float32)
                          for r in value]) if isinstance(value, (list, tuple)) else np.asarray(value, np.float32)
        if x.shape[1:] != shape:
            raise DataError(f"modality {m!r}: features of shape {x.shape[1:]} per row, the run was trained on {shape} "
                            f"(cache output {ckpt['outputs'][m]!r} of encoder {ckpt['cache_keys'][m]})")
        mask &= np.isfinite(x.reshape(n, -1)).all(axis=1)
        clean = np.where(mask.reshape((-1,) + (1,) * (x.ndim - 1)), x, np.float32(0.0))
        return torch.as_tensor(apply_stats(clean, mask, stats), device=self.device), torch.as_tensor(mask, device=self.device)

    @torch.no_grad()
    def _forward(self, x: dict, present: dict[str, torch.Tensor], n: int) -> np.ndarray:
        criterion = Criterion(self.multilabel)
        out = []
        for start in range(0, n, EVAL_CHUNK):
            idx = torch.arange(start, min(n, start + EVAL_CHUNK), device=self.device)
            xb = {m: pad_rows(v[0], v[1], idx) if isinstance(v, tuple) else v[idx] for m, v in x.items()}
            pb = {m: p[idx] for m, p in present.items()}
            out.append(criterion.probabilities(self.model(xb, pb)["logits"].float()).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.classes)), np.float32)


def _is_ragged_spec(ckpt: dict, m: str) -> bool:
    for spec in ckpt["init_kwargs"].get("inputs", []):
        if spec.get("name") == m:
            return bool(spec.get("ragged", False))
    return False


def _feature_rows(features: Mapping[str, Any]) -> int:
    sizes = {m: len(v) for m, v in features.items() if v is not None}
    if not sizes:
        raise DataError("no features given (every modality is None)")
    if len(set(sizes.values())) > 1:
        raise DataError(f"the modalities have different numbers of rows: {sizes}")
    return next(iter(sizes.values()))


def load_run(path: str | Path, device: str | None = None, log: Callable[[str], None] | None = None) -> Run:
    """A trained run folder (``mer train``; one ``seed<k>/`` folder of a multi-seed run) for prediction.

    ``device``: where the head runs (default: the run's ``train.device``).
    """
    path = Path(path)
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") == "finetune":
        raise DataError(f"{path}: a mer finetune run (its encoder is part of the model); mer predict scores heads "
                        "over frozen-encoder features. Score new data with mer evaluate RUN --manifest "
                        "<manifest of it> --split all")
    dev = resolve_device(device or ckpt["config"]["train"].get("device", "auto"))
    return Run(path, ckpt, build_model(ckpt, dev), dev, log or (lambda line: None))


# --------------------------------------------------------------------------- encoder keys


def check_keys(run: Run, config: PipelineConfig, overrides: Sequence[str] = ()) -> None:
    """Refuse (EncoderUnavailable) unless each modality's encoder has the run's key here."""
    for m in run.modalities:
        encoder = build_encoder(config.features[m])
        try:
            key = encoder.key()
        except (OSError, ValueError) as exc:
            raise EncoderUnavailable(unavailable_message(run, m, config, f"its key cannot be computed: {exc}")) from exc
        wanted = run.cache_keys[m]
        if key != wanted:
            raise EncoderUnavailable(unavailable_message(run, m, config, f"it gives encoder key {key} here, the run "
                                                         f"was trained on {wanted}", encoder))


def unavailable_message(run: Run, m: str, config: PipelineConfig, problem: str, encoder=None) -> str:
    """Which encoder, why it is not the run's, and how to point the run at a copy of it."""
    options = config.features[m]
    model = getattr(options, "model", "")
    what = f"modality {m!r}: encoder {options.encoder}" + (f" with model {model!r}" if model else "")
    lines = [f"{what}: {problem}."]
    identity = encoder.identity() if encoder is not None and model else {}
    local_spec = model.startswith(("/", ".", "~", "pkg:")) or Path(model).is_absolute()
    copy_hint = (f"name a copy with --set features.{m}.model=PATH (accepted only if the key stays "
                 f"{run.cache_keys[m]}: the key covers the model spec and the files it names)")
    if model and local_spec and not Path(model).expanduser().is_dir() and not model.startswith("pkg:"):
        lines.append(f"The folder {model} does not exist here: put the model's files there, or {copy_hint}.")
    elif model and identity.get("commit", "") is None:
        lines.append(f"{model!r} cannot be resolved here: as a Hugging Face hub name it is offline and not in the "
                     "local hub cache (copy the hub cache that holds it from the training machine and point "
                     "HF_HUB_CACHE at it, with HF_HUB_OFFLINE=1: the same name and commit give the same key); "
                     f"as a folder relative to the working directory, run from where the run was trained, or {copy_hint}.")
    elif model:
        lines.append(f"Put the same files where the spec points, or {copy_hint}.")
    else:
        lines.append("The key covers the encoder's options and code version: the run's features cannot be "
                     "reproduced with this encoder (was mer upgraded, or an option changed with --set?).")
    return " ".join(lines)


# --------------------------------------------------------------------------- the whole call


def request_manifest(samples: list[Sample], columns: RunColumns) -> tuple[Manifest, list[str]]:
    """The deduplicated manifest of the samples (ids = content hashes), and each sample's cache id."""
    hasher = ContentHasher()
    paths = columns.path_columns()
    cache_ids = [hasher.sample_id(s.row, paths) for s in samples]
    rows: dict[str, dict] = {}
    for cid, s in zip(cache_ids, samples):
        rows.setdefault(cid, {"id": cid, "label": "", "group": "", "split": "", **s.row})
    df = pd.DataFrame(list(rows.values()))
    for c in columns.read:
        if c not in df.columns:
            df[c] = ""
    return Manifest(df, source="mer predict inputs"), cache_ids


def predict_samples(run: Run, config: PipelineConfig, samples: list[Sample], columns: RunColumns, *,
                    device: str | None = None, progress: bool = False) -> PredictResult:
    """Extract what is not cached yet, then score every sample (see the module docstring)."""
    manifest, cache_ids = request_manifest(samples, columns)
    layout = config.layout
    layout.corpus_dir.mkdir(parents=True, exist_ok=True)
    # this call's own request file (concurrent calls on one cache do not share it)
    request = layout.corpus_dir / f"request-{os.getpid()}-{uuid.uuid4().hex[:8]}.csv"
    manifest.df.to_csv(request, index=False)
    try:
        config.dataset.manifest = str(request)
        report = _extract(run, config, device, progress)
    finally:
        request.unlink(missing_ok=True)
    sources = {m: ModalitySource(m, run.checkpoint["families"][m], run.cache_keys[m],
                                 layout.encoder_dir(m, run.cache_keys[m])) for m in run.modalities}
    train_cfg = run_train_config(run.checkpoint, run.path)
    train_cfg.inputs = dict(run.checkpoint["outputs"])
    train_cfg.split_column, train_cfg.target = "split", "label"
    data = load_train_data(train_cfg, manifest, sources, device=run.device,
                           fitted=Fitted(run.checkpoint["stats"], run.classes), sequences=run.sequences,
                           carve_val=False, log=run.log)
    probs, _ = predict_rows(run.model, data, np.arange(len(data)), Criterion(run.multilabel))
    row_of = {i: k for k, i in enumerate(data.ids)}
    order = [row_of[c] for c in cache_ids]
    present = {m: d.present.cpu().numpy()[order] for m, d in data.modalities.items()}
    failures = _failures(sources, set(cache_ids))
    table = result_table([s.name for s in samples], probs[order], run.classes, run.multilabel, run.modalities,
                         present, [failures.get(c, "") for c in cache_ids])
    table.insert(1, "input", [s.source for s in samples])
    return PredictResult(table, report, Path(config.cache.root))


def _extract(run: Run, config: PipelineConfig, device: str | None, progress: bool) -> ExtractReport:
    """``mer extract`` over the request; a model that cannot be loaded is named with the way out."""
    try:
        return extract(config, list(run.modalities), device=device, wait=True, progress=progress)
    except OSError as exc:  # transformers' "cannot find / connect" family; the cache's own errors are not OSError
        named = [m for m in run.modalities if getattr(config.features[m], "model", "")]
        if not named:
            raise
        # the modality whose model the message names, else the first that has a model
        culprit = next((m for m in named if str(config.features[m].model) in str(exc)), named[0])
        raise EncoderUnavailable(unavailable_message(run, culprit, config, f"it cannot be loaded: {exc}")) from exc


def _failures(sources: dict[str, ModalitySource], ids: set[str]) -> dict[str, str]:
    """Per cache id, its failure records as one line: ``<modality>: <stage>: <message>``."""
    out: dict[str, list[str]] = {}
    for m, src in sources.items():
        path = src.dir / FAILURES_NAME
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            if rec.get("id") in ids:
                out.setdefault(rec["id"], []).append(f"{m}: {rec.get('stage', '')}: {rec.get('message', '')}")
    return {k: "; ".join(v) for k, v in out.items()}


def result_table(names: list[str], probs: np.ndarray, classes: list[str], multilabel: bool, modalities: list[str],
                 present: dict[str, np.ndarray], failures: list[str] | None = None) -> pd.DataFrame:
    """id, prediction, probability, modalities, missing, [failures,] prob_<class>...

    ``prediction`` is the top class (multi-label: every class over 0.5, ';'-joined, as in
    predictions.csv) and ``probability`` the top class's probability.
    """
    probs = np.asarray(probs, dtype=np.float64)
    top = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    if multilabel:
        prediction = [";".join(c for c, p in zip(classes, row) if p > 0.5) for row in probs]
    else:
        prediction = [classes[k] for k in top]
    table = pd.DataFrame({
        "id": names, "prediction": prediction, "top": [classes[k] for k in top],
        "probability": probs[np.arange(len(top)), top] if len(top) else np.zeros(0),
        "modalities": [";".join(m for m in modalities if present[m][i]) for i in range(len(names))],
        "missing": [";".join(m for m in modalities if not present[m][i]) for i in range(len(names))],
    })
    if not multilabel:
        table = table.drop(columns="top")
    if failures is not None:
        table["failures"] = failures
    for c, name in enumerate(classes):
        table[f"prob_{name}"] = probs[:, c]
    return table


__all__ = ["PREDICT_CORPUS", "PredictResult", "Run", "check_keys", "default_cache", "load_run", "predict_samples",
           "result_table"]
