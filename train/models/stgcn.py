"""Spatio-temporal graph conv net over 2-D facial landmarks (MPUC-MER face encoder, methods.md §2).

Nodes: the 68 OpenFace/iBUG points minus the 17 jaw points (0..16), i.e. points 17..67
re-indexed 0..50 (node = point − 17). The jaw is dropped because its tracking is the least
reliable and it carries head pose more than expression.

Edges (:data:`FACE_EDGES_68`, in 68-point numbering; undirected):

* within parts — right brow chain 17-18-19-20-21; left brow chain 22-23-24-25-26; nose
  bridge chain 27-28-29-30; lower nose chain 31-32-33-34-35 closed through the nose tip
  (30-31, 30-35, as dlib draws it); right eye loop 36-…-41-36; left eye loop 42-…-47-42;
  outer lip loop 48-…-59-48; inner lip loop 60-…-67-60;
* between parts — brow to eye (17-36, 19-37, 21-39; 22-42, 24-44, 26-45), brow to brow
  (21-22), brows and inner eye corners to the nose root (21-27, 22-27, 39-27, 42-27),
  nose to upper lip (31-50, 33-51, 35-52), outer to inner lip at the corners and centres
  (48-60, 54-64, 51-62, 57-66).

Adjacency: Â = D^-1/2 (A + I) D^-1/2 with D the degree matrix of A + I (Kipf & Welling), a
fixed buffer (``adjacency="original"``: the original code's A + 2I). The 67 edges above are
mer's; the original's adjacency file (65 edges) is not published in readable form.

Block type: Yan et al.'s ST-GCN block (spatial graph conv, then a temporal conv), not the
original code's Yu et al. STGCN (gated temporal conv, Θ graph conv, gated temporal conv,
BatchNorm over nodes, then a Linear over the flattened T·64 features): that last Linear
fixes the input length, so it could not embed whole clips of any length at evaluation. Each ST-GCN block (Yan et al., 2018) is a spatial graph conv (1×1 channel
mix, then aggregation over Â), BN, ReLU, a temporal conv (k = 9 over frames), BN, a residual
(identity or 1×1 conv + BN), ReLU. The embedding is the masked mean over valid frames and
all nodes, then Linear(→512).

Masking: padded frames AND invalid frames (OpenFace ``success = 0``, or any NaN coordinate)
are zeroed before every temporal conv and excluded from BatchNorm statistics and the mean
(:class:`~mer.train.models.masking.MaskedBatchNorm`). Each clip is min-max normalised per
axis over its valid frames and nodes (methods.md: "each clip min-max normalised"), ONCE per
whole clip: MPUC-MER's branch normalises the clip (:func:`minmax_per_clip` on whole clips,
:func:`minmax_ragged` on the flat frames views are cut from) and builds this encoder with
``normalize=False``; ``normalize=True`` normalises whatever it is given (a lone whole clip).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from .masking import MaskedBatchNorm, length_mask, masked_mean

JAW_POINTS = 17  # points 0..16 are dropped
NUM_NODES = 68 - JAW_POINTS


def _chain(points: range | list[int], closed: bool = False) -> list[tuple[int, int]]:
    pts = list(points)
    edges = list(zip(pts[:-1], pts[1:]))
    if closed:
        edges.append((pts[-1], pts[0]))
    return edges


#: undirected edges of the face mesh, in OpenFace 68-point numbering (documented above)
FACE_EDGES_68: list[tuple[int, int]] = (
    _chain(range(17, 22))  # right brow
    + _chain(range(22, 27))  # left brow
    + _chain(range(27, 31))  # nose bridge
    + _chain(range(31, 36)) + [(30, 31), (30, 35)]  # lower nose, closed through the tip
    + _chain(range(36, 42), closed=True)  # right eye
    + _chain(range(42, 48), closed=True)  # left eye
    + _chain(range(48, 60), closed=True)  # outer lip
    + _chain(range(60, 68), closed=True)  # inner lip
    + [(17, 36), (19, 37), (21, 39), (22, 42), (24, 44), (26, 45)]  # brow to eye
    + [(21, 22), (21, 27), (22, 27), (39, 27), (42, 27)]  # brows, inner eye corners to nose root
    + [(31, 50), (33, 51), (35, 52)]  # nose to upper lip
    + [(48, 60), (54, 64), (51, 62), (57, 66)]  # outer to inner lip
)


def face_edges() -> list[tuple[int, int]]:
    """The face-mesh edges re-indexed to the 51 nodes (node = point − 17)."""
    return [(a - JAW_POINTS, b - JAW_POINTS) for a, b in FACE_EDGES_68]


def adjacency(num_nodes: int, edges: list[tuple[int, int]]) -> np.ndarray:
    """Symmetric 0/1 adjacency (no self loops) of an undirected edge list."""
    a = np.zeros((num_nodes, num_nodes), dtype=np.float64)
    for i, j in edges:
        if i == j or not (0 <= i < num_nodes and 0 <= j < num_nodes):
            raise ValueError(f"adjacency: bad edge ({i}, {j}) for {num_nodes} nodes")
        a[i, j] = a[j, i] = 1.0
    return a


def normalized_adjacency(a: np.ndarray, self_loops: float = 1.0) -> np.ndarray:
    """D^-1/2 (A + s·I) D^-1/2, D = diag of the row sums of A + s·I (s = ``self_loops``)."""
    a_hat = a + self_loops * np.eye(a.shape[0])
    d_inv_sqrt = 1.0 / np.sqrt(a_hat.sum(axis=1))
    return a_hat * d_inv_sqrt[:, None] * d_inv_sqrt[None, :]


#: self-loop weight per adjacency style: the paper's A + I, and the original code's A + 2I
#: (its adjacency file already held the identity, and get_normalized_adj added I again)
ADJACENCY_SELF_LOOPS = {"paper": 1.0, "original": 2.0}


def face_adjacency(style: str = "paper") -> np.ndarray:
    """The normalised 51×51 face-mesh adjacency the encoder uses (``style``: paper | original)."""
    if style not in ADJACENCY_SELF_LOOPS:
        raise ValueError(f"face_adjacency: style must be one of {list(ADJACENCY_SELF_LOOPS)}, got {style!r}")
    return normalized_adjacency(adjacency(NUM_NODES, face_edges()), ADJACENCY_SELF_LOOPS[style])


def minmax_per_clip(x: Tensor, mask: Tensor) -> Tensor:
    """Min-max each clip to [0, 1] per coordinate axis over its valid frames and all nodes.

    x (B, T, V, C), mask (B, T) bool. A degenerate axis (max = min) is shifted, not scaled.
    """
    m = mask[:, :, None, None]
    big = torch.finfo(x.dtype).max
    lo = torch.where(m, x, big).amin(dim=(1, 2), keepdim=True)
    hi = torch.where(m, x, -big).amax(dim=(1, 2), keepdim=True)
    lo = torch.where(lo > hi, torch.zeros_like(lo), lo)  # clip with no valid frame
    span = (hi - lo).clamp(min=0)
    span = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(m, (x - lo) / span, torch.zeros_like(x))


def minmax_ragged(x: Tensor, offsets: Tensor, valid: Tensor) -> Tensor:
    """:func:`minmax_per_clip` over ragged clips: x (F, V, C) flat frames, offsets (N+1,), valid (F,) bool.

    Segment reductions (``scatter_reduce``) give every clip its min and max per axis over its
    valid frames and all nodes in one pass, with no Python loop over clips.
    """
    n = len(offsets) - 1
    row = torch.repeat_interleave(torch.arange(n, device=x.device), offsets[1:] - offsets[:-1])
    big = torch.finfo(x.dtype).max
    m = valid[:, None]
    frame_lo = torch.where(m, x.amin(dim=1), big)  # (F, C)
    frame_hi = torch.where(m, x.amax(dim=1), -big)
    index = row[:, None].expand_as(frame_lo)
    lo = torch.full((n, x.shape[-1]), big, dtype=x.dtype, device=x.device).scatter_reduce(0, index, frame_lo, "amin")
    hi = torch.full((n, x.shape[-1]), -big, dtype=x.dtype, device=x.device).scatter_reduce(0, index, frame_hi, "amax")
    lo = torch.where(lo > hi, torch.zeros_like(lo), lo)  # clip with no valid frame
    span = (hi - lo).clamp(min=0)
    span = torch.where(span > 0, span, torch.ones_like(span))
    out = (x - lo[row][:, None, :]) / span[row][:, None, :]
    return torch.where(valid[:, None, None], out, torch.zeros_like(x))


class STGCNBlock(nn.Module):
    """Spatial graph conv → BN → ReLU → temporal conv (k frames) → BN → + residual → ReLU."""

    def __init__(self, in_channels: int, out_channels: int, temporal_kernel: int = 9, dropout: float = 0.0):
        super().__init__()
        if temporal_kernel % 2 != 1:
            raise ValueError(f"STGCNBlock: temporal_kernel must be odd, got {temporal_kernel}")
        self.gcn = nn.Conv2d(in_channels, out_channels, 1)
        self.bn1 = MaskedBatchNorm(out_channels)
        self.tcn = nn.Conv2d(out_channels, out_channels, (temporal_kernel, 1), padding=((temporal_kernel - 1) // 2, 0))
        self.bn2 = MaskedBatchNorm(out_channels)
        self.dropout = nn.Dropout(dropout)
        if in_channels == out_channels:
            self.res_conv, self.res_bn = None, None
        else:
            self.res_conv = nn.Conv2d(in_channels, out_channels, 1)
            self.res_bn = MaskedBatchNorm(out_channels)

    def forward(self, x: Tensor, a: Tensor, mask: Tensor) -> Tensor:
        """x (B, C, T, V), a (V, V) normalised adjacency, mask (B, 1, T, 1) float."""
        y = torch.einsum("bctv,vw->bctw", self.gcn(x), a)
        y = torch.relu(self.bn1(y, mask)) * mask  # re-mask: the temporal conv reads neighbours
        y = self.dropout(self.bn2(self.tcn(y), mask))
        res = x if self.res_conv is None else self.res_bn(self.res_conv(x), mask)
        return torch.relu(y + res) * mask


class STGCNEncoder(nn.Module):
    """(B, T, 51, 2) landmarks + (B,) lengths [+ (B, T) frame validity] → (B, out_dim)."""

    def __init__(
        self,
        num_nodes: int = NUM_NODES,
        in_channels: int = 2,
        hidden: tuple[int, ...] = (64, 128),
        out_dim: int = 512,
        temporal_kernel: int = 9,
        dropout: float = 0.0,
        normalize: bool = True,
        adjacency: str = "paper",
    ):
        super().__init__()
        if num_nodes != NUM_NODES:
            raise ValueError(f"STGCNEncoder: the face graph has {NUM_NODES} nodes, got num_nodes={num_nodes}")
        self.in_channels = in_channels
        self.out_dim = out_dim
        self.normalize = normalize
        self.register_buffer("adjacency", torch.as_tensor(face_adjacency(adjacency), dtype=torch.float32))
        widths = (in_channels, *hidden)
        self.blocks = nn.ModuleList(
            STGCNBlock(c_in, c_out, temporal_kernel, dropout) for c_in, c_out in zip(widths[:-1], widths[1:])
        )
        self.out = nn.Linear(widths[-1], out_dim)

    def forward(self, x: Tensor, lengths: Tensor, valid: Tensor | None = None) -> Tensor:
        if x.dim() != 4 or x.shape[2:] != (NUM_NODES, self.in_channels):
            raise ValueError(f"STGCNEncoder: expected (B, T, {NUM_NODES}, {self.in_channels}), got {tuple(x.shape)}")
        frames = length_mask(lengths, x.shape[1])
        frames = frames & ~torch.isnan(x).any(dim=(2, 3))
        if valid is not None:
            frames = frames & valid.to(torch.bool)
        x = torch.where(frames[:, :, None, None], x, torch.zeros_like(x))  # NaN-free before any arithmetic
        if self.normalize:
            x = minmax_per_clip(x, frames)
        mask = frames[:, None, :, None].to(x.dtype)  # (B, 1, T, 1)
        h = x.permute(0, 3, 1, 2)  # (B, C, T, V)
        a = self.adjacency.to(x.dtype)
        for block in self.blocks:
            h = block(h, a, mask)
        return self.out(masked_mean(h, mask, dim=(2, 3)))
