"""MLP encoder for cached pooled vectors (BERT, Wav2Vec2, eGeMAPS, biosignal statistics).

MPUC-MER (methods.md §2) trains its encoders; when only a frozen pooled vector exists for a
modality, that vector is the single view and this two-layer MLP maps it to the common
512-d encoder space: Linear(D→512) → ReLU → Dropout → Linear(512→512).
"""

from __future__ import annotations

from torch import Tensor, nn


class MLPEncoder(nn.Module):
    """(B, in_dim) → (B, out_dim)."""

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 512, dropout: float = 0.1):
        super().__init__()
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[-1] != self.in_dim:
            raise ValueError(f"MLPEncoder: expected (B, {self.in_dim}), got {tuple(x.shape)}")
        return self.net(x)
