"""``face-landmarks``: dlib detection + 68-point fit on raw video, tracked, OpenFace-compatible output.

Synthetic clips (a real face, scikit-image's astronaut, pasted pixel-exact at a known offset per
frame) prove timing and tracking without any corpus; the real clips of ``shared/data/face-video``
(skipped when absent) prove the done-when criteria on real footage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")
pytest.importorskip("dlib")
pytest.importorskip("skimage")

from mer.features.base import SampleError  # noqa: E402
from mer.features.face_landmarks import FaceLandmarksEncoder, Options  # noqa: E402
from mer.features.face_track import FaceTracker, TrackerSettings, iou, prominence  # noqa: E402
from mer.features.landmarks import POINTS  # noqa: E402
from mer.features.registry import build_encoder, options_class  # noqa: E402
from mer.features.video_io import video_info  # noqa: E402
from kit.video import face_image, grey_frames, moving_face_frames, write_video  # noqa: E402

FACE_VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "face-video"
REAL_FACES = ["01-01-07-02-02-01-01_1.mp4", "single_face.mp4", "WolfgangLanger_Pexels.mp4"] + [
    f"1001_DFA_{e}_XX.flv" for e in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD")]
STEP = (3, 2)  # pixels per frame the synthetic face moves (x, y)
N = 12


def encoder(**kwargs) -> FaceLandmarksEncoder:
    enc = build_encoder(options_class("face-landmarks")(**kwargs))
    enc.load(None)
    return enc


@pytest.fixture(scope="module")
def moving(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("face") / "moving.mp4", moving_face_frames(N, STEP), fps=25)


@pytest.mark.parametrize("detect_every", [1, 5])
def test_track_moves_by_the_known_offset(moving, detect_every):
    """Frame k shows the face moved by k * STEP: the landmarks follow within 2 px, detected or tracked."""
    out = encoder(fps=25, detect_every=detect_every).prepare({"video": str(moving)})
    assert out["valid"].all() and len(out["valid"]) == N
    assert out["time"] == pytest.approx(np.arange(N) / 25, abs=1e-4)
    assert out["detected"].tolist() == [k % detect_every == 0 for k in range(N)]
    expected = np.arange(N)[:, None] * np.array(STEP)
    # (the detector's own boxes move in steps of its 8-px HOG cells: the landmarks are what must follow)
    raw = raw_points(moving, detect_every)
    mean_shift = raw.mean(axis=1) - raw[0].mean(axis=0)
    assert np.abs(mean_shift - expected).max() <= 2.0
    assert np.abs(raw - raw[:1] - expected[:, None, :]).mean() <= 1.0


def raw_points(path: Path, detect_every: int) -> np.ndarray:
    """(T, 51, 2) pixel landmarks of the tracker on the clip's frames."""
    from mer.features.video_io import iter_frames

    tracker = FaceTracker(TrackerSettings(detect_every=detect_every))
    return np.stack([tracker.step(f.rgb)[0][list(POINTS)] for f in iter_frames(path, fps=25)])


def test_output_is_the_openface_encoders_format(moving):
    """(T, 51, 2) min-max normalised per clip and axis over the valid frames, like ``landmarks``."""
    enc = encoder(fps=25)
    specs = {s.name: s for s in enc.outputs()}
    assert specs["frames"].shape == (51, 2) and specs["frames"].ragged and specs["valid"].dtype == "bool"
    assert specs["frames"].attrs["points"] == list(range(17, 68))
    out = enc.prepare({"video": str(moving)})
    frames = out["frames"]
    assert frames.shape == (N, 51, 2) and frames.dtype == np.float32
    for axis in (0, 1):
        assert frames[..., axis].min() == pytest.approx(0.0) and frames[..., axis].max() == pytest.approx(1.0)
    raw = raw_points(moving, 5)
    lo, hi = raw[..., 0].min(), raw[..., 0].max()
    assert frames[..., 0] == pytest.approx((raw[..., 0] - lo) / (hi - lo), abs=1e-5)


def test_frames_without_a_face_are_masked_zeros(tmp_path):
    frames = moving_face_frames(8, (2, 0))
    blank = np.full_like(frames[0], 128)
    frames[3] = frames[4] = blank
    path = write_video(tmp_path / "gap.mp4", frames, fps=25)
    out = encoder(fps=25, detect_every=5).prepare({"video": str(path)})
    assert out["valid"].tolist() == [True, True, True, False, False, True, True, True]
    assert not out["frames"][3:5].any() and not out["box"][3:5].any()
    assert (out["confidence"][out["valid"]] > 0).all()


def test_no_face_clip_is_a_recorded_failure(tmp_path):
    path = write_video(tmp_path / "grey.mp4", grey_frames(4, size=(160, 120)), fps=25)
    with pytest.raises(SampleError, match="no face found in any of 4 frames") as err:
        encoder(fps=25).prepare({"video": str(path)})
    assert err.value.stage == "features" and str(path) in err.value.message


def test_keeps_the_central_face_not_a_different_person_per_frame(tmp_path):
    """Two faces: the centred one moving, another one still at the edge; the track stays on the centred one."""
    face = face_image()
    frames = moving_face_frames(6, (2, 0), start=(200, 40), size=(640, 300), extra=[(face, (0, 80))])
    path = write_video(tmp_path / "two.mp4", frames, fps=25)
    tracker = FaceTracker(TrackerSettings(detect_every=1))
    boxes, _ = tracker.detect(frames[0])
    assert len(boxes) == 2  # both faces are found ...
    out = encoder(fps=25, detect_every=2).prepare({"video": str(path)})
    centres = (out["box"][:, 0] + out["box"][:, 2]) / 2
    assert out["valid"].all() and (centres > 250).all()  # ... and every frame is the centred face
    assert np.diff(centres) == pytest.approx([2.0] * 5, abs=2.0)


def test_selection_and_overlap_helpers():
    assert iou(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10])) == pytest.approx(50 / 150)
    assert iou(np.array([0, 0, 10, 10]), np.array([20, 20, 30, 30])) == 0.0
    centred, corner = np.array([40, 40, 60, 60]), np.array([0, 0, 24, 24])
    assert prominence(centred, 100, 100) == pytest.approx(400.0)
    assert prominence(corner, 100, 100) < prominence(centred, 100, 100)


def test_key_covers_settings_and_options_validate():
    keys = {encoder(fps=f, detect_every=k).key() for f in (25, 30) for k in (1, 5)}
    assert len(keys) == 4
    with pytest.raises(ValueError, match="detect_every"):
        Options(detect_every=0)
    with pytest.raises(ValueError, match="fps"):
        Options(fps=-1)


@pytest.mark.realdata
@pytest.mark.skipif(not FACE_VIDEO.is_dir(), reason="shared/data/face-video not present")
@pytest.mark.parametrize("name", REAL_FACES)
def test_real_clips_landmarks_found_inside_box_in_anatomical_order(name):
    enc = encoder(fps=15)  # every other frame, at most 4 s: little CPU, the same criteria
    out = enc.prepare({"video": str(FACE_VIDEO / name), "end": min(4.0, video_info(FACE_VIDEO / name).duration)})
    valid = out["valid"]
    assert valid.mean() >= 0.95
    tracker_points = raw_points_real(FACE_VIDEO / name)
    pts, box = tracker_points[valid], out["box"][valid]
    # inside the face box (a margin of 10 % of its size: eyebrows touch the detector's top edge)
    margin = 0.1 * (box[:, 2] - box[:, 0])[:, None]
    inside = ((pts[..., 0] >= box[:, None, 0] - margin) & (pts[..., 0] <= box[:, None, 2] + margin)
              & (pts[..., 1] >= box[:, None, 1] - margin) & (pts[..., 1] <= box[:, None, 3] + margin))
    assert inside.all()
    frames = out["frames"][valid]
    y = frames[..., 1]
    node = {p: i for i, p in enumerate(POINTS)}
    eyes = y[:, [node[p] for p in range(36, 48)]].mean(axis=1)
    nose = y[:, [node[p] for p in range(31, 36)]].mean(axis=1)
    mouth = y[:, [node[p] for p in range(48, 68)]].mean(axis=1)
    assert (eyes < nose).all() and (nose < mouth).all()
    x = frames[..., 0]
    # point 36 (outer corner of the eye on the image's left) is left of 45 (the other outer corner)
    assert (x[:, node[36]] < x[:, node[45]]).all() and (x[:, node[17]] < x[:, node[26]]).all()


def raw_points_real(path: Path) -> np.ndarray:
    from mer.features.video_io import iter_frames

    tracker = FaceTracker(TrackerSettings(detect_every=5))
    out = []
    for frame in iter_frames(path, fps=15, end=min(4.0, video_info(path).duration)):
        points = tracker.step(frame.rgb)[0]
        out.append(np.zeros((51, 2)) if points is None else points[list(POINTS)])
    return np.stack(out)


@pytest.mark.realdata
@pytest.mark.skipif(not FACE_VIDEO.is_dir(), reason="shared/data/face-video not present")
def test_real_cartoon_is_a_no_face_failure():
    with pytest.raises(SampleError, match="no face found"):
        encoder(fps=10).prepare({"video": str(FACE_VIDEO / "no_face.mp4")})
