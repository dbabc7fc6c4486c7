"""Reading the layout and metadata of a CMU Multimodal SDK computational sequence (``.csd``, HDF5).

The layout, as in the real files (checked on ``CMU_MOSI_Opinion_Labels.csd``)::

    <root group, e.g. "Opinion Segment Labels" or "All Labels">/
        data/<video id>/features     float (T, D)  (gzip-compressed float32 in the real files)
        data/<video id>/intervals    float (T, 2)  start, end seconds of each row
        metadata/<key>               (1,) variable-length UTF-8 string holding json.dumps(value):
                                     'root name' -> '"Opinion Segment Labels"',
                                     'dimension names' -> '["sentiment score"]',
                                     'alignment compatible' -> 'true', 'md5' -> 'null', ...

Two parts of ``mer`` read it: the ``csd`` encoder spec (:mod:`mer.features.csd_seq`: the cache
key and outputs need the root name, D and the dimension names) and the pipeline's reader and
aligner (``mer.pipeline.csd``, which ``mer import-csd`` and the ``mosei`` adapter use). The
opening, the root group, the metadata decoding and D are defined here, in the lower layer,
so both read a file the same way and reject a bad one with the same message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class CsdError(ValueError):
    """A file that is not a readable computational sequence; the message names the file."""


def decode_metadata(value: Any) -> Any:
    """A metadata value: bytes/str holding JSON (the SDK's encoding), else the raw string."""
    if isinstance(value, np.ndarray):
        if value.shape == (1,) or value.size == 1:
            value = value.reshape(-1)[0]
        else:
            return [decode_metadata(v) for v in value.tolist()]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_sequence(path: str | Path, root: str | None = None, parts: tuple[str, ...] = ("data", "metadata"),
                  hint: str = "") -> tuple[Any, str]:
    """(the open ``h5py.File``, the root group's name) of a .csd file; the caller closes the file.

    ``root`` None or '' = the file's only root group. ``parts`` are the sub-groups the caller
    needs (a CsdError names the one missing). ``hint`` ends the message of a file with several
    root groups (e.g. which option picks one).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise CsdError(f"{path}: file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CsdError(f"{path}: not an HDF5 computational sequence ({exc})") from None
    try:
        groups = [k for k in f.keys() if isinstance(f[k], h5py.Group)]
        if not root:
            if len(groups) != 1:
                raise CsdError(f"{path}: expected one root group (the sequence name), found {groups}{hint}")
            root = groups[0]
        if root not in groups:
            raise CsdError(f"{path}: no root group {root!r}; found {groups}")
        for part in parts:
            if part not in f[root]:
                raise CsdError(f"{path}: '{root}/{part}' is missing (expected '{root}/data/<video>/features', "
                               f"'{root}/data/<video>/intervals' and '{root}/metadata/...')")
    except BaseException:
        f.close()
        raise
    return f, root


def read_metadata(group: Any) -> dict[str, Any]:
    """The decoded ``metadata`` of a root group (datasets and attributes; {} when it has none)."""
    meta = group.get("metadata")
    if meta is None:
        return {}
    out = {k: decode_metadata(meta[k][()]) for k in meta.keys()}
    out.update({k: decode_metadata(v) for k, v in meta.attrs.items()})
    return out


def dimension_names(metadata: dict[str, Any]) -> list[str]:
    """The ``dimension names`` metadata as strings ([] when absent or not a list)."""
    names = metadata.get("dimension names")
    return [str(n) for n in names] if isinstance(names, list) else []


def feature_dim(data: Any, names: list[str]) -> int:
    """D: the width of the first video's ``features`` (every video of a sequence has the same D;
    a 1-D array counts as D = 1), or the number of dimension names when no video has features."""
    for video in data:
        feats = data[video].get("features")
        if feats is not None:
            return int(feats.shape[1]) if len(feats.shape) == 2 else 1
    return len(names)
