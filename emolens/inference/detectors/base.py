"""What every face detector returns and the interface it implements (the backends import these,
never the ``detectors`` package that registers them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

#: Landmark order of each detector. "right"/"left" are the person's own sides: for a face looking
#: at the camera the right eye is on the image's left.
BLAZEFACE_LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear", "left_ear")
YUNET_LANDMARKS = ("right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left")


@dataclass(frozen=True)
class Detection:
    """A face: pixel box (x1, y1, x2, y2) clipped to the image, a confidence in [0, 1], and, when
    the detector gives them, landmarks: a K×2 float32 array of pixel (x, y) named by
    ``landmark_names`` (points may lie slightly outside the image)."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray | None = field(default=None, compare=False, repr=False)
    landmark_names: tuple[str, ...] = ()

    @property
    def area(self) -> int:
        """The box's area in pixels (the largest face is what single-face tools keep)."""
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    @property
    def eyes(self) -> np.ndarray | None:
        """2×2 pixel (x, y) of the person's right then left eye, or None without eye landmarks."""
        if self.landmarks is None or not {"right_eye", "left_eye"} <= set(self.landmark_names):
            return None
        return self.landmarks[[self.landmark_names.index("right_eye"), self.landmark_names.index("left_eye")]]


class Detector(Protocol):
    name: str

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces in a uint8 H×W×3 RGB image, best first."""
        ...
