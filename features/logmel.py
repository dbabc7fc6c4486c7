"""``logmel``: log-mel spectrogram frames (the MPUC-MER audio input), ragged (T, n_mels).

Choices (fixed, part of the code version):

* power spectrogram of a periodic Hann window of ``win_ms`` zero-padded to the next
  power of two FFT size, frames centred on their sample (zero padding at the edges, as
  librosa >= 0.10 does, so any clip length works);
* mel filters from ``transformers.audio_utils.mel_filter_bank`` with the Slaney mel
  scale and Slaney area normalisation: librosa's defaults, which is what
  ``librosa.feature.melspectrogram`` (the usual MER front end) computes;
* ``log(mel + 1e-6)``.

Frame k is centred on sample ``round(k * hop)`` and a clip has one frame per centre
inside it: ``T = ceil(N / hop)``. With ``fps > 0`` the hop is ``sample_rate / fps``
(533.33 samples at 16 kHz and 30 fps), fractional, so frame k sits at exactly k/fps
seconds, aligned with video frame k and with no drift; ``torch.stft`` needs an integer
hop, so for a fractional hop the frames are gathered and transformed with one batched
``rfft`` (an integer hop uses ``torch.stft``; both equal ``torch.stft(center=True,
pad_mode="constant")`` on their frames, tested). The work is done in :meth:`prepare`, in the prefetch threads.
"""

from __future__ import annotations

import threading
from fractions import Fraction
from dataclasses import dataclass
from typing import Any

import numpy as np

from mer.features.audio_io import load_audio, row_window
from mer.features.base import Encoder, OutputSpec
from mer.features.batching import BatchPolicy

LOG_OFFSET = 1e-6


@dataclass
class Options:
    encoder: str = "logmel"
    sample_rate: int = 16000
    n_mels: int = 128
    #: frame hop in milliseconds (ignored when fps > 0)
    hop_ms: float = 10.0
    #: > 0: hop = sample_rate / fps, e.g. 30 to align frames with 30 fps video (MPUC-MER)
    fps: float = 0.0
    #: analysis window length in milliseconds
    win_ms: float = 25.0
    fmin: float = 0.0
    #: upper edge of the mel filters; None = sample_rate / 2
    fmax: float | None = None
    #: manifest column with the audio path (start/end columns give the window)
    column: str = "audio"

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.n_mels <= 0:
            raise ValueError("sample_rate and n_mels must be > 0")
        if self.fps < 0 or (self.fps == 0 and self.hop_ms <= 0):
            raise ValueError("hop_ms must be > 0 (or fps > 0)")
        if self.win_ms <= 0:
            raise ValueError(f"win_ms must be > 0, got {self.win_ms}")
        top = self.sample_rate / 2 if self.fmax is None else self.fmax
        if not 0 <= self.fmin < top <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin}, fmax={self.fmax}")


class LogMelEncoder(Encoder):
    family = "logmel"
    code_version = "1"
    columns = ("audio",)

    def __init__(self, options: Options):
        super().__init__(options)
        self.columns = (options.column,)
        sr = options.sample_rate
        # hop in samples as an exact fraction (533 1/3 at 16 kHz, 30 fps): frame counts and
        # centres are computed in integers, so 3 s at 30 fps is exactly 90 frames
        if options.fps > 0:
            self.hop_fraction = Fraction(sr) / Fraction(options.fps).limit_denominator(10_000)
        else:
            self.hop_fraction = Fraction(options.hop_ms).limit_denominator(10_000) * sr / 1000
        self.hop = float(self.hop_fraction)
        self.win_length = int(round(options.win_ms * sr / 1000.0))
        self.n_fft = 1 << max(0, (self.win_length - 1).bit_length())
        self._tables: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    def _ensure_tables(self) -> tuple[Any, Any]:
        """(window padded to n_fft, mel filter bank (n_freq, n_mels)), built once."""
        with self._lock:
            if self._tables is None:
                import torch
                from transformers.audio_utils import mel_filter_bank

                o = self.options
                bank = mel_filter_bank(num_frequency_bins=self.n_fft // 2 + 1, num_mel_filters=o.n_mels, min_frequency=o.fmin,
                                       max_frequency=o.fmax if o.fmax is not None else o.sample_rate / 2,
                                       sampling_rate=o.sample_rate, norm="slaney", mel_scale="slaney")
                window = torch.zeros(self.n_fft, dtype=torch.float32)
                left = (self.n_fft - self.win_length) // 2  # centred, as torch.stft pads a short window
                window[left:left + self.win_length] = torch.hann_window(self.win_length, periodic=True)
                self._tables = (window, torch.from_numpy(bank.astype(np.float32)))
        return self._tables

    def n_frames(self, n_samples: int) -> int:
        """Frames for a clip of ``n_samples``: one per centre ``k*hop < n_samples`` (exact fraction arithmetic)."""
        p, q = self.hop_fraction.numerator, self.hop_fraction.denominator
        return max(1, -(-n_samples * q // p))  # ceil(n / (p/q)) in integers

    def power_spectrogram(self, x: np.ndarray) -> Any:
        """(T, n_fft//2 + 1) float32 power spectrum of centred, zero-padded frames."""
        import torch

        window, _ = self._ensure_tables()
        half = self.n_fft // 2
        signal = torch.nn.functional.pad(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), (half, half))
        count = self.n_frames(len(x))
        p, q = self.hop_fraction.numerator, self.hop_fraction.denominator
        if q == 1:  # integer hop: torch.stft on the padded signal (same speed as unfold + rfft, measured)
            spectrum = torch.stft(signal, self.n_fft, hop_length=p, window=window, center=False, return_complex=True).T[:count]
        else:
            # centre k = round(k * p / q) = floor((2kp + q) / 2q), exactly
            starts = (2 * torch.arange(count, dtype=torch.long) * p + q) // (2 * q)
            frames = signal[starts[:, None] + torch.arange(self.n_fft)[None, :]]
            spectrum = torch.fft.rfft(frames * window, dim=-1)
        return spectrum.real.square() + spectrum.imag.square()

    def compute(self, x: np.ndarray) -> np.ndarray:
        """(T, n_mels) float32 log-mel frames of mono samples at ``sample_rate``."""
        import torch

        _, bank = self._ensure_tables()
        with torch.inference_mode():
            mel = self.power_spectrogram(x) @ bank
            return torch.log(mel + LOG_OFFSET).numpy()

    # --- interface -------------------------------------------------------------------
    def load(self, device: Any) -> None:
        self._ensure_tables()
        self.device = device

    def outputs(self) -> list[OutputSpec]:
        o = self.options
        attrs = {"hop_seconds": self.hop / o.sample_rate, "win_seconds": self.win_length / o.sample_rate,
                 "n_fft": self.n_fft, "mel_scale": "slaney", "fmin": o.fmin,
                 "fmax": o.fmax if o.fmax is not None else o.sample_rate / 2}
        return [OutputSpec("frames", (o.n_mels,), ragged=True, attrs=attrs)]

    def batch_policy(self) -> BatchPolicy:
        # no model: a batch is only a unit of hand-over; larger ones cut per-batch overhead
        return BatchPolicy(max_items=32)

    def prepare(self, row: dict) -> dict[str, np.ndarray]:
        start, end = row_window(row)
        samples = load_audio(row.get(self.options.column), self.options.sample_rate, start, end)
        return {"frames": self.compute(samples)}

    def encode(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return list(batch)


ENCODER = LogMelEncoder
