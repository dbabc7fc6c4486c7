"""An encoder whose "features" are numbers written in a manifest column.

The column holds ``;``-separated floats: D of them for a vector output, L·D for an
all-layer output (``layers: L``), T·D for a sequence output (``ragged: true``). A row whose
column is empty has no such modality. Goes through the real extraction path (shards,
spec.json, failures), so the trainer tests read caches exactly as users' caches are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mer.features.base import Encoder, OutputSpec, SampleError
from mer.features.batching import BatchPolicy


@dataclass
class Options:
    encoder: str = "kit.synth"
    column: str = "feat"
    dim: int = 4
    #: 0: one (D,) vector per sample; L: an all-layer (L, D) output
    layers: int = 0
    ragged: bool = False
    #: recorded as the family (LMR's default branch follows it)
    family: str = "synth"


class SynthEncoder(Encoder):
    family = "synth"
    code_version = "1"
    columns = ("feat",)

    def __init__(self, options: Options):
        super().__init__(options)
        self.columns = (options.column,)
        self.family = options.family

    def outputs(self) -> list[OutputSpec]:
        o = self.options
        if o.ragged:
            return [OutputSpec("frames", (o.dim,), ragged=True)]
        shape = (o.layers, o.dim) if o.layers else (o.dim,)
        return [OutputSpec("pooled", shape, attrs={"layers": list(range(o.layers))} if o.layers else {})]

    def batch_policy(self) -> BatchPolicy:
        return BatchPolicy(max_items=64)

    def prepare(self, row: dict):
        text = row[self.columns[0]]
        try:
            values = np.array([float(v) for v in text.split(";")], dtype=np.float64)
        except ValueError as exc:
            raise SampleError("read", f"column {self.columns[0]!r}: {exc}") from None
        o = self.options
        if o.ragged:
            if len(values) % o.dim:
                raise SampleError("read", f"{len(values)} values are not T×{o.dim}")
            return values.reshape(-1, o.dim)
        shape = (o.layers, o.dim) if o.layers else (o.dim,)
        if values.size != int(np.prod(shape)):
            raise SampleError("read", f"{values.size} values, expected {shape}")
        return values.reshape(shape)

    def encode(self, batch):
        name = "frames" if self.options.ragged else "pooled"
        return [{name: x} for x in batch]


ENCODER = SynthEncoder
