"""``csd``: a feature sequence from a CMU Multimodal SDK computational sequence (``.csd``).

CMU-MOSEI/MOSI ship their features (COVAREP, FACET, OpenFace, GloVe, ...) as ``.csd`` files:
per video, feature rows (T, D) with a time interval each. ``mer import-csd`` aligns those rows
to each sample's ``[start, end)`` interval and writes them into the feature cache as a
sequence modality. This module is the ENCODER SPEC of that cache, so that a config naming it

.. code-block:: yaml

    features:
      covarep: {encoder: csd, path: data/CMU_MOSEI/CMU_MOSEI_COVAREP.csd}

lets ``mer train`` / ``mer evaluate`` / ``mer cache gc`` find the imported cache like any other:
the key, the outputs and the presence rule are defined here, once. It does not extract:
reading and aligning the file is the pipeline's job (``mer.pipeline.import_csd``, which uses
``mer.pipeline.csd``; features never import the pipeline; the layout and metadata reading
both need is :mod:`mer.features.csd_file`), so :meth:`CsdSequenceEncoder.load`
raises :class:`~mer.features.base.EncoderUnavailable` telling the user to run
``mer import-csd``. ``mer extract`` over a config whose csd modality is already imported only
verifies it (complete caches load no encoder).

Key: ``csd-<hash>`` of the file's CONTENT (sha256, not its path: moving the file keeps the
cache), its root group name (the sequence), the alignment options below and
:attr:`CsdSequenceEncoder.code_version` (bump it when the alignment in
``mer.pipeline.csd.align_to_segments`` or the importer changes its output).

Outputs per sample (the rows whose interval overlaps ``[start, end)``, in file order):

``frames``     ragged (T, D) float (the cache dtype); attrs ``dims`` = [time, feature],
               ``names`` = the file's ``dimension names`` metadata when it has D of them,
               ``sequence`` = the root group name.
``intervals``  ragged (T, 2) float32: each row's [start, end) seconds, clipped to the sample.

A row of the manifest has this modality when its ``video_column`` (default ``video_id``, as the
``mosei`` adapter writes) is non-empty; ``start``/``end`` empty = the whole video.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mer.features.base import Encoder, EncoderUnavailable, OutputSpec
from mer.features.batching import BatchPolicy
from mer.features.csd_file import CsdError, dimension_names, feature_dim, open_sequence, read_metadata


@dataclass
class Options:
    encoder: str = "csd"
    #: the .csd file. Only its content is in the key (sha256), so the path may change freely
    path: str = ""
    #: root group (the sequence's name, e.g. "COVAREP"); empty = the file's only root group
    root: str = ""
    #: manifest column holding each sample's video id (start/end give the interval)
    video_column: str = "video_id"
    #: NaN/inf in a sample's rows (COVAREP has -inf): fail = a recorded per-sample failure;
    #: zero = replace them by 0 (what most MOSEI baselines do silently; here it is a keyed choice)
    nonfinite: Literal["fail", "zero"] = "fail"

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError("path must name the .csd file (CMU Multimodal SDK computational sequence)")
        if not self.video_column:
            raise ValueError("video_column must name a manifest column")


@dataclass(frozen=True)
class CsdHeader:
    """What the key and the outputs need from a .csd file, read without its data."""

    root: str
    dim: int
    names: list[str]


_HASHES: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """sha256 of the file's bytes, cached per (path, size, mtime) for this process (a MOSEI
    COVAREP file is several GB: hashing it once per process, not once per key() call)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: .csd file not found (features.<modality>.path)") from None
    slot = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _HASH_LOCK:
        if slot in _HASHES:
            return _HASHES[slot]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _HASH_LOCK:
        _HASHES[slot] = value
    return value


def read_header(path: str | Path, root: str = "") -> CsdHeader:
    """Root group name, D (from the first video) and dimension names of a .csd file
    (:mod:`mer.features.csd_file` reads them; the data itself is not touched)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: .csd file not found (features.<modality>.path)")
    f, root = open_sequence(path, root, parts=("data",), hint="; set features.<modality>.root")
    with f:
        group = f[root]
        names = dimension_names(read_metadata(group))
        dim = feature_dim(group["data"], names)
        if not dim:
            raise CsdError(f"{path}: '{root}/data' holds no video with features and the metadata names no "
                           "dimensions: D is unknown")
    return CsdHeader(root=root, dim=dim, names=names if len(names) == dim else [])


class CsdSequenceEncoder(Encoder):
    """The spec of an imported .csd sequence cache (key, outputs, presence); see the module doc."""

    family = "csd"
    code_version = "1"
    columns = ("video_id",)

    def __init__(self, options: Options):
        super().__init__(options)
        self.columns = (options.video_column,)
        self._header: CsdHeader | None = None
        self._identity: dict[str, Any] | None = None

    @property
    def header(self) -> CsdHeader:
        if self._header is None:
            self._header = read_header(self.options.path, self.options.root)
        return self._header

    # --- identity ------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = {"sha256": file_sha256(self.options.path), "root": self.header.root}
        return self._identity

    def key_material(self) -> dict[str, Any]:
        """Content, sequence name, alignment options and code version; NOT the path (a moved file
        keeps its cache), the ``encoder`` field (the importer runs under its own module name)
        nor ``root`` as written (empty and the explicit name of the only root are the same)."""
        opts = {"video_column": self.options.video_column, "nonfinite": self.options.nonfinite}
        return {"family": self.family, "code_version": self.code_version, "options": opts,
                "identity": self.identity()}

    # --- spec ------------------------------------------------------------------------------
    def outputs(self) -> list[OutputSpec]:
        h = self.header
        attrs: dict[str, Any] = {"dims": ["time", "feature"], "sequence": h.root}
        if h.names:
            attrs["names"] = list(h.names)
        return [OutputSpec("frames", (h.dim,), ragged=True, attrs=attrs),
                OutputSpec("intervals", (2,), ragged=True, dtype="float32",
                           attrs={"dims": ["time", "bound"], "unit": "seconds"})]

    def batch_policy(self) -> BatchPolicy:
        return BatchPolicy(max_items=64)  # no model: a batch is only a unit of hand-over

    # --- not extracted: imported -----------------------------------------------------------
    def _unavailable(self) -> EncoderUnavailable:
        return EncoderUnavailable(
            f"encoder 'csd' ({self.options.path}) is not extracted but imported: run "
            f"`mer import-csd -c <config> --modality <name>` (it aligns the file's rows to the manifest's "
            f"intervals and writes this modality's cache); `mer extract` only verifies an imported cache")

    def load(self, device: Any) -> None:
        raise self._unavailable()

    def prepare(self, row: dict) -> Any:
        raise self._unavailable()

    def encode(self, batch: list[Any]) -> list[dict[str, np.ndarray]]:
        raise self._unavailable()


ENCODER = CsdSequenceEncoder
