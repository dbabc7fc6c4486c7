"""Temporal convolutional network over log-mel frames (MPUC-MER audio encoder, methods.md §2).

The Conv-TasNet separator stack (Luo & Mesgarani, 2019) used as an utterance encoder:

    x (B, T, 128) ─ gLN ─ Conv1d 1×1 (128→64) ─ Dropout ─┬─ R=2 repeats × X=5 blocks, dilation 1,2,4,8,16 ─ masked mean over T ─ PReLU ─ Linear(64→512)
                                                         │
    block(h):  h + Dropout( Conv1×1(128→64)( gLN( PReLU( DWConv_k3,d( gLN( PReLU( Conv1×1(64→128)(h) ))))))) )

The input gLN, the dropout (0.1) after the bottleneck and on every block's residual branch,
and the PReLU before the output Linear are the original code's (its Conv-TasNet TCN); the
paper does not mention them, so mer follows the code (``input_norm``, ``dropout``, ``out_prelu``
switch them off).

Norm: Conv-TasNet's global layer norm (gLN = GroupNorm(1, 128): statistics over all channels
and time steps of one sample) — but masked, so that its statistics span only the clip's
valid steps (:class:`~mer.train.models.masking.MaskedGlobalLayerNorm`). Plain GroupNorm over
a padded batch would change a clip's statistics with the padding. Depthwise convolutions
use symmetric ("same", non-causal) zero padding, and their input is re-masked first so a
padded batch feeds them the same zeros a lone clip gets. The receptive field is
1 + 2·2·(1+2+4+8+16) = 125 frames.
"""

from __future__ import annotations

from torch import Tensor, nn

from .masking import MaskedGlobalLayerNorm, length_mask, masked_mean


class TemporalBlock(nn.Module):
    """One dilated residual block: 1×1 up, PReLU, gLN, depthwise k-conv, PReLU, gLN, 1×1 down."""

    def __init__(self, channels: int, hidden: int, kernel: int, dilation: int):
        super().__init__()
        self.up = nn.Conv1d(channels, hidden, 1)
        self.act1 = nn.PReLU()
        self.norm1 = MaskedGlobalLayerNorm(hidden)
        self.depthwise = nn.Conv1d(hidden, hidden, kernel, dilation=dilation,
                                   padding=dilation * (kernel - 1) // 2, groups=hidden)
        self.act2 = nn.PReLU()
        self.norm2 = MaskedGlobalLayerNorm(hidden)
        self.down = nn.Conv1d(hidden, channels, 1)

    def residual(self, h: Tensor, mask: Tensor) -> Tensor:
        """The block's residual branch (added to ``h`` by the caller, after dropout)."""
        y = self.norm1(self.act1(self.up(h)), mask) * mask  # re-mask: the depthwise conv reads neighbours
        y = self.norm2(self.act2(self.depthwise(y)), mask)
        return self.down(y)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        return (h + self.residual(h, mask)) * mask


class TCNEncoder(nn.Module):
    """(B, T, in_dim) frames + (B,) lengths → (B, out_dim) utterance embedding."""

    def __init__(
        self,
        in_dim: int = 128,
        channels: int = 64,
        hidden: int = 128,
        out_dim: int = 512,
        repeats: int = 2,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 16),
        kernel: int = 3,
        dropout: float = 0.1,
        input_norm: bool = True,
        out_prelu: bool = True,
    ):
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"TCNEncoder: kernel must be odd for symmetric padding, got {kernel}")
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.input_norm = MaskedGlobalLayerNorm(in_dim) if input_norm else None
        self.bottleneck = nn.Conv1d(in_dim, channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TemporalBlock(channels, hidden, kernel, d) for _ in range(repeats) for d in dilations
        )
        self.out_act = nn.PReLU() if out_prelu else nn.Identity()
        self.out = nn.Linear(channels, out_dim)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"TCNEncoder: expected (B, T, {self.in_dim}), got {tuple(x.shape)}")
        mask = length_mask(lengths, x.shape[1]).unsqueeze(1).to(x.dtype)  # (B, 1, T)
        h = x.transpose(1, 2)
        if self.input_norm is not None:
            h = self.input_norm(h, mask) * mask
        h = self.dropout(self.bottleneck(h)) * mask
        for block in self.blocks:
            h = (h + self.dropout(block.residual(h, mask))) * mask
        return self.out(self.out_act(masked_mean(h, mask, dim=2)))
