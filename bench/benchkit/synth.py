"""``encoder: benchkit.synth``: class-dependent feature vectors generated from the manifest
row, written through the real extraction path (shards, spec.json, the cache dtype).

Why not ``kit.synth`` (tests/kit) (features spelled out in a manifest column): at 10,000
samples × ~1,800 dimensions that column is a ~150 MB CSV whose parsing would dominate the
preparation. Here a vector is ``spread · centre[label] + noise``, the centres drawn from
``seed`` and the noise from ``(seed, id)``, so the same options and ids always give the
same cache, and the classes are separable enough for a head to learn something.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from mer.features.base import Encoder, OutputSpec, SampleError
from mer.features.batching import BatchPolicy


@dataclass
class Options:
    encoder: str = "benchkit.synth"
    #: the manifest column whose value picks the class centre (a sample is present when non-empty)
    column: str = "label"
    dim: int = 16
    #: class names, in centre order
    classes: list[str] = field(default_factory=lambda: ["angry", "disgust", "fear", "happy", "neutral", "sad",
                                                        "surprise"])
    spread: float = 1.0
    noise: float = 1.0
    seed: int = 0
    #: recorded as the cache's family (LMR's default branch follows it: hf-text, hf-audio, e4)
    family: str = "synth"


def _id_seed(sample_id: str) -> int:
    return int.from_bytes(hashlib.sha256(sample_id.encode("utf-8")).digest()[:8], "little")


class SynthVectors(Encoder):
    family = "synth"
    code_version = "1"
    columns = ("label",)

    def __init__(self, options: Options):
        super().__init__(options)
        self.columns = (options.column,)
        self.family = options.family
        rng = np.random.default_rng([options.seed, options.dim])
        self._centres = rng.normal(size=(len(options.classes), options.dim)) * options.spread
        self._index = {c: k for k, c in enumerate(options.classes)}

    def outputs(self) -> list[OutputSpec]:
        return [OutputSpec("pooled", (self.options.dim,))]

    def batch_policy(self) -> BatchPolicy:
        return BatchPolicy(max_items=256)

    def prepare(self, row: dict):
        label = str(row[self.columns[0]])
        if label not in self._index:
            raise SampleError("read", f"column {self.columns[0]!r}: {label!r} is not one of {list(self._index)}")
        rng = np.random.default_rng([self.options.seed, _id_seed(str(row["id"]))])
        return (self._centres[self._index[label]] + rng.normal(size=self.options.dim) * self.options.noise
                ).astype(np.float32)

    def encode(self, batch):
        return [{"pooled": x} for x in batch]


ENCODER = SynthVectors
