"""One stream's per-frame recognition: detection every k frames, tracking, smoothing.

Every stream goes through :class:`StreamAnalyzer`: video files, cameras and stream URLs
(:func:`emolens.inference.video.analyze_video`) and the web's live WebSocket. The
:class:`~emolens.inference.recognizer.Recognizer` it wraps holds the models only; the stream's
state (frame count, the last faces, the tracker) lives here, one analyzer per stream.
"""

from __future__ import annotations

import cv2
import numpy as np

from emolens.errors import ConfigError
from emolens.images import Color
from emolens.inference.detectors import Detection
from emolens.inference.recognizer import Recognizer
from emolens.inference.results import FaceResult
from emolens.inference.tracking import DEFAULT_SMOOTHING, FaceTracker


def check_detect_every(value: int) -> int:
    """``value`` if it is a usable detection interval (at least 1), else ValueError."""
    if value < 1:
        raise ConfigError(f"detect_every must be at least 1, got {value}")
    return int(value)


class StreamAnalyzer:
    """Per-frame recognition for one stream: detection every ``detect_every`` frames (in between,
    the last boxes are re-classified on the new frame), stable ids, ``smoothing`` (0 = off)."""

    def __init__(self, recognizer: Recognizer, detect_every: int = 1, smoothing: float = DEFAULT_SMOOTHING):
        self.recognizer = recognizer
        self.detect_every = check_detect_every(detect_every)
        self.tracker = FaceTracker(smoothing=smoothing)
        self._count = 0
        self._last: list[FaceResult] = []

    def process(self, frame: np.ndarray, color: Color = "bgr") -> list[FaceResult]:
        """Faces in one uint8 frame (BGR, as OpenCV reads it, unless ``color="rgb"``), with
        stable ``face_id`` and smoothed probabilities (and ages)."""
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if color == "bgr" else frame
        return self.update(rgb, self.detect(rgb))

    def detect(self, frame_rgb: np.ndarray) -> list[Detection] | None:
        """The first half of :meth:`process`: this RGB frame's detections, or None on frames that
        reuse the last boxes. Called once per frame in order, it may run ahead of :meth:`update` on
        another thread (it touches none of the state :meth:`update` keeps)."""
        due = self._count % self.detect_every == 0
        self._count += 1
        return self.recognizer.detect(frame_rgb, stream=True) if due else None

    def update(self, frame_rgb: np.ndarray, detections: list[Detection] | None) -> list[FaceResult]:
        """The second half of :meth:`process`: classify the frame's ``detections`` (None: the last
        faces' boxes), then track and smooth."""
        if detections is None:
            detections = [Detection(f.box, f.score, f.landmarks, f.landmark_names) for f in self._last]
        self._last = self.tracker.update(self.recognizer.classify(frame_rgb, detections))
        return self._last
