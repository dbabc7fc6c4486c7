"""The encoder half that every Hugging Face family shares: which model (its path and its identity
for the cache key), its config, the hidden states it reads, and loading it.

``hf-text`` and ``hf-audio`` differ only in their preprocessing (tokenizer vs feature extractor),
their batching and their pooling; what they name and load is the same and lives here, once.
Nothing is imported from torch or transformers until a model is actually resolved.
"""

from __future__ import annotations

import threading
from typing import Any

from mer.features.base import Encoder
from mer.features.hf_common import ModelOptions, load_pretrained, model_identity, resolve_layers, resolve_model


class HFModelEncoder(Encoder):
    """Base of the ``hf-*`` families: lazily resolved path, identity, config and layers."""

    options: ModelOptions

    def __init__(self, options: ModelOptions):
        super().__init__(options)
        self.columns = (options.column,)
        self._path: str | None = None
        self._identity: dict[str, Any] | None = None
        self._config: Any = None
        self._model: Any = None
        # its own lock: a family's preprocessor lock may be held while the config is resolved
        self._config_lock = threading.Lock()

    @property
    def path(self) -> str:
        if self._path is None:
            self._path = resolve_model(self.options.model)
        return self._path

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = model_identity(self.options.model, self.options.revision)
        return self._identity

    def _ensure_config(self) -> Any:
        with self._config_lock:
            if self._config is None:
                self._before_transformers()
                from transformers import AutoConfig

                config = AutoConfig.from_pretrained(self.path, revision=self.options.revision or None)
                self._check_config(config)
                self._config = config
        return self._config

    def _before_transformers(self) -> None:
        """Hook run before transformers is first imported for this model (environment checks)."""

    def _check_config(self, config: Any) -> None:
        """Hook: refuse a config this family cannot encode (raise ValueError naming the model)."""

    @property
    def layer_indices(self) -> list[int]:
        return resolve_layers(self.options.layers, self._ensure_config().num_hidden_layers)

    def pooled_shape(self) -> tuple[int, ...]:
        """``(D,)`` for ``layers: last``, else ``(number of selected layers, D)``."""
        dim = int(self._ensure_config().hidden_size)
        return (dim,) if self.options.layers == "last" else (len(self.layer_indices), dim)

    def _load_model(self, device: Any) -> Any:
        """The model in eval mode on ``device``, float32, from the real ``from_pretrained`` path."""
        from transformers import AutoModel

        model = load_pretrained(AutoModel, self.path, self.options.revision, config=self._ensure_config())
        return model.eval().to(device)

    def on_cuda(self) -> bool:
        return self.device is not None and getattr(self.device, "type", "cpu") == "cuda"
