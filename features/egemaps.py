"""``egemaps``: openSMILE functionals per clip: eGeMAPSv02 (88 values, the standard affective set) by
default, or another openSMILE set (``feature_set``: GeMAPS, ComParE_2016, emobase).

Needs the optional extra ``mer[opensmile]`` (the ``opensmile`` package, which bundles
the openSMILE binary and runs offline). A ``Smile`` object keeps native state and is
not documented as thread-safe, so every prefetch thread gets its own (``threading.local``):
the features are computed in :meth:`prepare`, in parallel, and are identical to a
single-threaded run (tested).

Audio is decoded and resampled to ``sample_rate`` (16 kHz by default) before openSMILE,
so corpora recorded at different rates give comparable features. A clip too short for
the functionals (openSMILE fills them with NaN) is a ``features`` SampleError.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mer.features.audio_io import load_audio, row_window
from mer.features.base import Encoder, OutputSpec, SampleError
from mer.features.batching import BatchPolicy


@dataclass
class Options:
    encoder: str = "egemaps"
    #: openSMILE feature set (functionals level): eGeMAPSv02 = 88 values, GeMAPSv01b = 62,
    #: ComParE_2016 = 6,373 (the INTERSPEECH ComParE brute-force set: many more spectral and
    #: MFCC functionals, which is what a linear model on acted speech profits from), emobase = 988
    feature_set: Literal["eGeMAPSv02", "eGeMAPSv01b", "GeMAPSv01b", "ComParE_2016", "emobase"] = "eGeMAPSv02"
    #: audio is resampled to this rate before openSMILE
    sample_rate: int = 16000
    #: manifest column with the audio path (start/end columns give the window)
    column: str = "audio"

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {self.sample_rate}")


def import_opensmile() -> Any:
    try:
        import opensmile
    except ImportError as exc:
        raise RuntimeError("the egemaps encoder needs the opensmile package: pip install 'mer[opensmile]' "
                           f"(import failed: {exc})") from None
    return opensmile


class EgemapsEncoder(Encoder):
    family = "egemaps"
    code_version = "1"
    columns = ("audio",)

    def __init__(self, options: Options):
        super().__init__(options)
        self.columns = (options.column,)
        self._local = threading.local()
        self._names: list[str] | None = None

    def _smile(self) -> Any:
        """This thread's Smile object."""
        smile = getattr(self._local, "smile", None)
        if smile is None:
            opensmile = import_opensmile()
            smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, self.options.feature_set),
                                    feature_level=opensmile.FeatureLevel.Functionals)
            self._local.smile = smile
        return smile

    def identity(self) -> dict[str, Any]:
        # the openSMILE release decides the numbers; it ships inside the Python package
        return {"opensmile": import_opensmile().__version__}

    @property
    def feature_names(self) -> list[str]:
        if self._names is None:
            self._names = list(self._smile().feature_names)
        return self._names

    # --- interface -------------------------------------------------------------------
    def load(self, device: Any) -> None:
        # NaN output is reported as a SampleError naming the file; openSMILE's own warning is noise
        warnings.filterwarnings("ignore", message="Segment too short", category=UserWarning, module="opensmile")
        self._smile()
        self.device = device

    def outputs(self) -> list[OutputSpec]:
        names = self.feature_names
        return [OutputSpec("pooled", (len(names),), attrs={"names": names, "feature_set": self.options.feature_set})]

    def batch_policy(self) -> BatchPolicy:
        return BatchPolicy(max_items=32)

    def compute(self, samples: np.ndarray, source: str = "<signal>") -> np.ndarray:
        """Functionals of mono samples at ``sample_rate``; non-finite output is a SampleError."""
        values = self._smile().process_signal(samples, self.options.sample_rate).to_numpy(dtype=np.float32)[0]
        bad = ~np.isfinite(values)
        if bad.any():
            names = [n for n, b in zip(self.feature_names, bad) if b]
            raise SampleError("features", f"{source}: openSMILE returned {int(bad.sum())} non-finite value(s) "
                              f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); "
                              f"the clip ({len(samples) / self.options.sample_rate:.3f} s) is probably too short")
        return values

    def prepare(self, row: dict) -> dict[str, np.ndarray]:
        path = row.get(self.options.column)
        start, end = row_window(row)
        samples = load_audio(path, self.options.sample_rate, start, end)
        return {"pooled": self.compute(samples, str(path))}

    def encode(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return list(batch)


ENCODER = EgemapsEncoder
