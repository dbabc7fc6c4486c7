"""LMR-CL: supervised fusion with intra- and inter-modal contrastive losses (methods.md §1).

Per modality m (in ``train.modalities`` order; any 2 or 3 modalities, M = their number)::

    x_m ──ModalityInput──▶ branch_m ──┬─▶ aux head Linear(b_m → C)                 (aux logits)
                                      └─▶ projection Linear(b_m → H) → ReLU → LayerNorm = u_m
    p_m = private_m(u_m)           one Attn block per modality
    s_m = shared(u_m)              ONE Attn block shared by every modality
    h_m = stack(p_m, s_m)          (B, 2, H)
    c   = concat_m h_m             (B, 2, M·H)
    g_m = sigmoid(W2_m ReLU(W1_m c))   W1_m: M·H → 16, W2_m: 16 → H;  (B, 2, H), the same shape
                                   as h_m: row 0 gates the private vector, row 1 the shared one
    fused = flatten(concat_m g_m ⊙ h_m)          (B, 2·M·H)
    logits = Linear(2MH → MH) → ReLU → Linear(MH → C)

Attn block: (B,H) → (B,1,H) → Conv1d(1→T,k=1) → GELU → Conv1d(T→T,k=1) → GELU (T = 32 tokens of
width H) → 3 post-norm Transformer encoder layers (4 heads, FFN H→1024→H, dropout 0.1) →
flatten (T·H) → Linear(T·H → H) → sigmoid.

Branches (``train.lmr.branch``, default by encoder family, :func:`default_branch`):
``identity`` (text, as the original: the BERT vector goes straight to the head and projection),
``bio`` (D→150→200→304, the original's 19-statistic biosignal MLP) and ``audio`` (D→512→1024,
the original's Wav2Vec2 MLP). Input sizes follow the cache.

Loss: ``CE_w(fused) + λ_diff·Diff + λ_cmd·CMD + λ_iemc·IEMC + λ_iamc·IAMC + λ_aux·Σ_m CE_w(aux_m)``;
a λ of 0 skips computing its term. Samples missing modality m are kept (the learned missing
embedding stands in for x_m) but are left out of every term that needs m: aux_m's CE, the Diff
and CMD moments of m, and the contrastive pairs involving m (presence masks to the losses).

Scale note (measured on synthetic separable features): with a small hidden size
(H = 16 collapsed, H = 32 learned poorly) the Diff term, whose row norms are detached as in MISA, shrinks the
centred private/shared vectors faster than the CE can spread them; they collapse to constants
and the fused CE stays at log C while the aux heads still learn. At H = 64 the same data is
learned perfectly; the paper's H is 256. Keep H ≥ 64, or set ``lambda_diff: 0`` for tiny heads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mer.train.losses.anchors import AnchorCycler
from mer.train.losses.cmd import cmd_loss
from mer.train.losses.diff import diff_total
from mer.train.losses.iamc import iamc_loss
from mer.train.losses.iemc import iemc_loss
from mer.train.models.common import Batch, FusionHead, InputSpec, ModalityInput, mlp

#: branch MLP hidden/output sizes after the input size D (methods.md §1)
BRANCHES: dict[str, list[int]] = {"identity": [], "bio": [150, 200, 304], "audio": [512, 1024]}

#: encoder family → default branch; families not listed get ``audio`` (a generic 2-layer MLP)
FAMILY_BRANCH: dict[str, str] = {"hf-text": "identity", "e4": "bio"}

#: hidden size of the gating MLPs (W1_m: M·H → 16)
GATE_HIDDEN = 16


def default_branch(family: str, modality: str = "") -> str:
    """The branch a modality gets when ``train.lmr.branch`` does not name it.

    By encoder family: hf-text → identity; e4 (biosignal statistics) → bio; anything else
    (hf-audio, egemaps, logmel, landmarks, unknown families) → audio. Without a family
    (e.g. a hand-made cache) the modality name decides: ``text`` → identity, ``bio``/
    ``physio``/``e4`` → bio, otherwise audio.
    """
    if family:
        return FAMILY_BRANCH.get(family, "audio")
    name = modality.lower()
    if name.startswith("text"):
        return "identity"
    if name.startswith(("bio", "physio", "e4")):
        return "bio"
    return "audio"


class PointwiseConv1d(nn.Conv1d):
    """``Conv1d(c_in → c_out, kernel_size=1)`` computed as one matrix product.

    The same parameters, initialisation and outputs as the convolution (a k=1 convolution mixes
    channels independently at every position; tests/train/test_train_models.py checks equality), but
    on CPU the convolution kernels took 12 % of a demo-sized LMR-CL epoch for these tiny
    (B, T, H) inputs, where a matmul costs microseconds.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, L) → (B, C_out, L)
        return torch.matmul(self.weight.squeeze(-1), x) + self.bias.unsqueeze(-1)


class AttnBlock(nn.Module):
    """The private/shared encoder of LMR-CL: 1 vector → T tokens → Transformer → 1 vector in (0, 1)."""

    def __init__(self, hidden: int, tokens: int = 32, layers: int = 3, heads: int = 4, ffn: int = 1024,
                 dropout: float = 0.1, final_norm: bool = False):
        super().__init__()
        self.expand = nn.Sequential(PointwiseConv1d(1, tokens), nn.GELU(), PointwiseConv1d(tokens, tokens), nn.GELU())
        layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=ffn, dropout=dropout,
                                           batch_first=True, norm_first=False)
        # final_norm: the original code's LayerNorm after the encoder stack (methods.md has none)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(hidden) if final_norm else None,
                                             enable_nested_tensor=False)
        self.out = nn.Linear(tokens * hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.expand(x.unsqueeze(1))  # (B, T, H)
        tokens = self.encoder(tokens)
        return torch.sigmoid(self.out(tokens.flatten(1)))


class GatedFusion(nn.Module):
    """g_m = sigmoid(W2_m ReLU(W1_m c)); fused = flatten(concat_m g_m ⊙ h_m)."""

    def __init__(self, modalities: list[str], hidden: int):
        super().__init__()
        m = len(modalities)
        self.modalities = list(modalities)
        self.gates = nn.ModuleDict({
            name: nn.Sequential(nn.Linear(m * hidden, GATE_HIDDEN), nn.ReLU(), nn.Linear(GATE_HIDDEN, hidden), nn.Sigmoid())
            for name in modalities
        })

    def forward(self, h: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        c = torch.cat([h[m] for m in self.modalities], dim=-1)  # (B, 2, M·H)
        gates = {m: self.gates[m](c) for m in self.modalities}  # each (B, 2, H)
        gated = torch.cat([gates[m] * h[m] for m in self.modalities], dim=-1)  # (B, 2, M·H)
        return gated.flatten(1), gates


class LMR(FusionHead):
    name = "lmr"
    min_modalities = 2
    max_modalities = 3

    def __init__(self, inputs: list[dict], num_classes: int, hidden: int = 256, layer: str = "last",
                 branches: dict[str, str] | None = None, tokens: int = 32, layers: int = 3, heads: int = 4,
                 ffn: int = 1024, dropout: float = 0.1, lambda_diff: float = 0.1, lambda_cmd: float = 0.1,
                 lambda_iamc: float = 0.1, lambda_iemc: float = 0.1, lambda_aux: float = 1.0,
                 anchors: str = "all", attn_final_norm: bool = False):
        super().__init__()
        specs = [InputSpec(**s) for s in inputs]
        self.modalities = [s.name for s in specs]
        self.check_modalities(self.modalities)
        if anchors not in ("all", "single"):
            raise ValueError(f"lmr: anchors must be 'all' or 'single', got {anchors!r}")
        branches = dict(branches or {})
        self.branch_kind = {s.name: branches.get(s.name) or default_branch(s.family, s.name) for s in specs}
        for m, kind in self.branch_kind.items():
            if kind not in BRANCHES:
                raise ValueError(f"lmr: branch {kind!r} for modality {m!r} is not one of {sorted(BRANCHES)}")
        self.lambdas = {"diff": lambda_diff, "cmd": lambda_cmd, "iamc": lambda_iamc, "iemc": lambda_iemc,
                        "aux": lambda_aux}
        self.anchors = anchors
        self.num_classes = num_classes

        self.inputs = nn.ModuleDict({s.name: ModalityInput(s.dim, s.layers, s.layer or layer) for s in specs})
        self.branches = nn.ModuleDict()
        self.aux = nn.ModuleDict()
        self.projections = nn.ModuleDict()
        self.private = nn.ModuleDict()
        for s in specs:
            sizes = [s.dim] + BRANCHES[self.branch_kind[s.name]]
            self.branches[s.name] = mlp(sizes) if len(sizes) > 1 else nn.Identity()
            self.aux[s.name] = nn.Linear(sizes[-1], num_classes)
            self.projections[s.name] = nn.Sequential(nn.Linear(sizes[-1], hidden), nn.ReLU(), nn.LayerNorm(hidden))
            self.private[s.name] = AttnBlock(hidden, tokens, layers, heads, ffn, dropout, attn_final_norm)
        self.shared = AttnBlock(hidden, tokens, layers, heads, ffn, dropout, attn_final_norm)
        self.fusion = GatedFusion(self.modalities, hidden)
        m = len(specs)
        self.classifier = nn.Sequential(nn.Linear(2 * m * hidden, m * hidden), nn.ReLU(), nn.Linear(m * hidden, num_classes))
        self._cyclers: dict[str, AnchorCycler] = {}

    @classmethod
    def modality_error(cls, n: int) -> str:
        if n < 2:
            return "lmr needs at least two modalities; use model: unimodal"
        return f"lmr takes 2 or 3 modalities (the paper's text, audio, biosignal), got {n}"

    @classmethod
    def from_config(cls, train, inputs: list[InputSpec], num_classes: int) -> dict[str, Any]:
        cls.check_modalities([s.name for s in inputs])
        c = train.lmr
        return {
            "inputs": [s.as_dict() for s in inputs], "num_classes": num_classes, "hidden": c.hidden,
            "layer": str(train.layer), "branches": dict(c.branch), "tokens": c.tokens, "layers": c.layers,
            "heads": c.heads, "ffn": c.ffn, "dropout": c.dropout, "lambda_diff": c.lambda_diff,
            "lambda_cmd": c.lambda_cmd, "lambda_iamc": c.lambda_iamc, "lambda_iemc": c.lambda_iemc,
            "lambda_aux": c.lambda_aux, "anchors": c.anchors, "attn_final_norm": c.attn_final_norm,
        }

    def prepare_training(self, num_groups: int, generator: torch.Generator) -> None:
        """One anchor cycler per contrastive loss, each cycling 0 → C−1 across batches."""
        self._cyclers = {k: AnchorCycler(max(num_groups, 1), generator) for k in ("iamc", "iemc")}

    def forward(self, x: dict[str, Tensor], present: dict[str, Tensor]) -> dict[str, Any]:
        aux, private, projected, h = {}, {}, {}, {}
        for m in self.modalities:
            b = self.branches[m](self.inputs[m](x[m], present[m]))
            aux[m] = self.aux[m](b)
            projected[m] = self.projections[m](b)
            private[m] = self.private[m](projected[m])
        # the ONE shared encoder sees all modalities: one call over the stacked batch (M·B rows)
        # does the same arithmetic as M calls, in larger, faster matrix products
        shared = dict(zip(self.modalities, self.shared(torch.cat(list(projected.values()))).chunk(len(self.modalities))))
        for m in self.modalities:
            h[m] = torch.stack([private[m], shared[m]], dim=1)  # (B, 2, H)
        fused, gates = self.fusion(h)
        return {"logits": self.classifier(fused), "aux": aux, "private": private, "shared": shared,
                "gates": gates, "fused": fused}

    def losses(self, out: dict, batch: Batch, criterion) -> tuple[Tensor, dict[str, Tensor]]:
        lam = self.lambdas
        mask = batch.present
        parts: dict[str, Tensor] = {"ce": criterion(out["logits"], batch.y)}
        if lam["diff"]:
            parts["diff"] = diff_total(out["private"], out["shared"], mask=mask)
        if lam["cmd"]:
            parts["cmd"] = cmd_loss(out["shared"], mask=mask)
        if lam["iemc"]:
            parts["iemc"] = iemc_loss(out["shared"], batch.group_y, anchors=self.anchors,
                                      anchor_state=self._cycler("iemc"), mask=mask)
        if lam["iamc"]:
            reps = {f"{kind}_{m}": out[name][m] for kind, name in (("p", "private"), ("s", "shared"))
                    for m in self.modalities}
            rep_mask = {f"{kind}_{m}": mask[m] for kind in ("p", "s") for m in self.modalities}
            parts["iamc"] = iamc_loss(reps, batch.group_y, anchors=self.anchors,
                                      anchor_state=self._cycler("iamc"), mask=rep_mask)
        if lam["aux"]:
            parts["aux"] = sum(criterion(out["aux"][m], batch.y, mask=mask[m]) for m in self.modalities)
        total = parts["ce"] + sum(lam[k] * v for k, v in parts.items() if k != "ce")
        return total, parts

    def _cycler(self, loss: str) -> AnchorCycler | None:
        if self.anchors != "single":
            return None
        if loss not in self._cyclers:
            raise RuntimeError("lmr: anchors='single' needs prepare_training(num_groups, generator) first")
        return self._cyclers[loss]
