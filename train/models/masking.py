"""Masked building blocks for encoders over padded, variable-length sequences.

Why a module of its own: every sequence encoder (TCN, ST-GCN, Transformer) pads a batch to
its longest clip, and the padding must not leak into anything a valid step sees. Three
places leak if left alone, and each has a masked replacement here:

* a mean over time divides by the padded length → :func:`masked_mean`;
* a normalisation whose statistics span time (gLN / GroupNorm(1, C), BatchNorm) mixes padded
  zeros into its mean and variance → :class:`MaskedGlobalLayerNorm`, :class:`MaskedBatchNorm`;
* a convolution with a kernel > 1 reads its neighbours, so padded steps must be exactly zero
  before it (the same zeros a lone clip gets from the convolution's own zero padding): callers
  multiply by the mask after every op that can make padding non-zero (biases, norms).

With these, a clip's embedding is the same alone and padded in a batch (tests/train/test_mpuc.py).
Masks are float tensors broadcastable against the activations (1 = valid step), so that the
helpers are one multiply each, with no boolean indexing (no host sync on GPU).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def length_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B, T) bool: ``mask[b, t] = t < lengths[b]``."""
    steps = torch.arange(max_len, device=lengths.device)
    return steps.unsqueeze(0) < lengths.to(steps.device).unsqueeze(1)


def masked_mean(x: Tensor, mask: Tensor, dim: int | tuple[int, ...]) -> Tensor:
    """Mean of ``x`` over ``dim`` counting only entries where ``mask`` (broadcastable) is 1.

    An all-masked row gives 0 (not NaN): an empty clip is a missing modality, which the
    caller marks with a presence flag.
    """
    mask = mask.to(x.dtype)
    total = (x * mask).sum(dim=dim)
    count = mask.expand_as(x).sum(dim=dim)
    return total / count.clamp(min=1.0)


class MaskedGlobalLayerNorm(nn.Module):
    """Conv-TasNet's global layer norm (gLN) over (C, valid T) of each sample.

    gLN(x) = γ ⊙ (x − μ) / sqrt(σ² + ε) + β with μ, σ² over all channels and the valid time
    steps of one sample: GroupNorm(1, C) without the padded steps. Per-sample statistics make
    it behave identically in training and evaluation and independent of the batch.
    Input (B, C, T), mask (B, 1, T) float.
    """

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, channels, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        mask = mask.to(x.dtype)
        count = (mask.sum(dim=(1, 2), keepdim=True) * x.shape[1]).clamp(min=1.0)
        mean = (x * mask).sum(dim=(1, 2), keepdim=True) / count
        var = (((x - mean) * mask) ** 2).sum(dim=(1, 2), keepdim=True) / count
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias


class MaskedBatchNorm(nn.Module):
    """BatchNorm over channel dim 1 whose batch statistics count only valid positions.

    Plain BatchNorm in training mode would average the padded zeros of a batch into its
    mean and variance (and into the running estimates used at evaluation). In evaluation
    mode this is exactly ``nn.BatchNorm`` with running statistics (per-position, so padding
    invariant). Works for any (B, C, ...) input with a mask broadcastable to it.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def _shape(self, x: Tensor) -> tuple[int, ...]:
        return (1, -1) + (1,) * (x.dim() - 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        shape = self._shape(x)
        if self.training:
            m = mask.to(x.dtype).expand_as(x)
            dims = [d for d in range(x.dim()) if d != 1]
            count = m.sum(dim=dims).clamp(min=1.0)
            mean = (x * m).sum(dim=dims) / count
            var = (((x - mean.view(shape)) * m) ** 2).sum(dim=dims) / count
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp(min=1.0)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return x_hat * self.weight.view(shape) + self.bias.view(shape)
