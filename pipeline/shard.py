"""The HDF5 shard format, and a writer that gives byte-identical files for identical input.

One shard holds the outputs of up to ``cache.shard_size`` samples::

    shard-00000.h5
      ids                 (N,)            variable-length UTF-8, sorted
      ok                  (N,)            bool; False = extraction failed (row is zeros / empty)
      <fixed output>      (N, *shape)     float outputs in the cache dtype, others exact
      <ragged output>/values   (sum T_i, *shape)
      <ragged output>/offsets  (N + 1,) int64; sample i is values[offsets[i]:offsets[i+1]]
      attributes: format, format_version, encoder key, family, modality, cache dtype,
                  outputs (JSON of the output specs); per output: ragged, dtype, and the
                  encoder's own attrs (layer names, axis names; JSON where not scalar)

Why byte-identical: two runs over the same corpus with the same encoder must give the same
sha256 per shard, so a checksum proves "same features" and a re-extracted shard can be
compared with the old one. HDF5 stores object timestamps by default; we switch them off on
the file (root group), every group and every dataset, fix the file-format version bounds
(so that a newer HDF5 does not silently pick a newer layout), track creation order (objects
and attributes list in the order written, which is fixed), write attributes in sorted order
and store data contiguously without compression filters. HDF5 itself writes no file-level
creation time (verified by ``tests/pipeline/test_cache.py``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import h5py
import numpy as np

from mer.features.base import OutputSpec

FORMAT = "mer-shard"
FORMAT_VERSION = 1
#: fixed HDF5 format bounds: readable by HDF5 >= 1.10 (h5py >= 2.10) everywhere
LIBVER = (h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
TRACK_ORDER = h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED


class OutputProblem(ValueError):
    """One sample's output cannot be stored as declared (non-finite values, float16 overflow)."""

    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage
        self.message = message


class EncoderContractError(RuntimeError):
    """An encoder returned something other than what ``outputs()`` declares: a bug, not bad input."""


def storage_dtype(spec: OutputSpec, cache_dtype: str) -> np.dtype:
    """``float`` outputs follow the cache dtype; every other declared dtype is stored exactly."""
    return np.dtype(cache_dtype if spec.dtype == "float" else spec.dtype)


def spec_to_dict(spec: OutputSpec, cache_dtype: str) -> dict[str, Any]:
    return {"name": spec.name, "shape": list(spec.shape), "ragged": bool(spec.ragged), "dtype": spec.dtype,
            "stored_dtype": storage_dtype(spec, cache_dtype).name, "attrs": _jsonable(spec.attrs)}


def spec_from_dict(data: dict[str, Any]) -> OutputSpec:
    return OutputSpec(name=data["name"], shape=tuple(data["shape"]), ragged=bool(data["ragged"]),
                      dtype=data.get("dtype", "float"), attrs=dict(data.get("attrs") or {}))


def _jsonable(obj: Any) -> Any:
    """A JSON round-trip: tuples become lists, numpy scalars plain numbers."""
    return json.loads(json.dumps(obj, sort_keys=True, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    return str(obj)


def convert_output(sample_id: str, key: str, outputs: dict[str, Any], specs: list[OutputSpec],
                   cache_dtype: str) -> dict[str, np.ndarray]:
    """Check one sample's outputs against the declared specs and cast them to storage dtypes.

    A wrong name or shape is an encoder bug (:class:`EncoderContractError`, the run stops);
    non-finite values or a float16 overflow are a problem of this sample
    (:class:`OutputProblem`, recorded as a failure) because one odd input can cause them.
    """
    if not isinstance(outputs, dict):
        raise EncoderContractError(f"encoder {key} returned {type(outputs).__name__} for sample {sample_id!r}; "
                                   f"expected a dict of arrays")
    declared = {s.name for s in specs}
    if set(outputs) != declared:
        raise EncoderContractError(
            f"encoder {key} returned outputs {sorted(outputs)} for sample {sample_id!r} but declares {sorted(declared)}")
    converted = {}
    for spec in specs:
        try:
            array = np.asarray(outputs[spec.name])
        except (TypeError, ValueError, RuntimeError) as exc:  # e.g. a CUDA tensor
            raise EncoderContractError(f"encoder {key} returned {type(outputs[spec.name]).__name__} for "
                                       f"{spec.name!r} (sample {sample_id!r}), not a numpy array: {exc}") from None
        want = tuple(spec.shape)
        if spec.ragged:
            ok_shape = array.ndim == len(want) + 1 and tuple(array.shape[1:]) == want
            expected = f"(T, {', '.join(map(str, want))})" if want else "(T,)"
        else:
            ok_shape = tuple(array.shape) == want
            expected = str(want)
        if not ok_shape:
            raise EncoderContractError(f"encoder {key} returned {spec.name!r} with shape {tuple(array.shape)} "
                                       f"for sample {sample_id!r}; outputs() declares {expected}")
        target = storage_dtype(spec, cache_dtype)
        if array.dtype.kind in "fc" and array.size and not np.isfinite(array).all():
            bad = int(array.size - np.isfinite(array).sum())
            raise OutputProblem("output", f"output {spec.name!r} has {bad} non-finite value(s) (NaN/inf)")
        if target.kind == "f" and array.dtype.kind in "fiu" and array.size:
            info = np.finfo(target)
            peak = float(np.abs(array).max())
            if peak > float(info.max):
                raise OutputProblem("store", f"output {spec.name!r} has |value| {peak:.6g} > {target.name} max "
                                             f"{float(info.max):.6g}; set cache.dtype=float32")
        if target.kind in "iub" and array.dtype.kind == "f":
            raise EncoderContractError(f"encoder {key} returned float values for {spec.name!r} (sample "
                                       f"{sample_id!r}) but declares dtype {spec.dtype!r}")
        converted[spec.name] = np.ascontiguousarray(array, dtype=target)
    return converted


@dataclass
class ShardData:
    """A shard's content in memory: rows in ``ids`` order (sorted)."""

    ids: list[str]
    ok: np.ndarray
    fixed: dict[str, np.ndarray] = field(default_factory=dict)
    ragged: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def assemble(ids: Iterable[str], results: dict[str, dict[str, np.ndarray]], specs: list[OutputSpec],
             cache_dtype: str) -> ShardData:
    """Stack per-sample outputs (already converted) into shard arrays; ids without a result
    are failures: a zero row for fixed outputs, an empty sequence for ragged ones."""
    ids = sorted(ids)
    n = len(ids)
    ok = np.array([i in results for i in ids], dtype=bool)
    data = ShardData(ids=ids, ok=ok)
    for spec in specs:
        dtype = storage_dtype(spec, cache_dtype)
        if spec.ragged:
            parts = [results[i][spec.name] if i in results else np.zeros((0, *spec.shape), dtype) for i in ids]
            lengths = np.array([len(p) for p in parts], dtype=np.int64)
            offsets = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            values = np.concatenate(parts, axis=0) if parts else np.zeros((0, *spec.shape), dtype)
            data.ragged[spec.name] = (np.ascontiguousarray(values, dtype=dtype), offsets)
        else:
            array = np.zeros((n, *spec.shape), dtype=dtype)
            for row, sample_id in enumerate(ids):
                if sample_id in results:
                    array[row] = results[sample_id][spec.name]
            data.fixed[spec.name] = array
    return data


def _attr_value(value: Any) -> Any:
    """HDF5-friendly attribute: strings and numbers as they are, anything else as JSON."""
    if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
        return value
    return json.dumps(value, sort_keys=True, default=_json_default)


def _set_attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    for name in sorted(attrs):
        obj.attrs[name] = _attr_value(attrs[name])


#: allocation increment of the in-memory HDF5 file (the image's size is HDF5's end of file, not a multiple of it)
CORE_BLOCK = 1 << 20


def _create_file(name: str) -> h5py.File:
    """A new in-memory HDF5 file (core driver, no backing store) without timestamps and with
    fixed format bounds (see module doc). Why in memory: HDF5 writing into a full disk fails
    its close, keeps the file open inside the library and then crashes the process at exit
    (a segmentation fault, reproduced on a full tmpfs); its file image is byte for byte what
    the default driver writes, and plain Python I/O puts it on disk with a clean ``OSError``."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(*LIBVER)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    fapl.set_fapl_core(CORE_BLOCK, False)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)  # the root group's timestamps
    fcpl.set_link_creation_order(TRACK_ORDER)  # h5dump / f.keys() list ids, ok, outputs in that order
    fcpl.set_attr_creation_order(TRACK_ORDER)
    fid = h5py.h5f.create(os.fsencode(name), h5py.h5f.ACC_TRUNC, fapl=fapl, fcpl=fcpl)
    return h5py.File(fid)


def _create_group(parent: h5py.Group, name: str) -> h5py.Group:
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    gcpl.set_link_creation_order(TRACK_ORDER)
    gcpl.set_attr_creation_order(TRACK_ORDER)
    gid = h5py.h5g.create(parent.id, name.encode("utf-8"), gcpl=gcpl)
    return h5py.Group(gid)


def _dataset(parent: h5py.Group, name: str, data: np.ndarray, **kwargs) -> h5py.Dataset:
    return parent.create_dataset(name, data=data, track_times=False, track_order=True, **kwargs)


def write_h5(path: str | Path, data: ShardData, specs: list[OutputSpec], attrs: dict[str, Any],
             cache_dtype: str) -> None:
    """Write ``data`` to ``path`` (a new file), deterministically. Durability (fsync, rename)
    is the caller's job (:func:`mer.pipeline.cache.publish_shard`); a full disk is a plain
    ``OSError`` (ENOSPC) and leaves a partial file for the caller to remove."""
    image = shard_image(data, specs, attrs, cache_dtype)
    with open(path, "wb") as fh:
        fh.write(image)


def shard_image(data: ShardData, specs: list[OutputSpec], attrs: dict[str, Any], cache_dtype: str) -> bytes:
    """The bytes of the shard file for ``data``, built in memory (see :func:`_create_file`)."""
    root_attrs = {"format": FORMAT, "format_version": FORMAT_VERSION, "cache_dtype": cache_dtype,
                  "outputs": [spec_to_dict(s, cache_dtype) for s in specs], **attrs}
    f = _create_file(f"mer-shard-{id(data)}")
    try:
        _set_attrs(f, root_attrs)
        ids = np.array(data.ids, dtype=object)
        _dataset(f, "ids", ids, dtype=h5py.string_dtype("utf-8"))
        _dataset(f, "ok", data.ok.astype(bool))
        for spec in specs:
            output_attrs = {"ragged": bool(spec.ragged), "dtype": spec.dtype, **spec.attrs}
            if spec.ragged:
                values, offsets = data.ragged[spec.name]
                group = _create_group(f, spec.name)
                _set_attrs(group, output_attrs)
                _dataset(group, "values", values)
                _dataset(group, "offsets", offsets.astype(np.int64))
            else:
                dataset = _dataset(f, spec.name, data.fixed[spec.name])
                _set_attrs(dataset, output_attrs)
        f.flush()
        return f.id.get_file_image()
    finally:
        f.close()


def read_ids(h5: h5py.File) -> list[str]:
    return list(h5["ids"].asstr()[:])


def read_all(path: str | Path) -> dict[str, Any]:
    """A whole shard as plain numpy (tests, debugging): ids, ok, every output."""
    out: dict[str, Any] = {}
    with h5py.File(path, "r") as f:
        out["ids"] = read_ids(f)
        out["ok"] = f["ok"][:]
        for name, obj in f.items():
            if name in ("ids", "ok"):
                continue
            if isinstance(obj, h5py.Group):
                out[name] = (obj["values"][:], obj["offsets"][:])
            else:
                out[name] = obj[:]
        out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return out
