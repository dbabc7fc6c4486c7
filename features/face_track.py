"""One face tracked through a video: dlib's HOG face detector + its 68-point shape predictor.

Why dlib: both models ship in PyPI wheels (``dlib-bin`` prebuilt, ``face-recognition-models``
carries ``shape_predictor_68_face_landmarks.dat``), run offline on any CPU, and the 68 points
are the iBUG 300-W scheme OpenFace 2 outputs, so the landmarks match the OpenFace CSV path
point for point. The 68-point model was trained on iBUG 300-W, whose licence excludes
commercial use (see the README).

Per frame:

* **Detection frames** (every ``detect_every``-th frame, and every frame while no face is
  tracked): the HOG detector runs on the frame scaled down to ``detect_max_side`` (it finds faces
  of 80 px and more; ``upsample`` doubles the image for smaller ones). With a face tracked, the
  detection overlapping the tracked box most (IoU >= ``MATCH_IOU``) continues the track; no match
  means the face is lost: the frame has no face. With no face tracked, the most *prominent*
  detection starts a track: largest area times centrality (1 at the image centre, 0 at a
  corner), so in a two-person shot the track follows the main speaker, never a different person
  per frame.
* **Tracked frames** in between: the face box is carried by the previous frame's landmarks (the
  box's offset and size relative to the landmarks' centroid and spread, recorded at the last
  detection), and the shape predictor is fitted in it. The detector confirms the face in a small
  window around that box (twice its size, scaled so the face is 100 px: a fraction of a full
  detection's cost); no face there, or a box that leaves the image by more than half, loses the
  track, so a cut or a face leaving the shot is never filled with made-up landmarks.

``confidence`` is the HOG detector's SVM score (not a probability; faces score about 0..3,
higher = clearer) of the full-frame detection or of the confirming window detection.

Thread safety: a dlib ``object_detector`` keeps mutable scan state, so each thread gets its own
(:func:`thread_detector`); the shape predictor is read-only and loaded once per process.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: a detection continues the track when it overlaps the tracked box at least this much
MATCH_IOU = 0.3
#: a tracked box must keep at least this fraction of its area inside the image
MIN_INSIDE = 0.5
#: tracked frames: the detector checks a window this many times the face box ...
ROI_SCALE = 2.0
#: ... scaled so that the face is this wide (the HOG detector's window is 80 px)
ROI_FACE_PX = 100.0
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"

_LOCK = threading.Lock()
_PREDICTORS: dict[str, Any] = {}
_LOCAL = threading.local()


def import_dlib():
    try:
        import dlib
    except ImportError:
        raise ImportError("face-landmarks needs dlib and its models: pip install 'mer[face]' "
                          "(dlib-bin + face-recognition-models)") from None
    return dlib


def predictor_path() -> Path:
    """The 68-point model inside the installed ``face_recognition_models`` package.

    Located with ``find_spec`` instead of importing the package: its ``__init__`` imports
    ``pkg_resources``, which recent setuptools no longer ship.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face-landmarks needs the 68-point model of face-recognition-models: pip install 'mer[face]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / PREDICTOR_FILE
    if not path.is_file():
        raise ImportError(f"{path}: the 68-point model is missing from the face-recognition-models package")
    return path


def model_identity() -> dict[str, str]:
    """What decides the landmarks besides the options: the dlib version (its detector is built in)
    and the predictor file's sha256 (hashed once per process)."""
    from mer.features.hf_common import _file_sha256

    return {"dlib": import_dlib().__version__, "predictor_sha256": _file_sha256(predictor_path())}


def shape_predictor():
    """The process's shared 68-point predictor (read-only, safe across threads)."""
    path = str(predictor_path())
    with _LOCK:
        if path not in _PREDICTORS:
            _PREDICTORS[path] = import_dlib().shape_predictor(path)
        return _PREDICTORS[path]


def thread_detector():
    """This thread's own HOG face detector (dlib detectors are not thread-safe)."""
    detector = getattr(_LOCAL, "detector", None)
    if detector is None:
        detector = _LOCAL.detector = import_dlib().get_frontal_face_detector()
    return detector


@dataclass(frozen=True)
class TrackerSettings:
    #: run the detector on every k-th frame (1 = every frame) and track in between
    detect_every: int = 1
    #: frames are scaled down to this longer side for detection (landmarks use full resolution)
    detect_max_side: int = 640
    #: times the detector doubles the (scaled) image: 1 finds faces down to ~40 px
    upsample: int = 0
    #: detections scoring below this are ignored (dlib's adjust_threshold)
    min_score: float = 0.0

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.detect_max_side < 80:
            raise ValueError(f"detect_max_side must be >= 80 (the detector's smallest face), got {self.detect_max_side}")
        if not 0 <= self.upsample <= 2:
            raise ValueError(f"upsample must be 0, 1 or 2, got {self.upsample}")


@dataclass
class TrackResult:
    """Per-frame output of one clip; pixel coordinates of the decoded frames."""

    points: np.ndarray      # (T, 68, 2) float32, zeros where no face
    box: np.ndarray         # (T, 4) float32 left, top, right, bottom; zeros where no face
    confidence: np.ndarray  # (T,) float32 detector score; 0 where no face
    detected: np.ndarray    # (T,) bool: the detector ran and found the tracked face on this frame
    valid: np.ndarray       # (T,) bool: a face (detected or tracked) on this frame


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


def prominence(box: np.ndarray, width: int, height: int) -> float:
    """Area times centrality (1 at the image centre, 0 at a corner): how much a face is the subject."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    dist = np.hypot(cx - width / 2, cy - height / 2) / np.hypot(width / 2, height / 2)
    return float((box[2] - box[0]) * (box[3] - box[1]) * max(0.0, 1.0 - dist))


def _spread(points: np.ndarray) -> tuple[np.ndarray, float]:
    centre = points.mean(axis=0)
    return centre, float(np.sqrt(((points - centre) ** 2).sum(axis=1).mean()))


@dataclass
class FaceTracker:
    """Tracks one face through consecutive frames of one clip (create one per clip)."""

    settings: TrackerSettings = field(default_factory=TrackerSettings)

    def __post_init__(self) -> None:
        self._dlib = import_dlib()
        self._predictor = shape_predictor()
        self._detector = thread_detector()
        self._index = 0
        self._box: np.ndarray | None = None  # the tracked face's box on the previous frame
        self._points: np.ndarray | None = None  # its landmarks on the previous frame
        self._score = 0.0
        self._relation: tuple[np.ndarray, float] | None = None  # box centre offset and side, per unit spread

    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) boxes in full-frame pixels and (N,) scores of every face found."""
        height, width = rgb.shape[:2]
        scale = min(1.0, self.settings.detect_max_side / max(height, width))
        image = rgb
        if scale < 1.0:
            from PIL import Image

            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        rects, scores, _ = self._detector.run(image, self.settings.upsample, self.settings.min_score)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float64).reshape(-1, 4)
        return boxes / scale, np.asarray(scores, dtype=np.float64)

    def fit(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """(68, 2) landmarks fitted in ``box``."""
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(rgb, rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def _carried_box(self) -> np.ndarray:
        """This frame's box from the previous frame's landmarks and the recorded relation."""
        assert self._points is not None and self._relation is not None
        centre, spread = _spread(self._points)
        offset, side = self._relation
        c = centre + offset * spread
        half = side * spread / 2
        return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])

    def _inside(self, box: np.ndarray, width: int, height: int) -> bool:
        w = min(box[2], width) - max(box[0], 0)
        h = min(box[3], height) - max(box[1], 0)
        area = (box[2] - box[0]) * (box[3] - box[1])
        return w > 0 and h > 0 and area > 0 and w * h / area >= MIN_INSIDE

    def step(self, rgb: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, float, bool]:
        """(68 landmarks, box, confidence, detected) of the tracked face on the next frame, or Nones."""
        height, width = rgb.shape[:2]
        detect_now = self._box is None or self._index % self.settings.detect_every == 0
        self._index += 1
        if detect_now:
            boxes, scores = self.detect(rgb)
            chosen = None
            if self._box is not None:
                predicted = self._carried_box()
                overlaps = [iou(b, predicted) for b in boxes]
                if overlaps and max(overlaps) >= MATCH_IOU:
                    chosen = int(np.argmax(overlaps))
            elif len(boxes):
                chosen = int(np.argmax([prominence(b, width, height) for b in boxes]))
            if chosen is None:
                self._box = self._points = None
                return None, None, 0.0, False
            box = boxes[chosen]
            points = self.fit(rgb, box)
            centre, spread = _spread(points)
            if spread <= 0:
                self._box = self._points = None
                return None, None, 0.0, False
            box_centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
            self._relation = ((box_centre - centre) / spread, float(((box[2] - box[0]) + (box[3] - box[1])) / 2 / spread))
            self._score = float(scores[chosen])
            self._box, self._points = box, points
            return points, box, self._score, True
        box = self._carried_box()
        score = self.verify(rgb, box) if self._inside(box, width, height) else None
        if score is None:
            self._box = self._points = None
            return None, None, 0.0, False
        points = self.fit(rgb, box)
        self._box, self._points = box, points
        return points, box, score, False

    def verify(self, rgb: np.ndarray, box: np.ndarray) -> float | None:
        """The score of a face the detector finds around ``box`` (overlapping it), or None.

        Runs on a window of ``ROI_SCALE`` times the box, scaled so the face is ``ROI_FACE_PX`` wide:
        a fixed, small image whatever the frame size, so a tracked frame costs a fraction of a
        full detection, and a face that vanished (a cut, a blank frame) is noticed at once.
        """
        from PIL import Image

        height, width = rgb.shape[:2]
        side = max(box[2] - box[0], box[3] - box[1])
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = ROI_SCALE * side / 2
        left, top = int(max(0, cx - half)), int(max(0, cy - half))
        right, bottom = int(min(width, cx + half)), int(min(height, cy + half))
        if right - left < 2 or bottom - top < 2:
            return None
        scale = ROI_FACE_PX / side
        crop = Image.fromarray(np.ascontiguousarray(rgb[top:bottom, left:right]))
        size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
        image = np.asarray(crop.resize(size, Image.BILINEAR))
        rects, scores, _ = self._detector.run(image, 0, self.settings.min_score)
        best = None
        for rect, score in zip(rects, scores):
            found = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()]) / scale + [left, top, left, top]
            if iou(found, box) >= MATCH_IOU and (best is None or score > best):
                best = float(score)
        return best


def track_frames(frames, settings: TrackerSettings) -> TrackResult:
    """Run a fresh :class:`FaceTracker` over an iterable of RGB frames (streamed)."""
    tracker = FaceTracker(settings)
    points, boxes, conf, detected, valid = [], [], [], [], []
    for rgb in frames:
        p, b, c, d = tracker.step(rgb)
        ok = p is not None
        points.append(p if ok else np.zeros((68, 2)))
        boxes.append(b if ok else np.zeros(4))
        conf.append(c)
        detected.append(d)
        valid.append(ok)
    return TrackResult(np.asarray(points, dtype=np.float32).reshape(-1, 68, 2), np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                       np.asarray(conf, dtype=np.float32), np.asarray(detected, dtype=bool), np.asarray(valid, dtype=bool))
