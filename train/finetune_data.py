"""Raw inputs for fine-tuning: manifest rows → labels, splits, length buckets and model-ready batches.

Everything the encoders already define is reused, not re-implemented: the hf-text /
hf-audio encoder loads the model and the tokenizer / feature extractor exactly as
``mer extract`` does, and its ``cost`` (tokens after truncation, samples after resampling)
and ``prepare`` (text cleaning; decoding, resampling, z-normalisation, windowing) turn a
manifest row into model input. Splits (with the carved validation split) and labels come
from :mod:`mer.train.data`, so a fine-tuning run sees the same classes and the same
validation samples as a ``mer train`` run on the same config.

A row without the modality, or whose input fails to prepare (:class:`SampleError`), is
kept and enters the head as "missing" (the head's learned missing embedding), as in
``mer train unimodal``; failures are recorded by id.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor

from mer.features.base import Encoder, SampleError
from mer.features.batching import BatchPolicy, make_batches
from mer.features.device import to_device
from mer.pipeline.manifest import Manifest
from mer.train.config import TrainConfig
from mer.train.data import ManifestRows, encode_labels, resolve_splits
from mer.train.finetune_model import FinetuneModel, SpeechGroup

#: families ``mer finetune`` can train (raw-input Hugging Face encoders)
FINETUNE_FAMILIES = ("hf-text", "hf-audio")


def hf_parts(encoder: Encoder) -> tuple[Any, Any]:
    """(the loaded transformers model, its tokenizer or feature extractor) of a loaded hf encoder.

    The encoder owns loading (same dtype, same preprocessing settings as extraction);
    fine-tuning trains that very model object.
    """
    model = getattr(encoder, "_model", None)
    if model is None:
        raise RuntimeError(f"{encoder.family}: the encoder is not loaded")
    pre = getattr(encoder, "_tokenizer", None) if encoder.family == "hf-text" else getattr(encoder, "_extractor", None)
    return model, pre


@dataclass
class FinetuneData(ManifestRows):
    """Labels, splits, presence and costs of every manifest row (host numpy, manifest order)."""

    ids: list[str]
    #: the manifest rows (dicts), what the encoder's ``prepare`` reads
    records: list[dict]
    split: np.ndarray
    classes: list[str]
    multilabel: bool
    #: (N,) int64 (−1 unlabeled) or (N, C) float32 multi-hot
    y: np.ndarray
    labeled: np.ndarray
    #: the row names an input (the modality's column is non-empty)
    has_input: np.ndarray
    #: bucketing cost: tokens after truncation, or samples after resampling (0 without input)
    costs: np.ndarray
    manifest_source: str
    manifest_fingerprint: str
    val_carved: bool = False
    val_groups: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def targets(self, rows: np.ndarray, device: torch.device) -> Tensor:
        dtype = torch.float32 if self.multilabel else torch.long
        return torch.as_tensor(self.y[rows], dtype=dtype, device=device)


def load_finetune_data(train_cfg: TrainConfig, manifest: Manifest, encoder: Encoder, classes: list[str] | None = None,
                       carve_val: bool = True, log=None) -> FinetuneData:
    """Splits and labels as :func:`mer.train.data.load_train_data` makes them; costs from the encoder."""
    info = resolve_splits(manifest, train_cfg.split_column, train_cfg.val_fraction, train_cfg.split_seed, carve_val)
    notes = [info.note] if info.val_carved else []
    if info.val_carved and log:
        log(info.note)
    labels = encode_labels(manifest, info.split, train_cfg, classes)
    rows = manifest.rows()
    has_input = np.array([encoder.present(r) for r in rows], dtype=bool)
    costs = np.array([encoder.cost(r) if ok else 0.0 for r, ok in zip(rows, has_input)], dtype=np.float64)
    return FinetuneData(ids=manifest.ids, records=rows, split=info.split, classes=labels.classes,
                        multilabel=train_cfg.multilabel, y=labels.y, labeled=labels.labeled, has_input=has_input,
                        costs=costs, manifest_source=manifest.source, manifest_fingerprint=manifest.fingerprint,
                        val_carved=info.val_carved, val_groups=list(info.val_groups), notes=notes)


def batch_policy(encoder: Encoder, finetune, sampling_rate: int | None) -> BatchPolicy:
    """Length buckets: ``batch_size`` items and a padded budget of tokens or seconds."""
    if encoder.family == "hf-text":
        return BatchPolicy(max_items=finetune.batch_size, max_cost=float(finetune.max_tokens))
    return BatchPolicy(max_items=finetune.batch_size, max_cost=finetune.max_seconds * float(sampling_rate),
                       equal_cost_only=bool(encoder.padding_sensitive))


def make_row_batches(data: FinetuneData, rows: np.ndarray, policy: BatchPolicy) -> list[np.ndarray]:
    """Bucket ``rows`` by cost (:func:`mer.features.batching.make_batches`); deterministic."""
    if len(rows) == 0:
        return []
    index = {data.ids[r]: int(r) for r in rows}
    groups = make_batches({data.ids[r]: float(data.costs[r]) for r in rows}, policy)
    return [np.array([index[i] for i in g], dtype=np.int64) for g in groups]


class Feeder:
    """Manifest rows → prepared inputs (in a prefetch thread pool) → pooled encoder output.

    ``prepare`` runs the encoder's own thread-safe ``prepare``; a SampleError makes the
    row "missing" and is recorded in ``failures`` (id → "stage: message").
    """

    def __init__(self, encoder: Encoder, data: FinetuneData, device: torch.device, io_threads: int = 2):
        self.encoder = encoder
        self.data = data
        self.device = device
        self.io_threads = io_threads
        self.failures: dict[str, str] = {}
        self.model, self.pre = hf_parts(encoder)
        self.text = encoder.family == "hf-text"

    # --- preparation -------------------------------------------------------------------
    def _prepare(self, rows: np.ndarray) -> tuple[list[Any], dict[str, str]]:
        out: list[Any] = []
        errors: dict[str, str] = {}
        for r in rows:
            if not self.data.has_input[r]:
                out.append(None)
                continue
            try:
                out.append(self.encoder.prepare(self.data.records[r]))
            except SampleError as exc:
                errors[self.data.ids[r]] = f"{exc.stage}: {exc.message}"
                out.append(None)
        return out, errors

    def iterate(self, batches: Iterable[np.ndarray]) -> Iterator[tuple[np.ndarray, list[Any]]]:
        """(rows, prepared) per batch, in order; the next ``io_threads`` batches prepare meanwhile."""
        batches = list(batches)
        if self.io_threads == 0:
            for rows in batches:
                prepared, errors = self._prepare(rows)
                self.failures.update(errors)
                yield rows, prepared
            return
        with ThreadPoolExecutor(self.io_threads, thread_name_prefix="mer-finetune-io") as pool:
            pending: list[Future] = [pool.submit(self._prepare, rows) for rows in batches[: self.io_threads]]
            for i, rows in enumerate(batches):
                prepared, errors = pending[i].result()
                if i + self.io_threads < len(batches):
                    pending.append(pool.submit(self._prepare, batches[i + self.io_threads]))
                pending[i] = None  # free the prepared inputs once consumed
                self.failures.update(errors)
                yield rows, prepared

    # --- model inputs -----------------------------------------------------------------
    def speech_groups(self, clips: list[Any]) -> list[SpeechGroup]:
        """Windows of the clips as forward calls: one padded call, or one per length for
        padding-sensitive models (as hf-audio's ``encode`` groups them)."""
        windows = [(i, a, b, n) for i, clip in enumerate(clips) for (a, b), n in zip(clip.bounds, clip.frames)]
        policy = BatchPolicy(max_items=len(windows), equal_cost_only=bool(self.encoder.padding_sensitive))
        order = make_batches({str(j): float(w[2] - w[1]) for j, w in enumerate(windows)}, policy)
        pad = float(self.pre.padding_value)
        use_mask = bool(self.encoder.uses_attention_mask)
        groups = []
        for members in ([windows[int(j)] for j in g] for g in order):
            longest = max(b - a for _, a, b, _ in members)
            values = torch.full((len(members), longest), pad, dtype=torch.float32)
            mask = torch.zeros((len(members), longest), dtype=torch.long)
            for row, (i, a, b, _) in enumerate(members):
                values[row, : b - a] = torch.from_numpy(clips[i].samples[a:b])
                mask[row, : b - a] = 1
            groups.append(SpeechGroup(
                values=to_device(values, self.device), mask=to_device(mask, self.device) if use_mask else None,
                frames=to_device(torch.tensor([m[3] for m in members], dtype=torch.long), self.device),
                owner=to_device(torch.tensor([m[0] for m in members], dtype=torch.long), self.device)))
        return groups

    def pooled(self, model: FinetuneModel, prepared: list[Any]) -> tuple[Tensor, Tensor]:
        """(pooled (B, D) float32 with zero rows where missing, present (B,) bool)."""
        present = torch.tensor([p is not None for p in prepared], dtype=torch.bool)
        idx = [i for i, p in enumerate(prepared) if p is not None]
        out = torch.zeros(len(prepared), model.mean.shape[0], device=self.device)
        if idx:
            items = [prepared[i] for i in idx]
            if self.text:
                inputs = model.split.collate(items, self.pre, self.encoder._max_length, self.device)
                enc = model.encode_text(inputs)
            else:
                enc = model.encode_speech(self.speech_groups(items), len(items))
            out = out.index_put((torch.as_tensor(idx, device=self.device),), enc.float())
        return out, to_device(present, self.device)


def encoder_options_for(options, model_path: str):
    """A copy of hf encoder options pointing at another model folder (the fine-tuned one)."""
    return dataclasses.replace(options, model=model_path, revision="")
