"""A small Transformer over token / word-vector sequences (MPUC-MER text encoder, methods.md §2).

    x (B, T, D) ─ Linear(D→d_model) + sinusoidal positions ─ 2 pre-norm encoder layers
                ─ masked mean over valid steps ─ Linear(d_model→512)

Sinusoidal positions (Vaswani et al., 2017) rather than learned ones: they need no maximum
length, so a whole clip at evaluation may be longer than anything seen in the training crops.
Padding is excluded from attention by the key padding mask and from the mean by the length
mask, so a sequence's embedding does not depend on how much it was padded. A sequence of
length 0 (a missing modality) attends to its first (zero) step instead of to nothing, which
would give NaN; its embedding is meaningless and the caller marks it absent.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .masking import length_mask, masked_mean


def sinusoidal_positions(length: int, dim: int, device: torch.device | None = None) -> Tensor:
    """(length, dim) table: PE[t, 2i] = sin(t / 10000^(2i/dim)), PE[t, 2i+1] = cos(...)."""
    pos = torch.arange(length, dtype=torch.float32, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return pe


class SeqTransformerEncoder(nn.Module):
    """(B, T, in_dim) + (B,) lengths → (B, out_dim)."""

    def __init__(
        self,
        in_dim: int,
        d_model: int = 128,
        heads: int = 4,
        layers: int = 2,
        ff: int = 256,
        dropout: float = 0.1,
        out_dim: int = 512,
    ):
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.d_model = d_model
        self.inp = nn.Linear(in_dim, d_model)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff, dropout, batch_first=True, norm_first=True)
        # enable_nested_tensor=False: the nested-tensor fast path is an inference-only speed-up
        # whose outputs differ slightly from the padded path; one path keeps results reproducible.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, out_dim)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"SeqTransformerEncoder: expected (B, T, {self.in_dim}), got {tuple(x.shape)}")
        valid = length_mask(lengths, x.shape[1])
        attend = valid.clone()
        attend[:, 0] = True  # an empty sequence attends to one zero step, not to nothing (NaN)
        x = torch.where(valid.unsqueeze(-1), x, torch.zeros_like(x))
        h = self.inp(x) + sinusoidal_positions(x.shape[1], self.d_model, x.device)
        h = self.encoder(h, src_key_padding_mask=~attend)
        h = self.norm(h)
        return self.out(masked_mean(h, valid.unsqueeze(-1), dim=1))
