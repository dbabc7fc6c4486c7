"""The fine-tuned model: a Hugging Face encoder split into a frozen bottom and a trainable top,
masked-mean pooling as ``mer extract`` pools, the training-split standardisation, and the
``mer train unimodal`` head.

Why split the encoder by hand instead of freezing parameters and calling ``model(...)``:
the bottom runs under ``torch.no_grad`` (no activation is kept for it, whatever the
autograd rules would decide), its dropout is off (the frozen part computes exactly what
extraction computes), and the top layers receive the bottom's hidden states and the SAME
attention mask the library builds. ``tests/train/test_finetune.py`` checks that bottom + top
equals ``model(...).last_hidden_state`` for BERT and both Wav2Vec2 variants.

What ``unfreeze_top: k`` trains, per architecture family
--------------------------------------------------------
text (BERT, RoBERTa, XLM-R, ELECTRA, MiniLM: ``model.embeddings`` + ``model.encoder.layer``):
    the top k of ``encoder.layer``. Frozen: the embeddings (and ELECTRA's
    ``embeddings_project``), the lower layers, and the ``pooler``: hf-text pools
    ``last_hidden_state`` (masked mean or first token), never the pooler's tanh output,
    so the pooler is not on the path to the features and would receive no gradient.
    These models have no layer norm after the last layer (post-LN layers).
speech (Wav2Vec2 incl. XLS-R, HuBERT, data2vec-audio: ``feature_extractor`` +
``feature_projection`` + ``encoder.layers``):
    the top k of ``encoder.layers``, plus ``encoder.layer_norm`` for the stable-layer-norm
    variants (``do_stable_layer_norm``: XLS-R, large-lv60, HuBERT-large), where that norm
    follows the last layer and produces ``last_hidden_state``. Frozen always: the
    convolutional feature encoder, the feature projection, the positional convolution,
    the lower layers (and, in the post-LN variant, ``encoder.layer_norm``, which sits
    BEFORE the layers). Not applied during fine-tuning: SpecAugment time masking and
    LayerDrop (both act on the frozen part or skip layers; the recipe trains the top
    layers with dropout only).
    WavLM (relative position bias passed between layers) is not supported.
``k = 0`` trains the head alone. The head (ModalityInput + MLP) is always trained.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mer.features.device import autocast, to_device
from mer.features.hf_common import masked_sum


def _tensor(out: Any) -> Tensor:
    """A layer's output: a tensor (transformers 5) or the first element of a tuple (older)."""
    return out[0] if isinstance(out, (tuple, list)) else out


class TextSplit:
    """BERT-family encoder: embeddings + lower layers (frozen) | top k layers (trainable)."""

    family = "text"

    def __init__(self, model: nn.Module, k: int, pooling: str = "mean"):
        self.model = model
        layers = model.encoder.layer
        if k > len(layers):
            raise ValueError(f"unfreeze_top={k} but {type(model).__name__} has {len(layers)} layers")
        self.k = k
        self.lower = list(layers[: len(layers) - k])
        self.upper = list(layers[len(layers) - k:])
        self.pooling = pooling

    def trainable_modules(self) -> dict[str, nn.Module]:
        n = len(self.lower)
        return {f"encoder.layer.{n + i}": m for i, m in enumerate(self.upper)}

    def collate(self, texts: list[str], tokenizer: Any, max_length: int, device: torch.device) -> dict[str, Tensor]:
        """Tokenise as hf-text does: pad to the longest, truncate to ``max_length``."""
        enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {k: to_device(enc[k], device) for k in tokenizer.model_input_names if k in enc}

    def bottom(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Any]:
        from transformers.masking_utils import create_bidirectional_mask

        model = self.model
        h = model.embeddings(input_ids=inputs["input_ids"], token_type_ids=inputs.get("token_type_ids"))
        if hasattr(model, "embeddings_project"):  # ELECTRA with embedding_size != hidden_size
            h = model.embeddings_project(h)
        mask = create_bidirectional_mask(config=model.config, inputs_embeds=h, attention_mask=inputs["attention_mask"])
        for layer in self.lower:
            h = _tensor(layer(h, mask))
        return h, mask

    def top(self, h: Tensor, mask: Any) -> Tensor:
        for layer in self.upper:
            h = _tensor(layer(h, mask))
        return h

    def pool(self, h: Tensor, inputs: dict[str, Tensor]) -> Tensor:
        """hf-text's pooling: masked mean over real tokens, or the first token."""
        mask = inputs["attention_mask"]
        if self.pooling == "cls":
            return h[:, 0].float()
        return masked_sum(h, mask) / mask.sum(dim=1, keepdim=True).float()


@dataclass
class SpeechGroup:
    """One forward call over equal-or-padded windows: (G, T) samples and their owners."""

    values: Tensor
    #: (G, T) 1 = real sample, or None when the model reads no attention mask
    mask: Tensor | None
    #: (G,) valid output frames per window
    frames: Tensor
    #: (G,) index of the clip (row of the batch) each window belongs to
    owner: Tensor


class SpeechSplit:
    """Wav2Vec2-family encoder: conv features + projection + lower layers (frozen) | top k (+ final norm)."""

    family = "speech"

    def __init__(self, model: nn.Module, k: int):
        self.model = model
        layers = model.encoder.layers
        if k > len(layers):
            raise ValueError(f"unfreeze_top={k} but {type(model).__name__} has {len(layers)} layers")
        params = inspect.signature(type(layers[0]).forward).parameters
        if "position_bias" in params:
            raise ValueError(f"{type(model).__name__}: layers pass a relative position bias (WavLM); fine-tuning "
                             "supports Wav2Vec2, HuBERT and data2vec-audio")
        self.k = k
        self.stable = bool(getattr(model.config, "do_stable_layer_norm", False))
        self.lower = list(layers[: len(layers) - k])
        self.upper = list(layers[len(layers) - k:])

    def trainable_modules(self) -> dict[str, nn.Module]:
        n = len(self.lower)
        mods = {f"encoder.layers.{n + i}": m for i, m in enumerate(self.upper)}
        if self.stable and self.k > 0:
            mods["encoder.layer_norm"] = self.model.encoder.layer_norm
        return mods

    def bottom(self, group: SpeechGroup) -> tuple[Tensor, Any]:
        from transformers.masking_utils import create_bidirectional_mask

        model, enc = self.model, self.model.encoder
        feats = model.feature_extractor(group.values).transpose(1, 2)
        frame_mask = None
        if group.mask is not None:
            frame_mask = model._get_feature_vector_attention_mask(feats.shape[1], group.mask, add_adapter=False)
        h = _tensor(model.feature_projection(feats))
        if frame_mask is not None:
            h = h.masked_fill(~frame_mask.bool().unsqueeze(-1), 0.0)  # padded frames output 0, as the encoder does
        mask = create_bidirectional_mask(config=model.config, inputs_embeds=h, attention_mask=frame_mask)
        h = h + enc.pos_conv_embed(h).to(h.device)
        if not self.stable:
            h = enc.layer_norm(h)
        h = enc.dropout(h)
        for layer in self.lower:
            h = _tensor(layer(h, attention_mask=mask))
        if self.stable and self.k == 0:
            h = enc.layer_norm(h)
        return h, mask

    def top(self, h: Tensor, mask: Any) -> Tensor:
        for layer in self.upper:
            h = _tensor(layer(h, attention_mask=mask))
        if self.stable and self.k > 0:
            h = self.model.encoder.layer_norm(h)
        return h

    def pool_sums(self, h: Tensor, group: SpeechGroup) -> Tensor:
        """(G, D) float32 sums over each window's valid frames (hf-audio's pooling, before / frames)."""
        if int(group.frames.max()) > h.shape[1]:
            raise RuntimeError(f"model returned {h.shape[1]} frames, expected {int(group.frames.max())}")
        frame_mask = torch.arange(h.shape[1], device=h.device)[None, :] < group.frames[:, None]
        return masked_sum(h, frame_mask)


def make_split(model: nn.Module, k: int, pooling: str = "mean") -> TextSplit | SpeechSplit:
    """The split for ``model``'s architecture family (see the module docstring)."""
    encoder = getattr(model, "encoder", None)
    if hasattr(model, "embeddings") and hasattr(encoder, "layer"):
        return TextSplit(model, k, pooling)
    if hasattr(model, "feature_extractor") and hasattr(model, "feature_projection") and hasattr(encoder, "layers") \
            and hasattr(encoder, "pos_conv_embed"):
        return SpeechSplit(model, k)
    raise ValueError(f"cannot fine-tune {type(model).__name__}: supported are BERT-family text encoders "
                     "(embeddings + encoder.layer) and Wav2Vec2-family speech encoders "
                     "(feature_extractor + feature_projection + encoder.layers)")


class FinetuneModel(nn.Module):
    """encoder (split) → pooled (B, D) → standardise → unimodal head → logits.

    ``mean``/``std`` are the standardisation statistics (buffers, fitted on the training
    split's pooled vectors before fine-tuning, or the warm-start run's); a sample without
    the modality enters the head as zeros plus the head's learned missing embedding, as in
    ``mer train unimodal``.
    """

    def __init__(self, encoder: nn.Module, split: TextSplit | SpeechSplit, head: nn.Module, modality: str,
                 dim: int, autocast_mode: str = "none"):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.split = split
        self.modality = modality
        self.autocast_mode = autocast_mode
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        encoder.requires_grad_(False)
        for module in split.trainable_modules().values():
            module.requires_grad_(True)
        self.train(False)

    # --- modes and parameter groups -------------------------------------------------
    def train(self, mode: bool = True) -> "FinetuneModel":
        """Head and top layers follow ``mode``; the frozen bottom always runs in eval mode."""
        super().train(mode)
        self.encoder.eval()
        for module in self.split.trainable_modules().values():
            module.train(mode)
        return self

    def encoder_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.encoder.named_parameters() if p.requires_grad]

    def trainable_state(self) -> dict[str, Tensor]:
        """What fine-tuning changes: trainable encoder params, the head and the statistics (copies, CPU)."""
        state = {f"encoder.{n}": p.detach().cpu().clone() for n, p in self.encoder_parameters()}
        state.update({f"head.{k}": v.detach().cpu().clone() for k, v in self.head.state_dict().items()})
        state["mean"] = self.mean.detach().cpu().clone()
        state["std"] = self.std.detach().cpu().clone()
        return state

    def load_trainable_state(self, state: dict[str, Tensor]) -> None:
        enc = dict(self.encoder.named_parameters())
        head = {}
        for key, value in state.items():
            if key.startswith("encoder."):
                name = key[len("encoder."):]
                if name not in enc:
                    raise KeyError(f"checkpoint parameter {name!r} is not in the encoder")
                with torch.no_grad():
                    enc[name].copy_(value)
            elif key.startswith("head."):
                head[key[len("head."):]] = value
        self.head.load_state_dict(head)
        with torch.no_grad():
            self.mean.copy_(state["mean"])
            self.std.copy_(state["std"])

    # --- forward ----------------------------------------------------------------------
    def encode_text(self, inputs: dict[str, Tensor]) -> Tensor:
        split = self.split
        device = inputs["input_ids"].device
        with autocast(device, self.autocast_mode):
            with torch.no_grad():
                h, mask = split.bottom(inputs)
            h = split.top(h, mask)
            return split.pool(h, inputs)

    def encode_speech(self, groups: list[SpeechGroup], n_clips: int) -> Tensor:
        """Pooled (n_clips, D): each clip's frame sum over its windows / its frame count."""
        split = self.split
        device = groups[0].values.device
        dim = self.mean.shape[0]
        sums = torch.zeros(n_clips, dim, device=device)
        frames = torch.zeros(n_clips, device=device)
        with autocast(device, self.autocast_mode):
            for group in groups:
                with torch.no_grad():
                    h, mask = split.bottom(group)
                h = split.top(h, mask)
                sums = sums.index_add(0, group.owner, split.pool_sums(h, group))
                frames = frames.index_add(0, group.owner, group.frames.to(frames.dtype))
        return sums / frames.clamp(min=1).unsqueeze(1)

    def classify(self, pooled: Tensor, present: Tensor) -> Tensor:
        """Logits (B, C) from pooled vectors (B, D) (rows where ``present`` is False are ignored)."""
        x = (pooled.float() - self.mean) / self.std
        x = torch.where(present.unsqueeze(1), x, torch.zeros_like(x))
        return self.head({self.modality: x}, {self.modality: present})["logits"].float()


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Recompute the trainable layers in backward (non-reentrant: the bottom's outputs need no grad)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise ValueError(f"{type(model).__name__} does not support gradient checkpointing")
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
