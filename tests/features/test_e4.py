"""E4 reading (plain export and KEMDy20 variant) and the ``e4`` biosignal encoder.

Fixtures are written in the exact on-disk formats of shared/docs/datasets.md; expected
values are computed by hand. The real Stress-Predict exports are read in place when
../shared is present and skipped otherwise.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from mer.features import e4_io
from mer.features.base import SampleError
from mer.features.e4 import (
    NAMES,
    E4Encoder,
    Options,
    clear_caches,
    decompose_eda,
    detect_scrs,
    ibi_stats,
    slope_per_second,
    successive_differences,
)
from mer.features.e4_io import read_ibi, read_signal, segment, segment_positions
from mer.features.registry import build_encoder
from kit.paths import SHARED_DATA

REAL = SHARED_DATA / "e4-stress-predict"
START = 1595487394.0  # a KEMDy20-era unix time


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_caches()
    yield
    clear_caches()


# --------------------------------------------------------------------------------------
# writers for the two formats
# --------------------------------------------------------------------------------------
def _dt(t: float) -> str:
    """KEMDy20's datetime column: YYYY-MMDD-HHMM-SS-mmm (content irrelevant to the parser)."""
    ms = int(round((t % 1) * 1000))
    return time.strftime("%Y-%m%d-%H%M-%S", time.gmtime(t)) + f"-{ms:03d}"


def write_kemdy20_signal(path: Path, values, tags, start: float = START, rate: float = 4.0) -> Path:
    lines = [f"{start:.0f},{_dt(start)}", f"{rate:.6f},hz"]
    for i, (v, tag) in enumerate(zip(values, tags)):
        row = f"{v:.6f},{_dt(start + i / rate)}"
        lines.append(row + (f",{tag}" if tag else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_kemdy20_ibi(path: Path, offsets, ibis, tags, start: float = START) -> Path:
    lines = [f"{start:.0f},IBI,{_dt(start)}"]
    for t, ibi, tag in zip(offsets, ibis, tags):
        row = f"{t:.6f},{ibi:.6f},{_dt(start + t)}"
        lines.append(row + (f",{tag}" if tag else ""))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_plain_signal(path: Path, values, start: float = START, rate: float = 4.0) -> Path:
    path.write_text(f"{start:.6f}\n{rate:.6f}\n" + "".join(f"{v:.6f}\n" for v in values))
    return path


def write_plain_ibi(path: Path, offsets, ibis, start: float = START) -> Path:
    path.write_text(f"{start:.6f}, IBI\n" + "".join(f"{t:.6f},{v:.6f}\n" for t, v in zip(offsets, ibis)))
    return path


def beats(ibis, first: float) -> np.ndarray:
    """Offsets (s since start) of consecutive beats with these intervals, first beat at ``first``."""
    return first + np.concatenate([[0.0], np.cumsum(ibis[1:])])


# --------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------
def test_kemdy20_signal_values_tags_and_segments(tmp_path):
    values = [0.1 * i for i in range(12)]
    tags = [""] * 4 + ["Sess01_script01_User002M_001"] * 3 + [""] + ["Sess01_script01_User002M_002"] * 2 + [""] * 2
    path = write_kemdy20_signal(tmp_path / "eda.csv", values, tags)
    sig = read_signal(path, "kemdy20")
    assert sig.start == START and sig.rate == 4.0 and len(sig) == 12
    np.testing.assert_allclose(sig.values, values)
    assert list(sig.tags) == tags
    np.testing.assert_allclose(sig.times, START + np.arange(12) / 4.0)

    seg = segment(sig, tag="Sess01_script01_User002M_001")
    assert seg.rows.tolist() == [4, 5, 6]
    np.testing.assert_allclose(seg.values, [0.4, 0.5, 0.6])
    np.testing.assert_allclose(seg.times, START + np.array([1.0, 1.25, 1.5]))
    assert segment(sig, tag="Sess01_script01_User002M_002").rows.tolist() == [8, 9]
    assert len(segment(sig, tag="Sess01_script01_User002M_999")) == 0  # tag absent from the file
    # no tag: the unix-time window [start, end) — rows at 1.0, 1.25, 1.5, 1.75 s
    assert segment(sig, start=START + 1.0, end=START + 2.0).rows.tolist() == [4, 5, 6, 7]
    assert segment(sig, start=START + 2.5, end=math.nan).rows.tolist() == [10, 11]  # open end


def test_kemdy20_ibi_values_tags_and_segments(tmp_path):
    offsets = [2.0, 2.8, 3.7, 5.2]
    ibis = [0.75, 0.8, 0.9, 0.75]
    tags = ["", "segA", "segA", ""]
    path = write_kemdy20_ibi(tmp_path / "ibi.csv", offsets, ibis, tags)
    ev = read_ibi(path, "kemdy20")
    assert ev.start == START and len(ev) == 4 and list(ev.tags) == tags
    np.testing.assert_allclose(ev.values, ibis)
    np.testing.assert_allclose(ev.times, START + np.array(offsets))
    assert segment(ev, tag="segA").rows.tolist() == [1, 2]
    assert segment_positions(ev, start=START + 2.8, end=START + 5.2).tolist() == [1, 2]  # end excluded


def test_kemdy20_file_without_any_tag_falls_back_to_the_time_window(tmp_path):
    path = write_kemdy20_signal(tmp_path / "temp.csv", [30.0 + 0.1 * i for i in range(8)], [""] * 8)
    sig = read_signal(path, "kemdy20")
    assert not sig.tagged
    # the tag names nothing in this file: the window decides (rows at 0.5, 0.75, 1.0, 1.25 s)
    assert segment(sig, tag="Sess01_script01_User002M_001", start=START + 0.5, end=START + 1.5).rows.tolist() == [2, 3, 4, 5]


def test_plain_export_signal_and_ibi(tmp_path):
    eda = write_plain_signal(tmp_path / "EDA.csv", [0.0, 0.11275, 0.166563, 0.2], rate=4.0)
    sig = read_signal(eda, "e4")
    assert sig.tags is None and sig.start == START and sig.rate == 4.0
    np.testing.assert_allclose(sig.values, [0.0, 0.11275, 0.166563, 0.2])
    assert segment(sig, start=START + 0.25, end=START + 0.75).rows.tolist() == [1, 2]
    ibi = write_plain_ibi(tmp_path / "IBI.csv", [35.484375, 36.34375], [0.890625, 0.859375])
    ev = read_ibi(ibi, "e4")
    np.testing.assert_allclose(ev.times - START, [35.484375, 36.34375])
    np.testing.assert_allclose(ev.values, [0.890625, 0.859375])
    # a plain file has no tags: a tag alone cannot select rows
    with pytest.raises(SampleError, match="no segment tags"):
        segment(ev, tag="segA")
    # ACC: one start/rate per axis; the parser reads the first column
    acc = tmp_path / "ACC.csv"
    acc.write_text(f"{START:.6f}, {START:.6f}, {START:.6f}\n32.000000, 32.000000, 32.000000\n-1,2,60\n-3,4,61\n")
    a = read_signal(acc, "e4")
    assert a.rate == 32.0 and a.values.tolist() == [-1.0, -3.0]


def test_bad_headers_and_missing_files_name_the_file(tmp_path):
    no_rate = tmp_path / "no_rate.csv"  # KEMDy20 file whose rate line is missing
    no_rate.write_text(f"{START:.0f},{_dt(START)}\n0.500000,{_dt(START)}\n")
    with pytest.raises(SampleError) as err:
        read_signal(no_rate, "kemdy20")
    assert err.value.stage == "read"
    assert str(no_rate) in err.value.message and "line 2 should be the sample rate in Hz" in err.value.message
    bad_rate = tmp_path / "bad_rate.csv"
    bad_rate.write_text(f"{START:.6f}\nhz\n1.0\n")
    with pytest.raises(SampleError, match="line 2 should be the sample rate in Hz, but it is not a positive number$"):
        read_signal(bad_rate, "e4")
    bad_start = tmp_path / "bad_start.csv"
    bad_start.write_text("start\n4.0\n1.0\n")
    with pytest.raises(SampleError, match=r"bad_start.csv: line 1 should be the start unix time"):
        read_signal(bad_start, "e4")
    bad_ibi = tmp_path / "bad_ibi.csv"
    bad_ibi.write_text(f"{START}\n4.0\n")
    with pytest.raises(SampleError, match=r"bad_ibi.csv: line 1 should be '<start unix time>, IBI'"):
        read_ibi(bad_ibi, "e4")
    bad_value = write_plain_signal(tmp_path / "bad_value.csv", [1.0, 2.0, 3.0])
    bad_value.write_text(bad_value.read_text().replace("2.000000", "oops"))
    with pytest.raises(SampleError, match=r"bad_value.csv: line 4, column 1 is not a number \(4 characters\)$"):
        read_signal(bad_value, "e4")
    kemdy = write_kemdy20_signal(tmp_path / "kemdy.csv", [1.0], [""])
    with pytest.raises(SampleError, match=r"kemdy.csv: line 2 should be .* set bio_format to 'kemdy20'"):
        read_signal(kemdy, "e4")  # the wrong format is named as such
    with pytest.raises(SampleError, match=r"missing.csv: file not found") as err:
        read_signal(tmp_path / "missing.csv", "e4")
    assert err.value.stage == "read"


def test_cache_hits_invalidates_on_change_and_parses_once_under_threads(tmp_path):
    path = write_plain_signal(tmp_path / "EDA.csv", [1.0, 2.0, 3.0])
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: read_signal(path, "e4"), range(32)))
    assert all(r is results[0] for r in results)
    assert e4_io.cache_info()["misses"] == 1 and e4_io.cache_info()["hits"] == 31
    assert not results[0].values.flags.writeable  # shared between threads: read-only
    write_plain_signal(path, [1.0, 2.0, 3.0, 4.0, 5.0])
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # mtime moves even on coarse clocks
    assert len(read_signal(path, "e4")) == 5


# --------------------------------------------------------------------------------------
# statistics vs hand-computed values
# --------------------------------------------------------------------------------------
def test_rmssd_sdnn_hr_of_a_known_sequence():
    ibis = np.array([0.8, 0.9, 0.7])
    s = ibi_stats(ibis, START + beats(ibis, 10.0), tolerance_s=0.05)
    assert s["rmssd_ms"] == pytest.approx(math.sqrt((100.0**2 + 200.0**2) / 2))  # 158.11 ms
    assert s["sdnn_ms"] == pytest.approx(100.0)  # std([800, 900, 700], ddof=1)
    assert s["hr_mean"] == pytest.approx(75.0)  # 60 / 0.8 s
    assert s["hr_min"] == pytest.approx(60 / 0.9) and s["hr_max"] == pytest.approx(60 / 0.7)
    assert s["pnn50"] == pytest.approx(100.0) and s["n_beats"] == 3


def test_successive_differences_skip_missed_beats_like_a_plain_loop():
    rng = np.random.default_rng(0)
    ibis = rng.uniform(0.6, 1.1, 200)
    t = beats(ibis, 5.0)
    missed = rng.random(200) < 0.2  # the device drops beats: their rows vanish
    missed[0] = False
    ibis_kept, t_kept = ibis[~missed], t[~missed]
    expected = []
    for i in range(len(ibis_kept) - 1):  # the naive definition: successive beats only
        if abs((t_kept[i + 1] - t_kept[i]) - ibis_kept[i + 1]) < 1e-9:
            expected.append((ibis_kept[i + 1] - ibis_kept[i]) * 1000)
    got = successive_differences(ibis_kept, t_kept, tolerance_s=0.05)
    np.testing.assert_allclose(got, expected)
    assert 0 < len(got) < len(ibis_kept) - 1
    # a difference across a gap would have been counted by a naive diff of the rows
    assert len(np.diff(ibis_kept)) > len(got)


def test_temperature_slope_is_per_second():
    t = START + np.arange(40) / 4.0  # 10 s at 4 Hz
    temp = 30.0 + 0.01 * (t - START)  # 0.01 °C/s = 0.0025 °C per sample
    assert slope_per_second(t, temp) == pytest.approx(0.01, rel=1e-9)


def _bateman(t, onset, amp, rise=0.75, decay=4.0):
    x = np.clip(t - onset, 0.0, None)
    shape = np.where(t >= onset, np.exp(-x / decay) - np.exp(-x / rise), 0.0)
    tmax = math.log(decay / rise) * rise * decay / (decay - rise)
    return amp * shape / (math.exp(-tmax / decay) - math.exp(-tmax / rise))


ONSETS = [30.0, 45.0, 80.0, 150.0, 210.0]
AMPS = [0.3, 0.5, 0.25, 0.4, 0.35]


def synthetic_eda(seconds: float = 300.0, rate: float = 4.0, seed: int = 0) -> np.ndarray:
    """Tonic drift + 5 clear SCRs + sensor noise, quantised like the E4 (0.00128 µS)."""
    t = np.arange(int(seconds * rate)) / rate
    x = 2.0 + 0.002 * t + sum(_bateman(t, o, a) for o, a in zip(ONSETS, AMPS))
    x = x + np.random.default_rng(seed).normal(0.0, 0.003, len(t))
    return np.round(x / 0.00128) * 0.00128


def test_scr_detection_finds_each_response_once():
    ctx = decompose_eda(synthetic_eda(), 4.0, "highpass", min_amplitude=0.02, relative_min=0.0)
    peaks_s = ctx.scr_peaks / 4.0
    assert len(peaks_s) == len(ONSETS)
    # each peak 1-2.5 s after its onset (a Bateman SCR with 0.75 s rise peaks at ~1.7 s)
    assert np.all((peaks_s - ONSETS > 0.5) & (peaks_s - ONSETS < 2.5))
    # the 0.05 Hz high-pass attenuates amplitudes a little, never by more than 20 %
    np.testing.assert_allclose(ctx.scr_amplitudes, AMPS, rtol=0.2)


@pytest.mark.parametrize("relative_min", [0.0, 0.1])
def test_vectorised_scr_detection_equals_neurokit(relative_min):
    import neurokit2 as nk

    phasic = decompose_eda(synthetic_eda(seconds=120.0, seed=1), 4.0, "highpass", 0.02, 0.0).phasic
    peaks, amplitudes = detect_scrs(phasic, 4.0, min_amplitude=-np.inf, relative_min=relative_min)
    ref = nk.eda_findpeaks(phasic, sampling_rate=4.0, method="neurokit", amplitude_min=relative_min or None)
    valid = ~np.isnan(ref["SCR_Onsets"])
    ref_peaks = ref["SCR_Peaks"][valid]
    ref_amplitudes = ref["SCR_Height"][valid] - phasic[ref["SCR_Onsets"][valid].astype(int)]
    # without a relative threshold the noise makes many small candidates: a real comparison
    assert len(peaks) > (20 if relative_min == 0 else 2)
    np.testing.assert_array_equal(peaks, ref_peaks)
    np.testing.assert_allclose(amplitudes, ref_amplitudes)
    assert detect_scrs(np.ones(50), 4.0, 0.02, 0.0)[0].size == 0  # flat: no peaks, no error


# --------------------------------------------------------------------------------------
# the encoder on a KEMDy20-like recording
# --------------------------------------------------------------------------------------
def _tags_for(n: int, rate: float, spans: dict[str, tuple[float, float]]) -> list[str]:
    t = np.arange(n) / rate
    tags = [""] * n
    for tag, (lo, hi) in spans.items():
        for i in np.flatnonzero((t >= lo) & (t < hi)):
            tags[i] = tag
    return tags


SPANS = {"seg1": (25.0, 60.0), "seg2": (100.0, 140.0), "seg3": (240.0, 242.0)}
IBIS = np.array([0.8, 0.9, 0.7])


@pytest.fixture
def recording(tmp_path):
    """300 s of EDA/TEMP (4 Hz) with tags; IBI beats inside seg1 only."""
    eda = synthetic_eda()
    n = len(eda)
    temp = 32.0 + 0.01 * np.arange(n) / 4.0
    tags = _tags_for(n, 4.0, SPANS)
    offsets = beats(IBIS, 30.0)  # 30.0, 30.9, 31.6 s: inside seg1
    return {
        "eda": str(write_kemdy20_signal(tmp_path / "EDA.csv", eda, tags)),
        "temp": str(write_kemdy20_signal(tmp_path / "TEMP.csv", temp, tags)),
        "ibi": str(write_kemdy20_ibi(tmp_path / "IBI.csv", offsets, IBIS, ["seg1"] * 3)),
        "bio_format": "kemdy20",
        "bio_tag": "seg1",
        "bio_start": math.nan,
        "bio_end": math.nan,
        "_eda": eda,
        "_temp": temp,
    }


def _encoder(**kw) -> E4Encoder:
    enc = build_encoder(Options(**kw))
    enc.load(None)
    return enc


def _named(enc: E4Encoder, out: dict) -> dict[str, float]:
    return dict(zip(enc.names, out["pooled"].tolist()))


def test_default_features_match_hand_computed_values(recording):
    enc = _encoder()
    assert enc.names == list(NAMES["default"]["eda"] + NAMES["default"]["temp"] + NAMES["default"]["ibi"])
    out = enc.prepare(recording)
    assert out["pooled"].dtype == np.float32 and out["available"].tolist() == [True, True, True]
    f = _named(enc, out)
    assert f["eda_scr_count"] == 2  # responses at 30 s and 45 s lie in seg1 = [25, 60)
    assert f["eda_scr_amp_mean"] == pytest.approx(np.mean(AMPS[:2]), rel=0.2)
    assert f["temp_mean"] == pytest.approx(32.0 + 0.01 * np.mean(np.arange(100, 240) / 4.0), rel=1e-6)
    assert f["temp_slope"] == pytest.approx(0.01, rel=1e-4)
    assert f["temp_range"] == pytest.approx(0.01 * 139 / 4.0, rel=1e-4)
    assert f["ibi_rmssd_ms"] == pytest.approx(math.sqrt((100.0**2 + 200.0**2) / 2), rel=1e-5)
    assert f["ibi_hr_mean"] == pytest.approx(75.0, rel=1e-6)
    assert f["ibi_sdnn_ms"] == pytest.approx(100.0, rel=1e-5)
    assert f["ibi_n_beats"] == 3
    # the tonic of a drifting baseline: mean near the raw baseline, slope near 0.002 µS/s
    assert f["eda_tonic_mean"] == pytest.approx(np.mean(recording["_eda"][100:240]), abs=0.1)
    # a time window over the whole recording (no tag) sees all five responses
    whole = enc.prepare(dict(recording, bio_tag="", bio_start=START, bio_end=START + 300))
    assert _named(enc, whole)["eda_scr_count"] == len(ONSETS)
    spec = {s.name: s for s in enc.outputs()}
    assert spec["pooled"].shape == out["pooled"].shape and spec["pooled"].attrs["names"] == enc.names
    assert spec["available"].shape == (3,) and spec["available"].attrs["signals"] == ["eda", "temp", "ibi"]
    assert enc.encode([out, whole]) == [out, whole]


def test_segment_without_ibi_rows_is_masked_not_an_error(recording):
    enc = _encoder()
    out = enc.prepare(dict(recording, bio_tag="seg2"))
    assert out["available"].tolist() == [True, True, False]
    f = _named(enc, out)
    assert [f[n] for n in NAMES["default"]["ibi"]] == [0.0, 0.0, 0.0, 0.0]
    assert f["eda_scr_count"] == 0 and np.isfinite(out["pooled"]).all()
    # an empty path is absent too; a signal that was not requested is not read at all
    out = enc.prepare(dict(recording, ibi=""))
    assert out["available"].tolist() == [True, True, False]


def test_nan_inside_the_segment_is_a_recorded_failure(recording, tmp_path):
    eda = recording["_eda"].copy()
    eda[[110, 111]] = np.nan  # 27.5 s, 27.75 s: inside seg1
    eda[1000] = np.nan  # 250 s: outside every tested segment
    tags = _tags_for(len(eda), 4.0, SPANS)
    path = write_kemdy20_signal(tmp_path / "EDA_nan.csv", eda, tags)
    row = dict(recording, eda=str(path))
    enc = _encoder()
    with pytest.raises(SampleError) as err:
        enc.prepare(row)
    assert err.value.stage == "features"
    assert err.value.message == f"{path}: 2 NaN value(s) (first at line 113) in segment 'seg1'"
    out = enc.prepare(dict(row, bio_tag="seg2"))  # NaN elsewhere: interpolated for the context only
    assert np.isfinite(out["pooled"]).all() and out["available"].tolist() == [True, True, False]


def test_no_rows_anywhere_and_bad_files_fail_per_sample(recording, tmp_path):
    enc = _encoder()
    with pytest.raises(SampleError, match="no biosignal rows for segment 'nope'") as err:
        enc.prepare(dict(recording, bio_tag="nope"))
    assert err.value.stage == "read"
    bad = tmp_path / "TEMP_bad.csv"
    bad.write_text(f"{START:.0f},{_dt(START)}\n4.000000\n32.0,{_dt(START)},seg1\n")
    with pytest.raises(SampleError, match=r"TEMP_bad.csv: line 2 should be the sample rate in Hz") as err:
        enc.prepare(dict(recording, temp=str(bad)))
    assert err.value.stage == "read"
    with pytest.raises(SampleError, match="no segment selector"):
        enc.prepare(dict(recording, bio_tag="", bio_start=math.nan, bio_end=math.nan))
    # seg3 has 8 EDA/TEMP rows (2 s) and no IBI: too-short segments still compute, IBI is masked
    out = enc.prepare(dict(recording, bio_tag="seg3"))
    assert out["available"].tolist() == [True, True, False]


def test_too_few_rows_mask_the_signal(tmp_path):
    """1 EDA/TEMP row (< min_samples), 2 beats across a missed beat (no successive pair)."""
    n = 200  # 50 s at 4 Hz
    tags = [""] * n
    tags[40] = "one"
    eda = write_kemdy20_signal(tmp_path / "EDA.csv", np.full(n, 1.0), tags)
    temp = write_kemdy20_signal(tmp_path / "TEMP.csv", np.full(n, 33.0), tags)
    ibi = write_kemdy20_ibi(tmp_path / "IBI.csv", [10.0, 11.6], [0.8, 0.8], ["one", "one"])  # 1.6 s apart: a beat missed
    row = {"eda": str(eda), "temp": str(temp), "ibi": str(ibi), "bio_format": "kemdy20", "bio_tag": "one"}
    out = _encoder().prepare(row)
    assert out["available"].tolist() == [False, False, False] and not out["pooled"].any()
    # an EDA file too short to decompose (8 s < eda_min_context_s) masks EDA only
    short = write_kemdy20_signal(tmp_path / "EDA_short.csv", np.linspace(1, 2, 32), ["seg"] * 32)
    temp_short = write_kemdy20_signal(tmp_path / "TEMP_short.csv", np.full(32, 33.0), ["seg"] * 32)
    out = _encoder(signals=["eda", "temp"]).prepare({"eda": str(short), "temp": str(temp_short), "bio_format": "kemdy20", "bio_tag": "seg"})
    assert out["available"].tolist() == [False, True]


def test_lmr_cl_recipe_returns_19_named_finite_values(recording):
    enc = _encoder(recipe="lmr-cl")
    assert len(enc.names) == 19 and enc.names == [
        "eda_mean", "eda_std", "eda_min", "eda_max", "eda_slope", "eda_scr_count", "eda_scr_amp_mean",
        "temp_mean", "temp_std", "temp_min", "temp_max", "temp_slope",
        "ibi_mean_ms", "ibi_sdnn_ms", "ibi_rmssd_ms", "ibi_hr_mean", "ibi_hr_min", "ibi_hr_max", "ibi_pnn50",
    ]
    out = enc.prepare(recording)
    assert out["pooled"].shape == (19,) and np.isfinite(out["pooled"]).all()
    f = _named(enc, out)
    seg = recording["_eda"][100:240]
    assert f["eda_mean"] == pytest.approx(seg.mean(), rel=1e-6)
    assert f["eda_std"] == pytest.approx(seg.std(), rel=1e-5)
    assert f["eda_max"] == pytest.approx(seg.max(), rel=1e-6)
    assert f["temp_slope"] == pytest.approx(0.01, rel=1e-4)
    assert f["ibi_mean_ms"] == pytest.approx(800.0, rel=1e-6)
    assert f["ibi_hr_min"] == pytest.approx(60 / 0.9, rel=1e-6) and f["ibi_hr_max"] == pytest.approx(60 / 0.7, rel=1e-6)
    assert f["ibi_pnn50"] == pytest.approx(100.0)
    assert enc.outputs()[0].attrs["names"] == enc.names


def test_options_validation_key_and_presence():
    with pytest.raises(ValueError, match="lmr-cl"):
        Options(recipe="lmr-cl", signals=["eda", "temp", "ibi", "bvp"])
    with pytest.raises(ValueError, match="unknown signal"):
        Options(signals=["eda", "ecg"])
    keys = {
        _encoder().key(),
        _encoder(recipe="lmr-cl").key(),
        _encoder(signals=["eda", "temp"]).key(),
        _encoder(signals=["temp", "eda", "ibi"]).key(),
    }
    assert len(keys) == 4
    enc = _encoder()
    assert enc.present({"ibi": "x.csv", "eda": ""})
    assert not enc.present({"eda": "", "temp": "", "ibi": "", "bvp": "BVP.csv"})  # bvp not requested
    assert _encoder(signals=["bvp"]).present({"bvp": "BVP.csv"})


def test_thread_pool_prepare_equals_sequential(recording):
    rows = [dict(recording, bio_tag=t) for t in ("seg1", "seg2", "seg3")] * 3
    enc = _encoder()
    sequential = [enc.prepare(r) for r in rows]
    clear_caches()
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(enc.prepare, rows))
    for a, b in zip(sequential, threaded):
        np.testing.assert_array_equal(a["pooled"], b["pooled"])
        np.testing.assert_array_equal(a["available"], b["available"])


# --------------------------------------------------------------------------------------
# real Empatica exports (Stress-Predict S01), read in place
# --------------------------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.skipif(not (REAL / "S01").is_dir(), reason="../shared/data/e4-stress-predict not present")
def test_real_stress_predict_export():
    d = REAL / "S01"
    eda, temp, hr, bvp = (read_signal(d / f"{n}.csv", "e4") for n in ("EDA", "TEMP", "HR", "BVP"))
    ibi = read_ibi(d / "IBI.csv", "e4")
    assert (eda.rate, temp.rate, hr.rate, bvp.rate) == (4.0, 4.0, 1.0, 64.0)
    assert math.isnan(ibi.rate) and len(ibi) > 1000
    assert hr.start == eda.start + 10  # the E4 starts HR 10 s after the other signals
    assert 0 <= eda.values.min() and eda.values.max() < 50  # µS
    assert 20 < np.median(temp.values) < 40  # °C on the wrist
    assert 30 < hr.values.min() and hr.values.max() < 220  # bpm
    assert 0.25 < ibi.values.min() and ibi.values.max() < 2.0  # s
    assert np.all(np.diff(ibi.times) > 0) and bvp.values.std() > 1
    row = {
        "eda": str(d / "EDA.csv"), "temp": str(d / "TEMP.csv"), "ibi": str(d / "IBI.csv"),
        "bvp": str(d / "BVP.csv"), "hr": str(d / "HR.csv"), "bio_format": "e4", "bio_tag": "",
        "bio_start": eda.start + 600.0, "bio_end": eda.start + 660.0,
    }
    enc = _encoder(signals=["eda", "temp", "ibi", "bvp", "hr"])
    out = enc.prepare(row)
    f = _named(enc, out)
    assert out["available"].all() and np.isfinite(out["pooled"]).all()
    assert 40 < f["ibi_hr_mean"] < 150 and 40 < f["hr_mean"] < 150
    assert abs(f["ibi_hr_mean"] - f["hr_mean"]) < 15  # two estimates of one heart rate
    assert 20 < f["temp_mean"] < 40 and f["eda_tonic_mean"] > 0
    lmr = _encoder(recipe="lmr-cl").prepare(row)
    assert np.isfinite(lmr["pooled"]).all() and lmr["available"].all()
