"""Video decoding (PyAV): timestamp-based fps resampling, windows, scaling, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from mer.features.base import SampleError  # noqa: E402
from mer.features.video_io import iter_frames, read_frames, scaled_size, video_info  # noqa: E402
from kit.video import grey_frames, write_video  # noqa: E402

#: a variable-frame-rate clip: source frame k (grey level 20k) starts at VFR_TIMES[k] seconds
VFR_TIMES = [0.0, 0.1, 0.15, 0.4, 0.5]


@pytest.fixture(scope="module")
def vfr(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "vfr.mkv", grey_frames(5), fps=10, times=VFR_TIMES, codec="ffv1")


def source_index(rgb: np.ndarray) -> int:
    return int(round(float(rgb.mean()) / 20))


def test_native_frames_keep_their_timestamps(vfr):
    frames = list(iter_frames(vfr))
    assert [f.time for f in frames] == pytest.approx(VFR_TIMES)
    assert [source_index(f.rgb) for f in frames] == [0, 1, 2, 3, 4]
    assert frames[0].rgb.dtype == np.uint8 and frames[0].rgb.shape == (48, 64, 3)


def test_resampling_shows_the_frame_on_screen_at_each_target_time(vfr):
    # targets 0, .1, ..., .5 s: at 0.2 and 0.3 s the frame of 0.15 s is still on screen
    frames = list(iter_frames(vfr, fps=10))
    assert [round(f.time, 6) for f in frames] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert [source_index(f.rgb) for f in frames] == [0, 1, 2, 2, 3, 4]
    assert [f.source_time for f in frames] == pytest.approx([0.0, 0.1, 0.15, 0.15, 0.4, 0.5])
    # downsampling: 4 fps -> targets 0, .25, .5
    assert [source_index(f.rgb) for f in iter_frames(vfr, fps=4)] == [0, 2, 4]


def test_window_start_end(vfr):
    assert [source_index(f.rgb) for f in iter_frames(vfr, start=0.1, end=0.45)] == [1, 2, 3]
    frames = list(iter_frames(vfr, fps=20, start=0.3, end=0.45))
    assert [round(f.time, 6) for f in frames] == [0.3, 0.35, 0.4]
    assert [source_index(f.rgb) for f in frames] == [2, 2, 3]
    times, rgb = read_frames(vfr, fps=20, start=0.3, end=0.45)
    assert times.tolist() == pytest.approx([0.3, 0.35, 0.4]) and rgb.shape == (3, 48, 64, 3)


def test_window_errors_name_the_file(vfr, tmp_path):
    with pytest.raises(SampleError, match="past the end of the video") as err:
        list(iter_frames(vfr, end=3.0))
    assert err.value.stage == "read" and str(vfr) in err.value.message
    with pytest.raises(SampleError, match="no video frame in the window"):
        list(iter_frames(vfr, start=2.0))
    with pytest.raises(SampleError, match="video file not found"):
        list(iter_frames(tmp_path / "absent.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(SampleError, match="cannot open video file") as err:
        list(iter_frames(junk))
    assert err.value.stage == "decode" and str(junk) in err.value.message


def test_audio_only_file_is_a_decode_error(tmp_path):
    from kit.corpora import write_mp4

    path = write_mp4(tmp_path / "a.mp4", np.zeros((1, 4800), np.float32), sr=48000, video=False)
    with pytest.raises(SampleError, match="no video stream"):
        list(iter_frames(path))


def test_scaling_and_info(tmp_path):
    path = write_video(tmp_path / "big.mp4", grey_frames(3, size=(320, 240)), fps=25)
    info = video_info(path)
    assert (info.width, info.height) == (320, 240) and info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(0.12, abs=0.05)
    assert scaled_size(320, 240, 160) == (160, 120) and scaled_size(320, 240, 640) == (320, 240)
    frames = list(iter_frames(path, max_side=160))
    assert len(frames) == 3 and frames[0].rgb.shape == (120, 160, 3)


def test_streaming_decodes_lazily(tmp_path):
    """A generator: the first frame comes before the rest are decoded (closing it early is fine)."""
    path = write_video(tmp_path / "s.mkv", grey_frames(6), fps=10, codec="ffv1")
    gen = iter_frames(path)
    first = next(gen)
    assert source_index(first.rgb) == 0
    gen.close()
