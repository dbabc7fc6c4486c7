"""Losses of the fusion heads, one per file (methods.md §1 LMR-CL, §2 MPUC-MER).

LMR-CL: :func:`diff_total` (soft orthogonality), :func:`cmd_loss` (moment matching),
:func:`iamc_loss` / :func:`iemc_loss` (intra-/inter-modal cosine contrastive, with the
original single-anchor rule via :class:`AnchorCycler`). MPUC-MER: :func:`pairwise_infonce`
(unsupervised, default) and :func:`pairwise_supcon` (supervised). Fine-tuning (``mer finetune``):
:func:`soft_macro_f1_loss`.
"""

from .anchors import AnchorCycler
from .cmd import cmd, cmd_loss
from .diff import diff_loss, diff_total
from .iamc import iamc_loss
from .iemc import iemc_loss
from .infonce import pairwise_infonce
from .soft_f1 import soft_f1_per_class, soft_macro_f1_loss
from .supcon import pairwise_supcon

__all__ = [
    "AnchorCycler",
    "cmd",
    "cmd_loss",
    "diff_loss",
    "diff_total",
    "iamc_loss",
    "iemc_loss",
    "pairwise_infonce",
    "pairwise_supcon",
    "soft_f1_per_class",
    "soft_macro_f1_loss",
]
