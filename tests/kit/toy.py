"""A small deterministic encoder for the cache/extraction tests.

Reads the WAV named by the row's ``column`` with soundfile and returns:

* ``stats``  (4,) float: mean, std, min, max of the signal;
* ``frames`` ragged (T, 2) float: per frame of ``frame`` samples, RMS and mean;
* ``length`` (1,) int32: number of samples (an exactly stored, non-float output).

Knobs for the tests: ``delay`` (seconds slept per sample in encode), ``hold``/``hold_after``
(after encoding ``hold_after`` samples in this process, block while the file ``hold`` exists:
lets a test kill or race a run at an exact point), ``trace`` (a file that gets one line per
encoded sample), ``load_log`` (a file that gets one line per ``load``), ``fail_encode_ids``
(encode raises RuntimeError for any batch holding one of them), ``bug_prepare_ids`` (prepare
raises KeyError: an unexpected exception, not bad input), ``memory_error_ids`` (prepare raises
MemoryError, which must stop the run).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from mer.features.base import Encoder, OutputSpec, SampleError
from mer.features.batching import BatchPolicy


@dataclass
class Options:
    encoder: str = "kit.toy"
    column: str = "audio"
    frame: int = 400
    batch: int = 3
    delay: float = 0.0
    hold: str = ""
    hold_after: int = 0
    trace: str = ""
    load_log: str = ""
    fail_encode_ids: list[str] = field(default_factory=list)
    bug_prepare_ids: list[str] = field(default_factory=list)
    memory_error_ids: list[str] = field(default_factory=list)


class ToyEncoder(Encoder):
    family = "toy"
    code_version = "1"
    columns = ("audio",)
    speed_only_options = ("batch", "delay", "hold", "hold_after", "trace", "load_log", "memory_error_ids")
    #: loads and encoded samples in this process
    loads = 0
    encoded = 0

    def __init__(self, options: Options):
        super().__init__(options)
        self.columns = (options.column,)

    def load(self, device) -> None:
        super().load(device)
        type(self).loads += 1
        if self.options.load_log:
            with open(self.options.load_log, "a") as fh:
                fh.write(f"{os.getpid()}\n")

    def outputs(self) -> list[OutputSpec]:
        return [
            OutputSpec("stats", (4,), attrs={"names": ["mean", "std", "min", "max"]}),
            OutputSpec("frames", (2,), ragged=True, attrs={"dims": ["time", "feature"], "hop": self.options.frame}),
            OutputSpec("length", (1,), dtype="int32"),
        ]

    def batch_policy(self) -> BatchPolicy:
        return BatchPolicy(max_items=self.options.batch)

    def cost(self, row: dict) -> float:
        path = row[self.columns[0]]
        return float(os.path.getsize(path)) if os.path.isfile(path) else 0.0

    def prepare(self, row: dict):
        path = row[self.columns[0]]
        if row["id"] in self.options.bug_prepare_ids:
            raise KeyError("simulated bug")
        if row["id"] in self.options.memory_error_ids:
            raise MemoryError("simulated out of memory")
        if not os.path.isfile(path):
            raise SampleError("read", f"{path}: audio file not found")
        try:
            data, _ = sf.read(path, dtype="float64", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise SampleError("decode", f"{path}: {exc}") from None
        if len(data) == 0:
            raise SampleError("decode", f"{path}: no samples")
        return row["id"], data.mean(axis=1)

    def encode(self, batch):
        if any(sample_id in self.options.fail_encode_ids for sample_id, _ in batch):
            raise RuntimeError("simulated model failure")
        out = []
        for sample_id, x in batch:
            if self.options.delay:
                time.sleep(self.options.delay)
            if self.options.hold and type(self).encoded >= self.options.hold_after:
                deadline = time.monotonic() + 120  # never hang a test run forever
                while os.path.exists(self.options.hold) and time.monotonic() < deadline:
                    time.sleep(0.01)
            type(self).encoded += 1
            out.append(toy_features(x, self.options.frame))
            if self.options.trace:
                with open(self.options.trace, "a") as fh:
                    fh.write(f"{os.getpid()} {sample_id}\n")
        return out


def toy_features(x: np.ndarray, frame: int) -> dict[str, np.ndarray]:
    """The reference computation (tests compare the cache against it)."""
    n = len(x)
    t = -(-n // frame)
    padded = np.zeros(t * frame)
    padded[:n] = x
    frames = padded.reshape(t, frame)
    return {
        "stats": np.array([x.mean(), x.std(), x.min(), x.max()]),
        "frames": np.stack([np.sqrt((frames ** 2).mean(axis=1)), frames.mean(axis=1)], axis=1),
        "length": np.array([n], dtype=np.int32),
    }


ENCODER = ToyEncoder
