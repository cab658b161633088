"""Face detectors behind one interface: ``create_detector(name).detect(image_rgb) -> [Detection]``.

Every backend's weights ship offline: ``blazeface`` (MediaPipe BlazeFace full-range, converted to
ONNX, the default), ``blazeface-short`` (short-range, faces within ~2 m, fastest) and ``haar``
(OpenCV's frontal-face cascade, tuned for real time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

DEFAULT_DETECTOR = "blazeface"


@dataclass(frozen=True)
class Detection:
    """A face: pixel box (x1, y1, x2, y2) clipped to the image, and a confidence in [0, 1]."""

    box: tuple[int, int, int, int]
    score: float


class Detector(Protocol):
    name: str

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces in a uint8 H×W×3 RGB image, best first."""
        ...


def _blazeface(variant: str) -> Callable[..., Detector]:
    def make(**opts: Any) -> Detector:
        from emolens.inference.detectors.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(variant, **opts)

    return make


def _haar(**opts: Any) -> Detector:
    from emolens.inference.detectors.haar import HaarDetector

    return HaarDetector(**opts)


_REGISTRY: dict[str, Callable[..., Detector]] = {
    "blazeface": _blazeface("full"),
    "blazeface-short": _blazeface("short"),
    "haar": _haar,
}


def list_detectors() -> list[str]:
    """Names accepted by :func:`create_detector` (besides ``default``)."""
    return sorted(_REGISTRY)


def create_detector(name: str = "default", **opts: Any) -> Detector:
    """Build a detector by name; ``opts`` go to its constructor (e.g. ``min_score``, ``min_face``)."""
    key = DEFAULT_DETECTOR if name == "default" else name.strip().lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown face detector {name!r}: choose one of default, {', '.join(list_detectors())}")
    return _REGISTRY[key](**opts)


def clip_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """Round a box to ints inside the image; None when nothing of it is left."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    return (x1, y1, x2, y2) if x2 - x1 >= 2 and y2 - y1 >= 2 else None


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection-over-union of N×4 and M×4 (x1, y1, x2, y2) boxes."""
    a, b = a[:, None, :].astype(np.float64), b[None, :, :].astype(np.float64)
    inter = np.prod(np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None), axis=-1)
    area_a = np.prod(a[..., 2:] - a[..., :2], axis=-1)
    area_b = np.prod(b[..., 2:] - b[..., :2], axis=-1)
    return inter / (area_a + area_b - inter + 1e-9)


def box_iou(a: np.ndarray | tuple, b: np.ndarray | tuple) -> float:
    return float(iou_matrix(np.asarray(a)[None], np.asarray(b)[None])[0, 0])
