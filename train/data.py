"""From manifest + feature caches to on-device training tensors (:class:`TrainData`).

The manifest and each modality's cache are joined BY ID (``FeatureStore.get(ids)`` returns
arrays aligned with the ids asked for), never by row position. Every modality is read once
and kept on the training device as one tensor, so a mini-batch is an index slice: no
per-sample ``Dataset.__getitem__`` and no Python collate.

What happens to the features, in order:

1. read: the modality's chosen cache output (``train.inputs[m]``, default: the encoder's
   first fixed-size float output, else its first sequence output). Fixed outputs are
   (N, D) vectors or (N, L, D) all-layer stacks; sequences are ragged (T_i, D) and, for
   the vector heads, mean-pooled over time (models registered with ``sequences=True`` get
   the ragged values instead);
2. presence: a sample has modality m when its cache row is present, did not fail, has
   at least one frame, and is finite everywhere. NaN/inf samples are reported (a warning
   naming their ids) and marked absent, so they can never produce a NaN loss;
3. splits: ``train.split_column``; when no row is ``val``, ~``train.val_fraction`` of the
   TRAINING groups (speakers/sessions, ``group`` column) are carved off as validation,
   deterministically from ``train.split_seed``; the test split is never used for a choice;
4. standardisation: per-feature mean/std over the present TRAINING samples only (per layer
   for all-layer caches); the statistics travel in ``model.pt`` so that ``mer evaluate``
   applies exactly the same transform; absent samples are exactly zero afterwards (the
   model adds its learned "missing" embedding there);
5. labels: class indices over ``train.classes`` (default: the sorted labels of the training
   split); unlabeled rows (empty label) stay in the table, flagged, and are left out of
   supervised training and metrics. Multi-label (``train.multilabel``): the label is a
   ``;``-joined class list, or, when the manifest has a ``target_<class>`` column for every
   class, presence = that intensity > 0 (CMU-MOSEI; an empty list is then "no emotion",
   not "unlabeled").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mer.pipeline.manifest import TARGET_PREFIX, Manifest
from mer.train.config import TrainConfig
from mer.train.errors import CacheError, DataError, DataWarning
from mer.train.models.common import Batch, InputSpec
from mer.train.sequences import pad_rows

#: how many offending ids a warning or error lists before "and N more"
PREVIEW = 8


def _preview(items: list[str]) -> str:
    more = f" and {len(items) - PREVIEW} more" if len(items) > PREVIEW else ""
    return ", ".join(items[:PREVIEW]) + more


# --------------------------------------------------------------------------- caches


@dataclass(frozen=True)
class ModalitySource:
    """Where one modality's features live, and which encoder made them.

    Built by the application from what extraction recorded (``spec.json``); the trainer
    never recomputes an encoder key.
    """

    name: str
    family: str
    key: str
    dir: Path
    #: the exact command that builds or repairs this cache (printed when it is missing)
    repair: str = ""


def check_modalities_in_manifest(manifest: Manifest, modalities: dict[str, str]) -> None:
    """Refuse a modality that no manifest row has, before any encoder is resolved.

    ``modalities`` maps each modality to its manifest column. Why: resolving a hub model name
    to its cache key may try the network for a modality the corpus simply lacks (MELD without
    its mp4 folder has no audio at all); the useful advice is then "train without it", not
    "extract it".
    """
    df = manifest.df
    names = list(modalities)
    for m, column in modalities.items():
        if not column:
            continue
        values = df[column].fillna("").astype(str).str.strip() if column in df.columns else None
        if values is None or not values.ne("").any():
            rest = [k for k in names if k != m]
            hint = (f"train on the others: --set train.modalities=[{','.join(rest)}]" if rest
                    else "pick a modality the corpus has (train.modalities)")
            where = "has no such column" if values is None else f"is empty in all {len(df)} rows"
            raise DataError(f"{manifest.source}: no sample has modality {m!r} (manifest column {column!r} {where}); "
                            f"{hint}")


def verify_caches(manifest: Manifest, sources: dict[str, ModalitySource]) -> dict[str, ModalitySource]:
    """Refuse (CacheError) unless every modality's cache exists and covers the manifest."""
    from mer.pipeline.store import FeatureStore

    problems = []
    for m, src in sources.items():
        command = src.repair or f"mer extract -c <config.yaml> --modality {m}"
        if not src.dir.is_dir():
            problems.append(f"modality {m!r}: no cache at {src.dir}\n  run: {command}")
            continue
        try:
            store = FeatureStore(src.dir)
        except CacheError as exc:
            problems.append(f"modality {m!r}: {exc}\n  run: {command}")
            continue
        if not store.is_complete(manifest):
            problems.append(f"modality {m!r}: the cache at {src.dir} is incomplete for manifest "
                            f"{manifest.source} (fingerprint {manifest.fingerprint})\n"
                            f"  run: {command}")
    if problems:
        raise CacheError("cannot train: feature cache(s) missing or incomplete; nothing is extracted by "
                         "training, extract first:\n" + "\n".join(problems))
    return sources


@dataclass
class RawModality:
    """One modality as read from its cache, aligned with the manifest ids (host numpy)."""

    output: str
    #: (N, D) or (N, L, D) float32 for vector heads; None for sequence models
    x: np.ndarray | None
    present: np.ndarray
    #: sequence models: (values (T, D) float32, offsets (N+1,) int64)
    seq: tuple[np.ndarray, np.ndarray] | None = None
    #: the output's attributes (e.g. ``layers``: the hidden-state index of each cached layer)
    attrs: dict = field(default_factory=dict)


def _spec_outputs(spec: dict) -> list[dict]:
    outs = spec.get("outputs", [])
    if isinstance(outs, dict):
        outs = [dict(v, name=k) for k, v in outs.items()]
    return [dict(o) for o in outs]


def choose_output(spec: dict, wanted: str | None, where: str) -> dict:
    """The output named ``wanted``, else the first fixed float output, else the first sequence."""
    outs = _spec_outputs(spec)
    names = [o["name"] for o in outs]
    if wanted:
        for o in outs:
            if o["name"] == wanted:
                return o
        raise DataError(f"{where}: the cache has no output {wanted!r} (train.inputs); it has {names}")
    floats = [o for o in outs if str(o.get("dtype", "float")).startswith("float")]
    for o in floats:
        if not o.get("ragged", False):
            return o
    if floats:
        return floats[0]
    raise DataError(f"{where}: the cache has no float output to train on (outputs: {names})")


def _ragged_parts(value) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(value.values, dtype=np.float32)
    offsets = np.asarray(value.offsets, dtype=np.int64)
    return values.reshape(values.shape[0], -1), offsets


def read_modality(src: ModalitySource, ids: list[str], output: str | None, sequences: bool) -> RawModality:
    """Read one cache output for ``ids`` (in that order) and work out per-sample presence."""
    from mer.pipeline.store import FeatureStore

    store = FeatureStore(src.dir)
    spec = choose_output(store.spec, output, f"modality {src.name!r} ({src.dir})")
    name = spec["name"]
    got = store.get(ids, outputs=[name])
    value = got[name]
    present = np.asarray(got.present, dtype=bool) & ~np.asarray(got.failed, dtype=bool)
    if spec.get("ragged", False):
        values, offsets = _ragged_parts(value)
        lengths = np.diff(offsets)
        present &= lengths > 0
        if sequences:
            return RawModality(name, None, present, (values, offsets), attrs=dict(spec.get("attrs") or {}))
        sums = np.zeros((len(ids), values.shape[1]), dtype=np.float64)
        rows = np.repeat(np.arange(len(ids)), lengths)
        np.add.at(sums, rows, values.astype(np.float64))
        x = (sums / np.maximum(lengths, 1)[:, None]).astype(np.float32)
        return RawModality(name, x, present, attrs=dict(spec.get("attrs") or {}))
    x = np.asarray(value, dtype=np.float32)
    return RawModality(name, x, present, attrs=dict(spec.get("attrs") or {}))


def resolve_layer(layer: str, n_layers: int, cached: list | None, where: str) -> str:
    """``train.layer`` for one all-layer cache: ``last``, ``weighted``, or a POSITION on its layer axis.

    An integer ``k`` names a hidden-state index listed in the output's ``layers`` attribute
    (hf-text/hf-audio record which hidden states they cached, e.g. ``[4, 8, 12]``); a negative
    ``k`` counts from the end; without such an attribute ``k`` is the position itself.
    """
    if layer in ("last", "weighted"):
        return layer
    try:
        k = int(layer)
    except ValueError:
        raise DataError(f"{where}: train.layer must be last, weighted or an integer, got {layer!r}") from None
    if cached and k >= 0:
        if k not in cached:
            raise DataError(f"{where}: train.layer {k} is not among the cached layers {cached} "
                            "(use one of them, a negative position, last or weighted)")
        return str(list(cached).index(k))
    if not -n_layers <= k < n_layers:
        raise DataError(f"{where}: train.layer {k} is out of range for a cache of {n_layers} layers")
    return str(k)


#: per-process memo of cache reads: ``mer ablate`` loads each modality once per worker
_READ_MEMO: dict[tuple, RawModality] = {}
#: (cache dir, manifest fingerprint) already verified complete in this process
_VERIFIED: set[tuple[str, str]] = set()


def read_modality_memo(src: ModalitySource, ids: list[str], output: str | None, sequences: bool,
                       reuse: bool) -> RawModality:
    if not reuse:
        return read_modality(src, ids, output, sequences)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    key = (str(src.dir), output, sequences, digest)
    if key not in _READ_MEMO:
        _READ_MEMO[key] = read_modality(src, ids, output, sequences)
    return _READ_MEMO[key]


# --------------------------------------------------------------------------- splits & labels


def _strings(column) -> np.ndarray:
    """An object array of plain Python ``str`` (not numpy.str_: they leak into JSON and messages)."""
    return np.array([str(v) for v in column], dtype=object)


@dataclass
class SplitInfo:
    split: np.ndarray
    val_carved: bool = False
    val_groups: list[str] = field(default_factory=list)
    note: str = ""


def resolve_splits(manifest: Manifest, column: str, fraction: float, seed: int, carve: bool = True) -> SplitInfo:
    """The split of every row; carve val from the training groups when there is none (and ``carve``)."""
    df = manifest.df
    if column not in df.columns:
        raise DataError(f"{manifest.source}: train.split_column {column!r} is not a manifest column "
                        f"(columns: {list(df.columns)})")
    split = _strings(df[column])
    if (split == "val").any() or not carve:
        return SplitInfo(split)
    train = split == "train"
    if not train.any():
        raise DataError(f"{manifest.source}: no row has {column} = 'train'")
    ids = _strings(df["id"])
    groups = _strings(df["group"]) if "group" in df.columns else np.full(len(df), "", dtype=object)
    groups = np.where(groups == "", ids, groups)
    unique = sorted(set(groups[train]))
    per_sample = len(unique) < 2
    if per_sample:  # one speaker/session: carve samples (ids) instead of groups
        groups = ids
        unique = sorted(set(groups[train]))
    if len(unique) < 2:
        raise DataError(f"{manifest.source}: cannot carve a validation split from {len(unique)} training sample(s)")
    rng = np.random.default_rng(seed)
    n_val = min(len(unique) - 1, max(1, int(round(fraction * len(unique)))))
    val_groups = sorted(rng.permutation(unique)[:n_val].tolist())
    is_val = train & np.isin(groups, val_groups)
    split = split.copy()
    split[is_val] = "val"
    unit = "samples (the training split has a single group)" if per_sample else "groups"
    note = (f"no 'val' split in {manifest.source}: carved {n_val} of {len(unique)} training {unit} "
            f"({int(is_val.sum())} samples) as validation (seed {seed}, fraction {fraction})")
    return SplitInfo(split, True, val_groups, note)


@dataclass
class Labels:
    classes: list[str]
    #: (N,) int64 with -1 for unlabeled, or (N, C) float32 multi-hot
    y: np.ndarray
    labeled: np.ndarray
    #: (N,) int64 contrastive group: the class, or the id of the exact label set (multi-label); -1 unlabeled
    group: np.ndarray
    num_groups: int


def encode_labels(manifest: Manifest, split: np.ndarray, train_cfg, classes: list[str] | None = None) -> Labels:
    """Class indices (or multi-hot) for every row; see the module docstring for the rules."""
    df = manifest.df
    column = train_cfg.target
    if column not in df.columns:
        raise DataError(f"{manifest.source}: train.target {column!r} is not a manifest column")
    raw = _strings(df[column])
    is_train = split == "train"
    # classes come from config, else from the training rows (the carved val included: it is training data)
    fit_rows = is_train | ((split == "val") & (manifest.df[train_cfg.split_column].to_numpy(dtype=object) == "train"))
    if train_cfg.multilabel:
        return _multilabel(manifest, raw, fit_rows, classes or list(train_cfg.classes))
    classes = list(classes or train_cfg.classes) or sorted(set(raw[fit_rows & (raw != "")]))
    if not classes:
        raise DataError(f"{manifest.source}: no labelled training sample in column {column!r}")
    index = {c: i for i, c in enumerate(classes)}
    labeled = raw != ""
    unknown = sorted(set(raw[labeled]) - set(index))
    if unknown:
        rows = [f"{i} ({l!r}, split {s!r})" for i, l, s in zip(df["id"], raw, split) if l in unknown]
        raise DataError(f"{manifest.source}: label(s) {unknown} are not among the classes {classes} "
                        f"(classes come from train.classes or the training split's labels): {_preview(rows)}")
    y = np.array([index.get(l, -1) for l in raw], dtype=np.int64)
    return Labels(classes, y, labeled, y.copy(), len(classes))


def _multilabel(manifest: Manifest, raw: np.ndarray, fit_rows: np.ndarray, classes: list[str]) -> Labels:
    df = manifest.df
    if not classes:
        found = {c.strip() for l in raw[fit_rows] for c in l.split(";") if c.strip()}
        classes = sorted(found)
    if not classes:
        raise DataError(f"{manifest.source}: multilabel: no class found in the training labels; set train.classes")
    columns = [f"{TARGET_PREFIX}{c}" for c in classes]
    if all(c in df.columns for c in columns):
        values = df[columns].to_numpy(dtype=np.float64)
        labeled = np.isfinite(values).all(axis=1)
        y = np.where(labeled[:, None], values > 0, False).astype(np.float32)
    else:
        index = {c: i for i, c in enumerate(classes)}
        labeled = raw != ""
        y = np.zeros((len(raw), len(classes)), dtype=np.float32)
        unknown = set()
        for r, l in enumerate(raw):
            for c in (p.strip() for p in l.split(";")):
                if c in index:
                    y[r, index[c]] = 1.0
                elif c:
                    unknown.add(c)
        if unknown:
            raise DataError(f"{manifest.source}: multilabel: label(s) {sorted(unknown)} are not among "
                            f"the classes {classes}")
    keys = ["".join("1" if v else "0" for v in row) for row in y]
    sets = sorted(set(k for k, ok in zip(keys, labeled) if ok))
    set_id = {k: i for i, k in enumerate(sets)}
    group = np.array([set_id[k] if ok else -1 for k, ok in zip(keys, labeled)], dtype=np.int64)
    return Labels(classes, y, labeled, group, len(sets))


# --------------------------------------------------------------------------- standardisation


def fit_stats(x: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Per-feature mean/std over ``x[rows]`` (float64 accumulation); a constant feature gets std 1."""
    sel = x[rows].astype(np.float64)
    if len(sel) == 0:
        raise DataError("no present training sample to standardise on")
    mean = sel.mean(axis=0)
    std = sel.std(axis=0)
    std = np.where(std > 1e-8, std, 1.0)
    return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}


def apply_stats(x: np.ndarray, present: np.ndarray, stats: dict) -> np.ndarray:
    """(x − mean) / std in float32, exactly zero where absent. Used by training and evaluation alike."""
    mean = np.asarray(stats["mean"], dtype=np.float32)
    std = np.asarray(stats["std"], dtype=np.float32)
    out = (x.astype(np.float32) - mean) / std
    mask = present.reshape((-1,) + (1,) * (out.ndim - 1))
    return np.where(mask, out, np.float32(0.0)).astype(np.float32)


def _finite_rows(x: np.ndarray) -> np.ndarray:
    return np.isfinite(x.reshape(len(x), -1)).all(axis=1)


# --------------------------------------------------------------------------- TrainData


@dataclass
class ModalityData:
    """One modality on the device: standardised inputs, presence and provenance."""

    name: str
    family: str
    cache_key: str
    output: str
    present: Tensor
    #: (N, D) or (N, L, D); None for sequence models
    x: Tensor | None = None
    #: sequence models: standardised frame values (T, D) and offsets (N+1,)
    values: Tensor | None = None
    offsets: Tensor | None = None
    stats: dict[str, np.ndarray] = field(default_factory=dict)
    #: all-layer caches: ``train.layer`` resolved for this cache (:func:`resolve_layer`)
    layer: str = ""
    #: the cache output's attributes (e.g. ``hop_seconds`` of log-mel frames: MPUC-MER's views)
    attrs: dict = field(default_factory=dict)

    @property
    def layers(self) -> int:
        return int(self.x.shape[1]) if self.x is not None and self.x.dim() == 3 else 0

    @property
    def dim(self) -> int:
        return int((self.x if self.x is not None else self.values).shape[-1])

    def spec(self) -> InputSpec:
        return InputSpec(self.name, self.dim, self.layers, self.family, ragged=self.values is not None,
                         layer=self.layer)


class ManifestRows:
    """Length, class count and the rows of a split, answered the same way by every data view over
    a manifest (:class:`TrainData`, ``FinetuneData`` of :mod:`mer.train.finetune_data`), so
    ``mer train`` and ``mer finetune`` select the same rows for a split.

    The subclass (a dataclass) provides ``ids``, ``split`` (per row: train/val/test/''),
    ``classes`` and ``labeled`` (per row, a bool numpy array or tensor).
    """

    ids: list[str]
    split: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def rows(self, split: str, labeled_only: bool = True) -> np.ndarray:
        """Host row indices of ``split`` (``all``: every row; labelled rows only by default)."""
        mask = np.ones(len(self.ids), dtype=bool) if split == "all" else self.split == split
        if labeled_only:
            labeled = self.labeled
            mask &= labeled.cpu().numpy() if isinstance(labeled, Tensor) else labeled
        return np.flatnonzero(mask)


@dataclass
class TrainData(ManifestRows):
    """Everything the trainer needs, on one device. Row order = the manifest's (sorted by id).

    Attributes:
        ids, split (train/val/test/''), label_text: per row, host side.
        y: (N,) long (−1 = unlabeled) or (N, C) float multi-hot; labeled: (N,) bool.
        group_y: (N,) long ids for the contrastive losses (class, or label-set id).
        modalities: name → :class:`ModalityData` in ``train.modalities`` order.
        val_carved / val_groups / notes: how val was made, and what the user should know.
    """

    ids: list[str]
    split: np.ndarray
    label_text: list[str]
    classes: list[str]
    multilabel: bool
    y: Tensor
    labeled: Tensor
    group_y: Tensor
    num_groups: int
    modalities: dict[str, ModalityData]
    manifest_fingerprint: str
    manifest_source: str
    device: torch.device
    val_carved: bool = False
    val_groups: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def index(self, split: str) -> Tensor:
        """Device LongTensor of the labelled rows of ``split``."""
        return torch.as_tensor(self.rows(split), dtype=torch.long, device=self.device)

    def batch(self, idx: Tensor) -> Batch:
        """Slice every tensor at ``idx`` (a device LongTensor)."""
        return Batch(
            # sequence modalities: whole clips, zero-padded to the batch's longest (mer.train.sequences.Padded)
            x={m: d.x[idx] if d.x is not None else pad_rows(d.values, d.offsets, idx) for m, d in self.modalities.items()},
            present={m: d.present[idx] for m, d in self.modalities.items()},
            y=self.y[idx],
            group_y=self.group_y[idx],
        )

    def inputs(self) -> list[InputSpec]:
        return [d.spec() for d in self.modalities.values()]

    def select(self, modalities: list[str]) -> "TrainData":
        """A view with a subset of the modalities (tensors shared, not copied)."""
        missing = [m for m in modalities if m not in self.modalities]
        if missing:
            raise DataError(f"modalities {missing} were not loaded (loaded: {list(self.modalities)})")
        return dataclasses.replace(self, modalities={m: self.modalities[m] for m in modalities})

    def stats(self) -> dict[str, dict[str, Tensor]]:
        """Standardisation statistics per modality, as tensors (saved in model.pt)."""
        return {m: {k: torch.as_tensor(v) for k, v in d.stats.items()} for m, d in self.modalities.items()}

    def missing_text(self) -> list[str]:
        """Per row, the ';'-joined modalities the sample lacks ('' = none missing)."""
        pres = {m: d.present.cpu().numpy() for m, d in self.modalities.items()}
        return [";".join(m for m in self.modalities if not pres[m][i]) for i in range(len(self.ids))]


@dataclass
class Fitted:
    """Transforms fitted on a run's training split, applied as they are (``mer evaluate``)."""

    stats: dict[str, dict]
    classes: list[str]


def load_train_data(train_cfg: TrainConfig, manifest: Manifest, sources: dict[str, ModalitySource], *,
                    device: torch.device | str = "cpu", fitted: Fitted | None = None, sequences: bool = False,
                    reuse: bool = False, carve_val: bool = True, log=None) -> TrainData:
    """Join ``manifest`` with the caches in ``sources`` (in that order) and build on-device tensors.

    Args:
        train_cfg: the ``train`` section (splits, labels, inputs, layer).
        manifest: the manifest the caches were built from.
        sources: where each modality's cache is, in the order the model takes them.
        fitted: standardisation statistics and classes to APPLY (``mer evaluate`` passes the
            run's); None = fit them on the training split.
        sequences: keep ragged sequences (models registered with ``sequences=True``).
        reuse: memoise cache reads in this process (``mer ablate``).
        carve_val: carve a validation split when the manifest has none (False: evaluating
            another corpus, whose splits are used as they are).
        log: a callable taking one line (default: no log besides warnings).
    """
    modalities = list(sources)
    if not modalities:
        raise DataError("no modality to train on: 'features' is empty")
    stats = fitted.stats if fitted else None
    classes = fitted.classes if fitted else None
    unverified = [m for m in modalities if not (reuse and (str(sources[m].dir), manifest.fingerprint) in _VERIFIED)]
    verify_caches(manifest, {m: sources[m] for m in unverified})
    _VERIFIED.update((str(sources[m].dir), manifest.fingerprint) for m in unverified)
    device = torch.device(device)
    ids = manifest.ids
    say = log or (lambda line: None)

    info = resolve_splits(manifest, train_cfg.split_column, train_cfg.val_fraction, train_cfg.split_seed, carve_val)
    notes = []
    if info.val_carved:
        notes.append(info.note)
        say(info.note)
    labels = encode_labels(manifest, info.split, train_cfg, classes)
    train_rows = info.split == "train"

    mods: dict[str, ModalityData] = {}
    for m in modalities:
        src = sources[m]
        raw = read_modality_memo(src, ids, train_cfg.inputs.get(m) or None, sequences, reuse)
        present = raw.present.copy()
        data = raw.x if raw.seq is None else raw.seq[0]
        if raw.seq is None:
            finite = _finite_rows(raw.x)
        else:
            bad_frames = np.zeros(len(ids), dtype=np.int64)
            np.add.at(bad_frames, np.repeat(np.arange(len(ids)), np.diff(raw.seq[1])), ~_finite_rows(raw.seq[0]))
            finite = bad_frames == 0
        bad = present & ~finite
        if bad.any():
            bad_ids = [ids[i] for i in np.flatnonzero(bad)]
            msg = (f"modality {m!r}: {len(bad_ids)} sample(s) have NaN/inf features and are treated as missing "
                   f"this modality: {_preview(bad_ids)}")
            warnings.warn(msg, DataWarning, stacklevel=2)
            notes.append(msg)
            present &= finite
        if stats is not None:
            if m not in stats:
                raise DataError(f"modality {m!r}: no standardisation statistics in the checkpoint")
            st = {k: np.asarray(v.cpu().numpy() if isinstance(v, Tensor) else v) for k, v in stats[m].items()}
        else:
            rows = train_rows & present
            if not rows.any():
                raise DataError(f"modality {m!r}: no training sample has this modality; cannot standardise "
                                f"(cache {src.dir})")
            if raw.seq is None:
                st = fit_stats(np.where(_mask_like(present, data), data, np.float32(0.0)), rows)
            else:
                frame_rows = np.repeat(rows, np.diff(raw.seq[1]))
                st = fit_stats(np.where(frame_rows[:, None], data, np.float32(0.0)), frame_rows)
        md = ModalityData(m, src.family, src.key, raw.output,
                          present=torch.as_tensor(present, device=device), stats=st, attrs=dict(raw.attrs))
        if raw.seq is None:
            clean = np.where(_mask_like(present, data), data, np.float32(0.0))
            md.x = torch.as_tensor(apply_stats(clean, present, st), device=device)
            if md.x.dim() == 3:
                md.layer = resolve_layer(str(train_cfg.layer), md.x.shape[1], raw.attrs.get("layers"),
                                         f"modality {m!r} ({src.dir})")
        else:
            frame_present = np.repeat(present, np.diff(raw.seq[1]))
            clean = np.where(frame_present[:, None], data, np.float32(0.0))
            md.values = torch.as_tensor(apply_stats(clean, frame_present, st), device=device)
            md.offsets = torch.as_tensor(raw.seq[1], device=device)
        n_missing = int((~present).sum())
        if n_missing:
            say(f"modality {m!r}: {n_missing} of {len(ids)} samples missing (kept, with the learned missing embedding)")
        mods[m] = md

    y_dtype = torch.float32 if train_cfg.multilabel else torch.long
    return TrainData(
        ids=ids, split=info.split, label_text=manifest.df[train_cfg.target].astype(str).tolist(),
        classes=labels.classes, multilabel=train_cfg.multilabel,
        y=torch.as_tensor(labels.y, dtype=y_dtype, device=device),
        labeled=torch.as_tensor(labels.labeled, device=device),
        group_y=torch.as_tensor(labels.group, dtype=torch.long, device=device),
        num_groups=labels.num_groups, modalities=mods, manifest_fingerprint=manifest.fingerprint,
        manifest_source=manifest.source, device=device, val_carved=info.val_carved,
        val_groups=info.val_groups, notes=notes,
    )


def _mask_like(present: np.ndarray, x: np.ndarray) -> np.ndarray:
    return present.reshape((-1,) + (1,) * (x.ndim - 1))


def describe(data: TrainData) -> str:
    """One line per split: samples, labelled, and per-modality presence."""
    lines = []
    labeled = data.labeled.cpu().numpy()
    for s in ("train", "val", "test"):
        rows = data.split == s
        lines.append(f"{s}: {int(rows.sum())} samples, {int((rows & labeled).sum())} labelled")
    for m, d in data.modalities.items():
        shape = tuple((d.x if d.x is not None else d.values).shape[1:])
        lines.append(f"modality {m}: {d.family} {d.cache_key} output {d.output!r} {shape}, "
                     f"{int(d.present.sum())}/{len(data)} present")
    return "\n".join(lines)


def json_safe(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))
