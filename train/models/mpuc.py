"""MPUC-MER: modality-pairwise unsupervised contrastive learning, fusion at evaluation only.

methods.md §2. Each modality has its own trained encoder (→ ``dim`` = 512) and a projection
head (512 → 1024 → ReLU → 512) used only by the contrastive loss. The encoders are
pre-trained with the pairwise loss on two views per clip (:mod:`mer.train.pretrain`); then
they are frozen and the fusion is a probe on the concatenated encoder outputs:

    features(sample) = [ e_1 | e_2 | … | e_M | present_1 … present_M ]      (M·512 + M)
    logits = probe(features)            linear (logistic regression) or the original 2-layer MLP

An absent modality contributes zeros and its presence flag 0, so the probe can tell
"missing" from "average". The probe's standardisation and weights are torch tensors in the
state_dict (a fitted scikit-learn logistic regression is exactly an affine map), so a run
reloads from ``model.pt`` like every other head and ``mer evaluate`` needs no special case.

Encoder per modality (:func:`choose_encoder`; ``mpuc.encoders`` overrides it):

=========================================== ===========================================
cache output (as the data layer hands it)    encoder
=========================================== ===========================================
ragged frames, D = 128                       ``tcn`` (log-mel, :mod:`.tcn`)
ragged frames, D = 102 or 136                ``stgcn`` ((51, 2) or (68, 2) landmarks,
(or family ``landmarks``)                    flattened by the data layer; :mod:`.stgcn`)
ragged frames, any other D                   ``transformer`` (:mod:`.seq_transformer`)
fixed (D,) or all-layer (L, D)               ``mlp`` (:mod:`.mlp_encoder`, the view is V = 1)
=========================================== ===========================================

An ``mlp`` override on a ragged input mean-pools the valid frames first (a baseline).
Evaluation embeds each sequence WHOLE (no crop): every encoder ends in a masked mean over
time, so a whole clip is the natural summary; it is deterministic and sees all the data.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mer.train.models.common import FusionHead, InputSpec, ModalityInput, mlp
from mer.train.models.masking import length_mask, masked_mean
from mer.train.models.mlp_encoder import MLPEncoder
from mer.train.models.seq_transformer import SeqTransformerEncoder
from mer.train.models.stgcn import JAW_POINTS, NUM_NODES, STGCNEncoder, minmax_per_clip, minmax_ragged
from mer.train.models.tcn import TCNEncoder
from mer.train.sequences import Padded

#: flattened frame widths of the landmarks encoder's (51, 2) output and of raw (68, 2) points
LANDMARK_DIMS = {NUM_NODES * 2: NUM_NODES, 68 * 2: 68}
#: a landmark frame whose coordinates are all within this of 0 is an invalid (failed) frame:
#: the landmarks encoder stores failed frames as zeros, while a valid frame, min-max
#: normalised per clip into [0, 1], always spans part of the unit square
INVALID_FRAME_TOL = 1e-3
#: rows per encoder call when embedding whole clips (sorted by length: little padding)
EMBED_CHUNK = 64


def choose_encoder(dim: int, ragged: bool, family: str = "", override: str = "", name: str = "") -> str:
    """The encoder kind for one modality (see the module docstring for the rule)."""
    where = f"modality {name!r}" if name else "modality"
    if override:
        if not ragged and override != "mlp":
            raise ValueError(f"{where}: mpuc.encoders = {override!r} needs a sequence (ragged) cache output, "
                             "but this input is one vector per sample; use mlp, or pick a sequence output "
                             "with train.inputs")
        if override == "stgcn" and dim not in LANDMARK_DIMS:
            raise ValueError(f"{where}: stgcn needs (51, 2) or (68, 2) landmark frames (D = 102 or 136), got D = {dim}")
        return override
    if not ragged:
        return "mlp"
    if dim == 128:
        return "tcn"
    if dim in LANDMARK_DIMS or family == "landmarks":
        if dim not in LANDMARK_DIMS:
            raise ValueError(f"{where}: landmark frames must be (51, 2) or (68, 2) (D = 102 or 136), got D = {dim}")
        return "stgcn"
    return "transformer"


class ProjectionHead(nn.Module):
    """dim → 2·dim → ReLU → dim; only the contrastive loss sees its output (as SimCLR)."""

    def __init__(self, dim: int = 512):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


class Branch(nn.Module):
    """One modality: its encoder (→ dim) and its projection head.

    ``in_mean`` / ``in_std`` hold the data layer's standardisation statistics; only the
    ST-GCN branch uses them, to undo the per-coordinate standardisation so that the graph
    sees face geometry (and min-max normalises each clip itself).
    """

    def __init__(self, kind: str, dim_in: int, ragged: bool, layers: int = 0, layer: str = "last",
                 dim: int = 512, dropout: float = 0.1, tcn_channels: int = 64, tcn_hidden: int = 128,
                 stgcn_channels: tuple[int, ...] = (64, 128), transformer_dim: int = 128, transformer_layers: int = 2,
                 stgcn_adjacency: str = "paper"):
        super().__init__()
        self.kind, self.ragged, self.dim_in = kind, ragged, dim_in
        self.register_buffer("in_mean", torch.zeros(dim_in))
        self.register_buffer("in_std", torch.ones(dim_in))
        self.select = None
        if kind == "tcn":
            self.encoder = TCNEncoder(dim_in, tcn_channels, tcn_hidden, dim, dropout=dropout)
        elif kind == "stgcn":
            self.points = LANDMARK_DIMS[dim_in]
            # normalize=False: the branch min-max normalises each WHOLE clip itself (clip_frames /
            # landmark_input), so that a view is a slice of the clip's normalised frames
            self.encoder = STGCNEncoder(hidden=tuple(stgcn_channels), out_dim=dim, dropout=0.0, normalize=False,
                                        adjacency=stgcn_adjacency)
        elif kind == "transformer":
            heads = 4 if transformer_dim % 4 == 0 else 1
            self.encoder = SeqTransformerEncoder(dim_in, transformer_dim, heads, transformer_layers,
                                                 2 * transformer_dim, dropout, dim)
        elif kind == "mlp":
            if layers:
                self.select = ModalityInput(dim_in, layers, layer)
            self.encoder = MLPEncoder(dim_in, dim, dim, dropout)
        else:
            raise ValueError(f"unknown MPUC encoder {kind!r}")
        self.head = ProjectionHead(dim)

    def set_input_stats(self, mean: Tensor, std: Tensor) -> None:
        self.in_mean.copy_(torch.as_tensor(mean, dtype=torch.float32).reshape(-1))
        self.in_std.copy_(torch.as_tensor(std, dtype=torch.float32).reshape(-1))

    def landmark_points(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """Standardised landmark frames (..., D) → raw (..., 51, 2) points and their validity (...)."""
        raw = values * self.in_std + self.in_mean  # undo the data layer's standardisation
        pts = raw.reshape(raw.shape[:-1] + (self.points, 2))
        if self.points == 68:
            pts = pts[..., JAW_POINTS:, :]
        return pts, pts.abs().amax(dim=(-2, -1)) > INVALID_FRAME_TOL

    def clip_frames(self, values: Tensor, offsets: Tensor) -> Tensor:
        """The flat frames (F, D) of every clip as views are cut from them: prepared per WHOLE clip.

        Landmarks (``stgcn``): raw points min-max normalised per clip over its valid frames
        (:func:`~mer.train.models.stgcn.minmax_ragged`, the same numbers as evaluation's
        :func:`~mer.train.models.stgcn.minmax_per_clip` on the whole clip), flattened to
        (F, 51·2), failed frames zero. Why here and not per crop: a crop's own min-max would
        stretch a small movement to the full range, so training and evaluation would see
        differently scaled faces (the original normalised each clip once). Other kinds: as is.
        """
        if self.kind != "stgcn":
            return values
        pts, valid = self.landmark_points(values)
        return minmax_ragged(pts, offsets, valid).flatten(1)

    def encode(self, x: Tensor | Padded, present: Tensor | None = None, prepared: bool = False) -> Tensor:
        """(B, dim) embeddings of a batch: a :class:`Padded` (B, T, D) for ragged inputs, else (B, D) / (B, L, D).

        ``prepared``: ragged values come from :meth:`clip_frames` (views), not whole standardised clips.
        """
        if not self.ragged:
            if self.select is not None:
                x = self.select(x, present if present is not None else torch.ones(len(x), dtype=torch.bool, device=x.device))
            return self.encoder(x)
        values, lengths = x
        if self.kind == "tcn":
            return self.encoder(values, lengths)
        if self.kind == "transformer":
            return self.encoder(values, lengths)
        if self.kind == "mlp":
            return self.encoder(masked_mean(values, length_mask(lengths, values.shape[1]).unsqueeze(-1), dim=1))
        pts, valid = self.landmark_input(values, lengths, prepared)
        return self.encoder(pts, lengths, valid)

    def landmark_input(self, values: Tensor, lengths: Tensor, prepared: bool = False) -> tuple[Tensor, Tensor]:
        """What the ST-GCN sees: (B, T, 51, 2) per-clip normalised points and (B, T) validity.

        Whole clips (evaluation) are normalised here, over the clip; prepared views already
        hold their clip's normalised points (:meth:`clip_frames`).
        """
        if prepared:
            pts = values.reshape(values.shape[0], values.shape[1], NUM_NODES, 2)
            valid = pts.abs().amax(dim=(2, 3)) > 0  # clip_frames zeroes failed frames exactly
        else:
            pts, valid = self.landmark_points(values)
        valid = valid & length_mask(lengths, values.shape[1])
        return (pts if prepared else minmax_per_clip(pts, valid)), valid

    def encode_views(self, x: Tensor | Padded, present: Tensor | None = None, prepared: bool = False) -> Tensor:
        """(B, V, dim) for crops (B, V, T, D) + lengths (B, V), or (B, 1, dim) for a vector."""
        if not self.ragged:
            return self.encode(x, present).unsqueeze(1)
        values, lengths = x
        b, v = lengths.shape
        h = self.encode(Padded(values.flatten(0, 1), lengths.flatten()), prepared=prepared)
        return h.view(b, v, -1)

    def embed_whole(self, x: Tensor | Padded, present: Tensor | None = None, chunk: int = EMBED_CHUNK) -> Tensor:
        """(B, dim) embeddings of whole clips, encoded in length-sorted chunks trimmed to their longest clip."""
        if not self.ragged:
            return self.encode(x, present)
        values, lengths = x
        order = torch.sort(lengths, stable=True).indices
        out = values.new_zeros((len(lengths), self.head.net[-1].out_features))
        for s in range(0, len(order), chunk):
            rows = order[s:s + chunk]
            width = max(int(lengths[rows].max()), 1)
            out[rows] = self.encode(Padded(values[rows, :width], lengths[rows]))
        return out


class LinearProbe(nn.Module):
    """Standardise, then one affine map: a fitted logistic regression (or one per target)."""

    def __init__(self, in_dim: int, num_classes: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.linear = nn.Linear(in_dim, num_classes)

    def forward(self, f: Tensor) -> Tensor:
        return self.linear((f - self.mean) / self.std)


class MLPProbe(nn.Module):
    """The original's 2-layer MLP on the standardised features: Linear → ReLU → Dropout → Linear."""

    def __init__(self, in_dim: int, num_classes: int, hidden: int = 256, dropout: float = 0.1):
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.net = mlp([in_dim, hidden, num_classes], dropout)

    def forward(self, f: Tensor) -> Tensor:
        return self.net((f - self.mean) / self.std)


class MPUC(FusionHead):
    """Per-modality encoders + projection heads (pre-trained contrastively) and a probe."""

    name = "mpuc"
    min_modalities = 2  # a pairwise loss needs a pair

    def __init__(self, inputs: list[dict], num_classes: int, encoders: dict[str, str] | None = None,
                 multilabel: bool = False, dim: int = 512, probe: str = "linear", probe_hidden: int = 256,
                 probe_dropout: float = 0.1, dropout: float = 0.1, layer: str = "last", tcn_channels: int = 64,
                 tcn_hidden: int = 128, stgcn_channels: list[int] | None = None, transformer_dim: int = 128,
                 transformer_layers: int = 2, stgcn_adjacency: str = "paper"):
        super().__init__()
        self.modalities = [s["name"] for s in inputs]
        self.check_modalities(self.modalities)
        encoders = dict(encoders or {})
        self.kinds = {s["name"]: choose_encoder(s["dim"], bool(s.get("ragged", False)), s.get("family", ""),
                                                encoders.get(s["name"], ""), s["name"]) for s in inputs}
        self.ragged = {s["name"]: bool(s.get("ragged", False)) for s in inputs}
        self.dim, self.num_classes, self.multilabel = dim, num_classes, multilabel
        self.branches = nn.ModuleDict({
            s["name"]: Branch(self.kinds[s["name"]], s["dim"], self.ragged[s["name"]], s.get("layers", 0), layer, dim,
                              dropout, tcn_channels, tcn_hidden, tuple(stgcn_channels or (64, 128)),
                              transformer_dim, transformer_layers, stgcn_adjacency)
            for s in inputs
        })
        feat = len(self.modalities) * (dim + 1)
        if probe == "linear":
            self.probe = LinearProbe(feat, num_classes)
        elif probe == "mlp":
            self.probe = MLPProbe(feat, num_classes, probe_hidden, probe_dropout)
        else:
            raise ValueError(f"unknown MPUC probe {probe!r} (linear | mlp)")
        self.probe_kind = probe

    @classmethod
    def from_config(cls, train, inputs: list[InputSpec], num_classes: int) -> dict[str, Any]:
        mp = train.mpuc
        specs = []
        for s in inputs:
            d = s.as_dict()
            d["ragged"] = bool(getattr(s, "ragged", False))
            specs.append(d)
        unknown = sorted(set(mp.encoders) - {s["name"] for s in specs})
        if unknown:
            raise ValueError(f"mpuc.encoders names modality(ies) {unknown} that are not trained "
                             f"(modalities: {[s['name'] for s in specs]})")
        kinds = {s["name"]: choose_encoder(s["dim"], s["ragged"], s["family"], mp.encoders.get(s["name"], ""), s["name"])
                 for s in specs}
        return {"inputs": specs, "num_classes": num_classes, "encoders": kinds, "multilabel": train.multilabel,
                "dim": mp.dim, "probe": mp.probe, "probe_hidden": mp.probe_hidden, "probe_dropout": train.dropout,
                "dropout": mp.dropout, "layer": train.layer, "tcn_channels": mp.tcn_channels,
                "tcn_hidden": mp.tcn_hidden, "stgcn_channels": list(mp.stgcn_channels),
                "transformer_dim": mp.transformer_dim, "transformer_layers": mp.transformer_layers,
                "stgcn_adjacency": mp.stgcn_adjacency}

    # --- pre-training side ------------------------------------------------------------
    def encoder_parameters(self) -> list[nn.Parameter]:
        """Encoders and projection heads: what contrastive pre-training updates."""
        return list(self.branches.parameters())

    def project_views(self, views: dict[str, Tensor | Padded], present: dict[str, Tensor],
                      prepared: bool = False) -> dict[str, Tensor]:
        """{m: (B, V, dim)} projections z of each modality's views (the loss normalises them).

        ``prepared``: the sequence views were cut from :meth:`Branch.clip_frames`.
        """
        out = {}
        for m, x in views.items():
            br = self.branches[m]
            h = br.encode_views(x, present[m], prepared)
            out[m] = br.head(h)
        return out

    # --- evaluation side ----------------------------------------------------------------
    def features(self, x: dict[str, Tensor | Padded], present: dict[str, Tensor]) -> Tensor:
        """(B, M·dim + M): frozen encoder outputs of whole clips (zeros where absent) + presence flags."""
        parts, flags = [], []
        for m in self.modalities:
            h = self.branches[m].embed_whole(x[m], present[m])
            pres = present[m].to(torch.bool)
            parts.append(torch.where(pres.unsqueeze(1), h, torch.zeros((), dtype=h.dtype, device=h.device)))
            flags.append(pres.to(h.dtype))
        return torch.cat(parts + [torch.stack(flags, dim=1)], dim=1)

    def forward(self, x: dict[str, Tensor | Padded], present: dict[str, Tensor]) -> dict[str, Any]:
        f = self.features(x, present)
        return {"logits": self.probe(f), "features": f}
