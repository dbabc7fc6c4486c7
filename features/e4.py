"""The ``e4`` encoder: per-segment statistics of Empatica E4 biosignals (no model).

Each manifest row names the E4 files of its recording (``eda``, ``temp``, ``ibi``, ``bvp``,
``hr``; empty = absent), their layout (``bio_format``: ``e4`` plain export or ``kemdy20``)
and which rows belong to the sample: ``bio_tag`` (KEMDy20's segment tag column) or, for
files without tags, the unix-time window ``[bio_start, bio_end)``. :meth:`E4Encoder.prepare`
reads those rows (:mod:`mer.features.e4_io`) and computes one statistics vector; there is
no model, so :meth:`E4Encoder.encode` only passes the vectors on.

Outputs per sample
------------------
``pooled``     float32 (D,), the statistics below for the requested ``signals`` in the
               order given; names in the ``names`` attribute. Stored as float32 (not the
               cache's float16) because slopes of 1e-4 µS/s would underflow float16.
``available``  bool (n_signals,): False when a signal's path is empty, its segment has no
               rows (IBI often has none) or too few to compute (fewer than ``min_samples``
               samples; fewer than ``min_beats`` beats or no pair of consecutive beats for
               IBI; an EDA file shorter than ``eda_min_context_s`` for the decomposition).
               An unavailable signal's features are 0, never NaN; the mask says why they
               are 0. Signals order: the ``signals`` attribute.

Nothing is normalised per recording or per feature: the trainer standardises on the
training split.

Recipe ``default``
------------------
=====================  ========  ===============================================================
name                   unit      definition
=====================  ========  ===============================================================
``eda_tonic_mean``     µS        mean of the tonic component over the segment
``eda_tonic_slope``    µS/s      least-squares slope of the tonic component against time
``eda_phasic_mean``    µS        mean of the phasic component
``eda_phasic_std``     µS        population std (ddof 0) of the phasic component
``eda_scr_count``      count     SCR peaks whose peak sample lies inside the segment
``eda_scr_amp_mean``   µS        mean amplitude of those SCRs (0 when there are none)
``temp_mean``          °C        mean skin temperature
``temp_slope``         °C/s      least-squares slope against time
``temp_range``         °C        max − min
``ibi_hr_mean``        bpm       60 / mean IBI
``ibi_sdnn_ms``        ms        sample std (ddof 1) of the IBIs (the HRV convention)
``ibi_rmssd_ms``       ms        sqrt(mean(ΔIBI²)) over pairs of CONSECUTIVE beats (see below)
``ibi_n_beats``        count     number of IBI rows in the segment
``bvp_std``            a.u.      population std of the BVP samples (pulse amplitude)
``bvp_iqr``            a.u.      75th − 25th percentile of BVP (amplitude, robust to spikes)
``hr_mean``            bpm       mean of the device's 1 Hz HR
``hr_std``             bpm       population std of HR
=====================  ========  ===============================================================

Recipe ``lmr-cl`` (requires exactly ``signals: [eda, temp, ibi]``)
----------------------------------------------------------------
The LMR-CL paper's bio branch takes "19 per-segment statistics of EDA, TEMP and IBI" and
does not list them. We define this 19-vector: the usual summary statistics of each signal
plus the standard SCR and time-domain HRV measures, computed correctly (a true RMSSD, not a
std; slopes per second, not per sample).

====  =====================  ========  =========================================================
 #    name                   unit      definition
====  =====================  ========  =========================================================
 1    ``eda_mean``           µS        mean raw EDA
 2    ``eda_std``            µS        population std (ddof 0)
 3    ``eda_min``            µS
 4    ``eda_max``            µS
 5    ``eda_slope``          µS/s      least-squares slope against time
 6    ``eda_scr_count``      count     as in the default recipe
 7    ``eda_scr_amp_mean``   µS        as in the default recipe
 8    ``temp_mean``          °C
 9    ``temp_std``           °C        population std
10    ``temp_min``           °C
11    ``temp_max``           °C
12    ``temp_slope``         °C/s
13    ``ibi_mean_ms``        ms        mean IBI
14    ``ibi_sdnn_ms``        ms        sample std (ddof 1)
15    ``ibi_rmssd_ms``       ms        as in the default recipe
16    ``ibi_hr_mean``        bpm       60 / mean IBI
17    ``ibi_hr_min``         bpm       60 / longest IBI
18    ``ibi_hr_max``         bpm       60 / shortest IBI
19    ``ibi_pnn50``          %         share of consecutive-beat |ΔIBI| > 50 ms
====  =====================  ========  =========================================================

Choices the task left open, and why
-----------------------------------
* EDA decomposition (``eda_method: highpass``): ``nk.eda_phasic(method="highpass")``, a
  0.05 Hz Butterworth split (Biopac AcqKnowledge's method, neurokit2's default). It works
  at 4 Hz, unlike ``eda_clean``'s 3 Hz low-pass (above the 2 Hz Nyquist, so neurokit skips
  it; we do not call it) and cvxEDA (needs cvxopt, slow). ``smoothmedian`` (tonic = 4 s
  running median) is available as an option.
* Context: an SCR takes 1–3 s to rise and several seconds to recover, and a 0.05 Hz filter
  needs tens of seconds to settle, so decomposing a 1–10 s segment on its own is
  meaningless. The WHOLE FILE (one speaker and script in KEMDy20, one session in a plain
  export) is decomposed once, cached per file (same LRU as the parser), and each segment
  takes its slice. An SCR belongs to the segment that contains its peak sample. NaN/inf in
  the file are linearly interpolated for the file-level decomposition only; NaN inside the
  segment itself is still an error (below).
* SCR detection: neurokit2's ``eda_findpeaks(method="neurokit")`` rule on the phasic
  signal, onset = the trough before the peak, amplitude = phasic[peak] − phasic[onset]
  (``nk.eda_peaks``'s ``SCR_Amplitude``), vectorised in :func:`detect_scrs` (neurokit's
  own version takes seconds per file and raises on a file without peaks; a test checks
  that both agree; ``eda_peaks``' recovery times are not used). neurokit's default relative
  threshold (10 % of the file's largest SCR) is disabled (``scr_relative_min: 0``) because
  on a whole-file context one movement artifact would hide every real response; instead
  an absolute minimum amplitude ``scr_min_amplitude`` = 0.02 µS (Boucsein's usual
  criteria are 0.01–0.05 µS; 0.02 µS is ~16 quantisation steps of the E4's 0.0013 µS).
* RMSSD: the E4 drops beats it cannot detect, so two consecutive IBI rows are two
  successive beats only when ``t[i+1] − t[i] ≈ IBI[i+1]`` (within ``ibi_gap_tolerance_s``).
  RMSSD and pNN50 use only such pairs; a difference across a missing beat is not a
  successive difference.
* Segment selection and file reading: see :mod:`mer.features.e4_io`.

Failures (recorded per sample, never NaN features): NaN/inf inside the segment of a signal
→ ``SampleError("features", "<path>: N NaN values in segment <tag>")``; no rows at all in
any requested signal → ``SampleError("read", "no biosignal rows for segment ...")``;
unreadable files and bad headers → ``SampleError("read", "<path>: ...")``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import numpy as np

from mer.features.base import Encoder, OutputSpec, SampleError
from mer.features.batching import BatchPolicy
from mer.features.e4_io import (
    E4Events,
    E4Signal,
    FORMATS,
    LRUCache,
    cache_clear,
    file_key,
    has_window,
    read_ibi,
    read_signal,
    segment,
)

SIGNALS: tuple[str, ...] = ("eda", "temp", "ibi", "bvp", "hr")
LMR_CL_SIGNALS: tuple[str, ...] = ("eda", "temp", "ibi")

#: feature names per recipe and signal, in output order (see the module docstring)
NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "default": {
        "eda": ("eda_tonic_mean", "eda_tonic_slope", "eda_phasic_mean", "eda_phasic_std", "eda_scr_count", "eda_scr_amp_mean"),
        "temp": ("temp_mean", "temp_slope", "temp_range"),
        "ibi": ("ibi_hr_mean", "ibi_sdnn_ms", "ibi_rmssd_ms", "ibi_n_beats"),
        "bvp": ("bvp_std", "bvp_iqr"),
        "hr": ("hr_mean", "hr_std"),
    },
    "lmr-cl": {
        "eda": ("eda_mean", "eda_std", "eda_min", "eda_max", "eda_slope", "eda_scr_count", "eda_scr_amp_mean"),
        "temp": ("temp_mean", "temp_std", "temp_min", "temp_max", "temp_slope"),
        "ibi": ("ibi_mean_ms", "ibi_sdnn_ms", "ibi_rmssd_ms", "ibi_hr_mean", "ibi_hr_min", "ibi_hr_max", "ibi_pnn50"),
    },
}


@dataclass
class Options:
    encoder: str = "e4"
    #: ``default`` (neurokit2 EDA decomposition + HRV) or ``lmr-cl`` (the 19-vector)
    recipe: Literal["default", "lmr-cl"] = "default"
    #: which signals, in output order; any of eda, temp, ibi, bvp, hr
    signals: list[str] = field(default_factory=lambda: ["eda", "temp", "ibi"])
    #: nk.eda_phasic method for the tonic/phasic split
    eda_method: Literal["highpass", "smoothmedian"] = "highpass"
    #: SCRs smaller than this (µS, peak minus preceding trough of the phasic signal) are noise
    scr_min_amplitude: float = 0.02
    #: neurokit's relative SCR threshold (share of the file's largest); 0 disables it
    scr_relative_min: float = 0.0
    #: an EDA file shorter than this (s) cannot be decomposed: EDA is then unavailable
    eda_min_context_s: float = 10.0
    #: uniform signals need at least this many samples in the segment (slopes need 2)
    min_samples: int = 2
    #: IBI needs at least this many beats in the segment (and one consecutive pair)
    min_beats: int = 2
    #: two IBI rows are consecutive beats when |Δt − IBI| <= this (s); the E4 quantises to 1/64 s
    ibi_gap_tolerance_s: float = 0.05

    def __post_init__(self) -> None:
        if not self.signals:
            raise ValueError("signals must name at least one of " + ", ".join(SIGNALS))
        unknown = [s for s in self.signals if s not in SIGNALS]
        if unknown:
            raise ValueError(f"unknown signal(s) {unknown}; known: {list(SIGNALS)}")
        if len(set(self.signals)) != len(self.signals):
            raise ValueError(f"signals has duplicates: {self.signals}")
        if self.recipe == "lmr-cl" and sorted(self.signals) != sorted(LMR_CL_SIGNALS):
            raise ValueError(f"recipe lmr-cl is defined on exactly signals {list(LMR_CL_SIGNALS)}, got {self.signals}")
        if self.min_samples < 2:
            raise ValueError("min_samples must be >= 2 (a slope needs two samples)")
        if self.min_beats < 2:
            raise ValueError("min_beats must be >= 2 (RMSSD needs one successive difference)")
        if not 0.0 <= self.scr_relative_min < 1.0:
            raise ValueError("scr_relative_min must be in [0, 1)")
        if self.scr_min_amplitude < 0 or self.ibi_gap_tolerance_s <= 0 or self.eda_min_context_s < 0:
            raise ValueError("scr_min_amplitude and eda_min_context_s must be >= 0, ibi_gap_tolerance_s > 0")


# --------------------------------------------------------------------------------------
# statistics (pure functions on arrays; tested against hand-computed values)
# --------------------------------------------------------------------------------------
def slope_per_second(times: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of ``values`` against ``times`` (s), in units per second.

    Times are centred first: unix times (~1.6e9) squared would lose all precision.
    """
    t = np.asarray(times, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    tc = t - t.mean()
    denom = float(np.dot(tc, tc))
    if len(t) < 2 or denom == 0.0:
        return 0.0
    return float(np.dot(tc, y - y.mean()) / denom)


def uniform_stats(times: np.ndarray, values: np.ndarray, iqr: bool = False) -> dict[str, float]:
    """Summary statistics of a uniformly sampled segment (std: population, ddof 0)."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = float(v.min()), float(v.max())
    stats = {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": lo,
        "max": hi,
        "range": hi - lo,
        "slope": slope_per_second(times, v),
    }
    if iqr:  # percentiles cost a sort: only where a feature uses them
        q75, q25 = np.percentile(v, [75, 25])
        stats["iqr"] = float(q75 - q25)
    return stats


def segment_problem(signal: str, seg: E4Signal | E4Events) -> str | None:
    """What makes a segment's values unusable, counted by kind with the first file line, or None:
    NaN and inf apart (they mean different things: a gap vs an overflow), and, for IBI, intervals
    that are not positive (a beat cannot follow the previous one by <= 0 s)."""
    header = 1 if isinstance(seg, E4Events) else 2  # IBI files have one header line, signals two

    def first_line(mask: np.ndarray) -> int:
        return int(np.asarray(seg.rows)[np.flatnonzero(mask)[0]]) + header + 1

    values = np.asarray(seg.values, dtype=np.float64)
    parts = []
    for mask, what in ((np.isnan(values), "NaN"), (np.isinf(values), "inf")):
        if mask.any():
            parts.append(f"{int(mask.sum())} {what} value(s) (first at line {first_line(mask)})")
    times = np.asarray(seg.times, dtype=np.float64)
    if not np.isfinite(times).all():
        parts.append(f"{int((~np.isfinite(times)).sum())} non-finite time(s) (first at line "
                     f"{first_line(~np.isfinite(times))})")
    if signal == "ibi":
        bad = np.isfinite(values) & (values <= 0)
        if bad.any():
            parts.append(f"{int(bad.sum())} IBI value(s) <= 0 s (first at line {first_line(bad)})")
    return "; ".join(parts) or None


def successive_differences(ibi_s: np.ndarray, times: np.ndarray, tolerance_s: float) -> np.ndarray:
    """IBI[i+1] − IBI[i] in ms for rows that are truly successive beats.

    Row i+1 follows row i without a missed beat when the time between the two beats equals
    the interval that ends at beat i+1: ``|t[i+1] − t[i] − IBI[i+1]| <= tolerance``.
    """
    ibi = np.asarray(ibi_s, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if len(ibi) < 2:
        return np.empty(0)
    consecutive = np.abs(np.diff(t) - ibi[1:]) <= tolerance_s
    return (np.diff(ibi) * 1000.0)[consecutive]


def ibi_stats(ibi_s: np.ndarray, times: np.ndarray, tolerance_s: float) -> dict[str, float]:
    """Time-domain HRV of one segment's beats (IBI in seconds)."""
    ibi = np.asarray(ibi_s, dtype=np.float64)
    diffs = successive_differences(ibi, times, tolerance_s)
    mean_ibi = float(ibi.mean())
    return {
        "mean_ms": mean_ibi * 1000.0,
        "sdnn_ms": float(ibi.std(ddof=1) * 1000.0) if len(ibi) > 1 else 0.0,
        "rmssd_ms": float(np.sqrt(np.mean(diffs**2))) if len(diffs) else 0.0,
        "pnn50": float(np.mean(np.abs(diffs) > 50.0) * 100.0) if len(diffs) else 0.0,
        "hr_mean": 60.0 / mean_ibi,
        "hr_min": 60.0 / float(ibi.max()),
        "hr_max": 60.0 / float(ibi.min()),
        "n_beats": float(len(ibi)),
        "n_pairs": float(len(diffs)),
    }


@dataclass(frozen=True)
class EDAContext:
    """The whole-file EDA decomposition that segments slice (cached per file)."""

    tonic: np.ndarray
    phasic: np.ndarray
    #: file row of each detected SCR peak (sorted) and its amplitude (µS)
    scr_peaks: np.ndarray
    scr_amplitudes: np.ndarray


def _interpolate_nonfinite(values: np.ndarray) -> np.ndarray:
    good = np.isfinite(values)
    if good.all():
        return values
    idx = np.arange(len(values))
    return np.interp(idx, idx[good], values[good])


def detect_scrs(phasic: np.ndarray, rate: float, min_amplitude: float, relative_min: float) -> tuple[np.ndarray, np.ndarray]:
    """SCR peaks (sample indices) and amplitudes (µS) on a phasic EDA signal.

    This is ``nk.eda_findpeaks(method="neurokit")`` vectorised: peaks are the local maxima
    of the phasic signal (scipy ``find_peaks``), optionally kept only when their prominence
    is at least ``relative_min`` of the largest one (neurokit's ``amplitude_min``); each
    onset is the last trough strictly before the peak, and amplitude = phasic[peak] −
    phasic[onset] as ``nk.eda_peaks`` defines ``SCR_Amplitude``; peaks without a preceding
    trough are dropped (as there). neurokit finds each onset with a per-peak pandas search,
    which is slow on hour-long E4 files (bench/README.md, "Decisions and the measurements behind
    them"); the test suite checks that both give the same peaks and onsets. ``rate`` is unused by this method and kept for the signature's sake.
    """
    from scipy.signal import find_peaks, peak_prominences

    phasic = np.asarray(phasic, dtype=np.float64)
    peaks, _ = find_peaks(phasic)
    if len(peaks) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0)
    if relative_min > 0:
        prominence = peak_prominences(phasic, peaks)[0]
        peaks = peaks[prominence / prominence.max() >= relative_min]
    troughs, _ = find_peaks(-phasic)
    before = np.searchsorted(troughs, peaks, side="left") - 1  # last trough < peak
    has_onset = before >= 0
    peaks = peaks[has_onset]
    onsets = troughs[before[has_onset]]
    amplitudes = phasic[peaks] - phasic[onsets]
    keep = amplitudes >= min_amplitude
    return peaks[keep].astype(np.int64), amplitudes[keep]


def decompose_eda(values: np.ndarray, rate: float, method: str, min_amplitude: float, relative_min: float) -> EDAContext:
    """Tonic/phasic split of a whole EDA file with ``nk.eda_phasic``, plus its SCRs."""
    import neurokit2 as nk

    x = _interpolate_nonfinite(np.asarray(values, dtype=np.float64))
    parts = nk.eda_phasic(x, sampling_rate=rate, method=method)
    tonic = parts["EDA_Tonic"].to_numpy(dtype=np.float64)
    phasic = parts["EDA_Phasic"].to_numpy(dtype=np.float64)
    peaks, amplitudes = detect_scrs(phasic, rate, min_amplitude, relative_min)
    for array in (tonic, phasic, peaks, amplitudes):
        array.flags.writeable = False
    return EDAContext(tonic=tonic, phasic=phasic, scr_peaks=peaks, scr_amplitudes=amplitudes)


_EDA_CONTEXTS = LRUCache(maxsize=16)


def clear_caches() -> None:
    """Forget parsed files and EDA decompositions (tests; processes that rewrite files)."""
    cache_clear()
    _EDA_CONTEXTS.clear()


# --------------------------------------------------------------------------------------
# the encoder
# --------------------------------------------------------------------------------------
def _text(row: dict, key: str) -> str:
    value = row.get(key, "")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _float(row: dict, key: str) -> float:
    value = row.get(key, math.nan)
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SampleError("read", f"{key} must be a unix time in seconds, got {value!r}") from None


class E4Encoder(Encoder):
    family = "e4"
    code_version = "1"
    columns = ("eda", "temp", "ibi", "bvp", "hr", "bio_format", "bio_tag", "bio_start", "bio_end")

    def __init__(self, options: Options):
        super().__init__(options)
        self.names: list[str] = [n for s in options.signals for n in NAMES[options.recipe][s]]
        self._slices: dict[str, slice] = {}
        offset = 0
        for signal in options.signals:
            width = len(NAMES[options.recipe][signal])
            self._slices[signal] = slice(offset, offset + width)
            offset += width

    # --- identity --------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        # the EDA decomposition is neurokit2's: a new version may change it
        return {"neurokit2": metadata.version("neurokit2")}

    def outputs(self) -> list[OutputSpec]:
        return [
            OutputSpec("pooled", (len(self.names),), dtype="float32", attrs={"names": list(self.names), "recipe": self.options.recipe}),
            OutputSpec("available", (len(self.options.signals),), dtype="bool", attrs={"signals": list(self.options.signals)}),
        ]

    def batch_policy(self) -> BatchPolicy:
        return BatchPolicy(max_items=256)  # no model: batching only saves per-batch overhead

    def present(self, row: dict) -> bool:
        return any(_text(row, signal) for signal in self.options.signals)

    # --- per-sample work ----------------------------------------------------------------
    def prepare(self, row: dict) -> dict[str, np.ndarray]:
        opts = self.options
        fmt = _text(row, "bio_format") or "e4"
        if fmt not in FORMATS:
            raise SampleError("read", f"bio_format must be one of {list(FORMATS)}, got {fmt!r}")
        tag = _text(row, "bio_tag")
        start, end = _float(row, "bio_start"), _float(row, "bio_end")
        where = repr(tag) if tag else f"[{start}, {end})"
        if not tag and not has_window(start, end):
            raise SampleError("read", "no segment selector: bio_tag is empty and bio_start/bio_end are not set")

        pooled = np.zeros(len(self.names), dtype=np.float64)
        available = np.zeros(len(opts.signals), dtype=bool)
        any_rows = False
        for k, signal in enumerate(opts.signals):
            path = _text(row, signal)
            if not path:
                continue
            data = read_ibi(path, fmt) if signal == "ibi" else read_signal(path, fmt)
            seg = segment(data, tag=tag, start=start, end=end)
            if len(seg) == 0:
                continue
            any_rows = True
            problem = segment_problem(signal, seg)
            if problem:
                raise SampleError("features", f"{path}: {problem} in segment {where}")
            stats = self._stats(signal, data, seg)
            if stats is None:
                continue
            pooled[self._slices[signal]] = [stats[name] for name in NAMES[opts.recipe][signal]]
            available[k] = True
        if not any_rows:
            raise SampleError("read", f"no biosignal rows for segment {where} in any of {list(opts.signals)}")
        if not np.isfinite(pooled).all():  # a guard: the trainer must never see NaN
            names = [n for n, v in zip(self.names, pooled) if not np.isfinite(v)]
            raise SampleError("features", f"non-finite features {names} for segment {where}")
        return {"pooled": pooled.astype(np.float32), "available": available}

    def _stats(self, signal: str, data: E4Signal | E4Events, seg: E4Signal | E4Events) -> dict[str, float] | None:
        """``{feature name: value}`` for one signal's segment, or None when too few rows."""
        opts = self.options
        if signal == "ibi":
            if len(seg) < opts.min_beats:
                return None
            s = ibi_stats(seg.values, seg.times, opts.ibi_gap_tolerance_s)
            if s["n_pairs"] == 0:
                return None
            return {
                "ibi_mean_ms": s["mean_ms"], "ibi_sdnn_ms": s["sdnn_ms"], "ibi_rmssd_ms": s["rmssd_ms"],
                "ibi_hr_mean": s["hr_mean"], "ibi_hr_min": s["hr_min"], "ibi_hr_max": s["hr_max"],
                "ibi_pnn50": s["pnn50"], "ibi_n_beats": s["n_beats"],
            }
        if len(seg) < opts.min_samples:
            return None
        stats = {f"{signal}_{k}": v for k, v in uniform_stats(seg.times, seg.values, iqr=signal == "bvp").items()}
        if signal == "eda":
            eda = self._eda_context(data)
            if eda is None:
                return None
            stats.update(self._eda_segment(eda, seg))
        return stats

    def _eda_context(self, data: E4Signal) -> EDAContext | None:
        """The cached whole-file decomposition; None when the file is too short for it."""
        opts = self.options
        if len(data) / data.rate < opts.eda_min_context_s or np.isfinite(data.values).sum() < 2:
            return None
        key = (file_key(data.path), data.fmt, opts.eda_method, opts.scr_min_amplitude, opts.scr_relative_min)

        def compute() -> EDAContext:
            try:
                return decompose_eda(data.values, data.rate, opts.eda_method, opts.scr_min_amplitude, opts.scr_relative_min)
            except ValueError as exc:  # scipy/neurokit on a degenerate file: a per-sample failure
                raise SampleError("features", f"{data.path}: EDA decomposition ({opts.eda_method}) failed: {exc}") from None

        return _EDA_CONTEXTS.get(key, compute)

    @staticmethod
    def _eda_segment(eda: EDAContext, seg: E4Signal) -> dict[str, float]:
        rows = seg.rows
        tonic, phasic = eda.tonic[rows], eda.phasic[rows]
        inside = np.isin(eda.scr_peaks, rows)
        count = int(inside.sum())
        return {
            "eda_tonic_mean": float(tonic.mean()),
            "eda_tonic_slope": slope_per_second(seg.times, tonic),
            "eda_phasic_mean": float(phasic.mean()),
            "eda_phasic_std": float(phasic.std()),
            "eda_scr_count": float(count),
            "eda_scr_amp_mean": float(eda.scr_amplitudes[inside].mean()) if count else 0.0,
        }

    def encode(self, batch: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return list(batch)


ENCODER = E4Encoder

__all__ = [
    "E4Encoder",
    "clear_caches",
    "EDAContext",
    "ENCODER",
    "NAMES",
    "Options",
    "SIGNALS",
    "decompose_eda",
    "detect_scrs",
    "ibi_stats",
    "slope_per_second",
    "successive_differences",
    "uniform_stats",
]
