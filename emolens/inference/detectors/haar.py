"""OpenCV's Viola-Jones frontal-face cascade, made real-time.

The frame is downscaled so that the smallest face we look for (``min_face`` px, or
``min_face_ratio`` of the short side if larger) maps onto the cascade's 24 px window: detection
cost falls with the square of the scale. ``min_neighbors`` is raised from OpenCV's 3 to cut
false positives. A ``cv2.CascadeClassifier`` is not thread-safe (concurrent ``detectMultiScale``
calls return wrong boxes or fail), so each thread gets its own.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from emolens.boxes import clip_box, rescale_box
from emolens.errors import ModelError
from emolens.inference.detectors.base import Detection

CASCADE = "haarcascade_frontalface_default.xml"
WINDOW = 24  # the cascade's training window (px)
#: The cascade's square boxes sit higher than YuNet's (side 0.97 of YuNet's, centre 0.04 of a side
#: higher, on the 1,506 muxspace-dev faces both find: benchmarks/bench_crops.py); reported in
#: YuNet's convention, as BlazeFace's are.
BOX_SCALE, BOX_SHIFT = 1.03, 0.045


def _cascade(filename: str) -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + filename
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise ModelError(f"cannot load the Haar cascade {path}: is opencv-python(-headless) 4.x installed?")
    return cascade


class HaarDetector:
    """Frontal faces at least ``min_face`` px wide; scores are the cascade's stage-vote weight squashed to (0, 1)."""

    name = "haar"

    def __init__(self, min_face: int = 40, min_face_ratio: float = 0.06, min_neighbors: int = 6,
                 scale_factor: float = 1.2):
        self.min_face = min_face
        self.min_face_ratio = min_face_ratio
        self.min_neighbors = min_neighbors
        self.scale_factor = scale_factor
        self._local = threading.local()
        self._local.cascade = _cascade(CASCADE)  # fails here, not in a later call, when it cannot load

    @property
    def cascade(self) -> cv2.CascadeClassifier:
        """This thread's cascade (loaded on first use in each thread)."""
        if not hasattr(self._local, "cascade"):
            self._local.cascade = _cascade(CASCADE)
        return self._local.cascade

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces in a uint8 H×W×3 RGB image, best first."""
        h, w = image_rgb.shape[:2]
        smallest = max(self.min_face, self.min_face_ratio * min(h, w))
        scale = min(1.0, WINDOW / smallest)
        gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(gray)
        rects, _, weights = self.cascade.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(WINDOW, WINDOW), outputRejectLevels=True,
        )
        found = []
        for (x, y, bw, bh), weight in zip(rects, np.ravel(weights)):
            box = clip_box(rescale_box((x / scale, y / scale, (x + bw) / scale, (y + bh) / scale), BOX_SCALE, BOX_SHIFT), w, h)
            if box is not None:
                found.append(Detection(box, float(1.0 / (1.0 + np.exp(-weight)))))
        return sorted(found, key=lambda d: -d.score)
