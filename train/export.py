"""``mer export RUN_DIR --format onnx``: a run's fusion head as one ONNX graph.

What the graph takes and gives:

* inputs, per modality m in the run's order: ``x_<m>`` float32 (batch, D) or (batch, L, D) for
  an all-layer cache: the pooled features AS THE CACHE STORES THEM (the encoder's output,
  not standardised), and ``present_<m>`` bool (batch,): False where the sample lacks m
  (its ``x_<m>`` row is then ignored, NaN included);
* output ``probabilities`` float32 (batch, C): softmax over the classes (sigmoid per class for
  a multi-label run); the batch axis is dynamic.

Why raw features with the standardisation baked in (rather than standardised inputs): the
training split's mean/std are part of the model; a consumer who had to apply them would need a
second file and could apply them wrongly. Baked in, the graph is ``(x − mean) / std``, zero where
absent, then the head, exactly as :func:`mer.train.data.apply_stats` and the model do in PyTorch.

The file's metadata (``metadata_props``) names the labels, each input's name and dims and what
it holds, the encoder key and cache output each modality was extracted with, the model and the
mer version. Heads with a fixed graph are exported: ``linear``, ``unimodal``, ``concat``, ``late``, ``lmr``,
and ``mpuc`` when every modality is a vector (its ``mlp`` encoders + the probe). An ``mpuc`` run
over frame sequences embeds whole clips of any length in length-sorted chunks: no fixed graph,
refused with the reason.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mer import __version__
from mer.train.errors import DataError
from mer.train.evaluate import build_model, load_checkpoint

#: ONNX opset of the export (onnxruntime ≥ 1.16 runs it)
OPSET = 17
FORMATS = ("onnx",)


class ExportError(DataError):
    """A run that cannot be exported as asked; the message says why."""


class StandardisedHead(nn.Module):
    """The head with its standardisation in front and its probabilities behind, flat arguments."""

    def __init__(self, model: nn.Module, modalities: list[str], stats: dict[str, dict[str, Tensor]], multilabel: bool):
        super().__init__()
        self.model = model
        self.modalities = list(modalities)
        self.multilabel = multilabel
        for m in self.modalities:
            self.register_buffer(f"mean_{m}", torch.as_tensor(stats[m]["mean"], dtype=torch.float32).clone())
            self.register_buffer(f"std_{m}", torch.as_tensor(stats[m]["std"], dtype=torch.float32).clone())

    def forward(self, *args: Tensor) -> Tensor:
        x, present = {}, {}
        for k, m in enumerate(self.modalities):
            raw, pres = args[2 * k], args[2 * k + 1]
            z = (raw - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}")
            mask = pres.reshape((-1,) + (1,) * (raw.dim() - 1))
            x[m] = torch.where(mask, z, torch.zeros_like(z))
            present[m] = pres
        logits = self.model(x, present)["logits"]
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=-1)


def input_specs(ckpt: dict) -> list[dict[str, Any]]:
    """One entry per graph input: name, modality, dims, dtype and what it holds."""
    specs = []
    for m in ckpt["modalities"]:
        dims = ["batch", *[int(d) for d in torch.as_tensor(ckpt["stats"][m]["mean"]).shape]]
        specs.append({"name": f"x_{m}", "modality": m, "dims": dims, "dtype": "float32",
                      "holds": f"pooled features as cached (not standardised): output {ckpt['outputs'][m]!r} of "
                               f"encoder {ckpt['cache_keys'][m]}"})
        specs.append({"name": f"present_{m}", "modality": m, "dims": ["batch"], "dtype": "bool",
                      "holds": f"True where the sample has {m}"})
    return specs


def check_exportable(ckpt: dict, where: str) -> None:
    if ckpt.get("kind") == "finetune":
        raise ExportError(f"{where}: a mer finetune run: its encoder is part of the model; only fusion heads over "
                          "cached features are exported")
    ragged = [s["name"] for s in ckpt["init_kwargs"].get("inputs", []) if s.get("ragged")]
    if ragged:
        raise ExportError(f"{where}: model {ckpt['model']} reads frame sequences of modality(ies) {ragged}: it "
                          "embeds whole clips of any length in length-sorted chunks, which is not a fixed graph. "
                          "Heads over pooled vectors are exported (unimodal, concat, late, lmr, mpuc over vectors)")


def export_onnx(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``out`` (default ``<run>/model.onnx``) and return its path."""
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx extra: pip install 'mer[onnx]'") from None
    run_dir = Path(run_dir)
    ckpt = load_checkpoint(run_dir)
    check_exportable(ckpt, str(run_dir / "model.pt"))
    model = build_model(ckpt, "cpu")
    head = StandardisedHead(model, list(ckpt["modalities"]), ckpt["stats"], bool(ckpt["multilabel"])).eval()
    specs = input_specs(ckpt)
    example = []
    for spec in specs:
        shape = [2] + spec["dims"][1:]
        example.append(torch.zeros(shape, dtype=torch.float32) if spec["dtype"] == "float32"
                       else torch.tensor([True, False]))
    names = [s["name"] for s in specs]
    out = Path(out) if out else run_dir / "model.onnx"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with warnings.catch_warnings():
        # the TorchScript-based exporter warns that it is legacy; it is the one that keeps the
        # batch axis dynamic through LMR-CL's chunk over the stacked modalities
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, torch.jit.TracerWarning))
        torch.onnx.export(head, tuple(example), str(tmp), input_names=names, output_names=["probabilities"],
                          dynamic_axes={n: {0: "batch"} for n in names + ["probabilities"]}, opset_version=OPSET,
                          dynamo=False)
    graph = onnx.load(str(tmp))
    meta = {
        "mer_version": __version__,
        "model": ckpt["model"],
        "labels": json.dumps(list(ckpt["classes"])),
        "multilabel": json.dumps(bool(ckpt["multilabel"])),
        "inputs": json.dumps(specs),
        "outputs": json.dumps([{"name": "probabilities", "dims": ["batch", len(ckpt["classes"])],
                                "holds": "sigmoid per class" if ckpt["multilabel"] else "softmax over the labels"}]),
        "encoder_keys": json.dumps(dict(ckpt["cache_keys"])),
        "cache_outputs": json.dumps(dict(ckpt["outputs"])),
        "families": json.dumps(dict(ckpt["families"])),
        "standardisation": "baked in: feed the cached features as they are",
    }
    del graph.metadata_props[:]
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    graph.doc_string = (f"mer {ckpt['model']} head over {'+'.join(ckpt['modalities'])}; labels "
                        f"{list(ckpt['classes'])}")
    onnx.checker.check_model(graph)
    onnx.save(graph, str(tmp))
    tmp.replace(out)
    return out


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of an exported file, JSON values decoded."""
    import onnx

    out: dict[str, Any] = {}
    for entry in onnx.load(str(path)).metadata_props:
        try:
            out[entry.key] = json.loads(entry.value)
        except ValueError:
            out[entry.key] = entry.value
    return out


__all__ = ["FORMATS", "OPSET", "ExportError", "StandardisedHead", "check_exportable", "export_onnx", "input_specs",
           "read_metadata"]
