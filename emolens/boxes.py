"""Box geometry shared by detectors, tracking, dataset readers and evaluation.

A box is pixel (x1, y1, x2, y2), x2/y2 exclusive; YOLO labels are normalised (xc, yc, w, h).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Box = tuple[float, float, float, float]


def rescale_box(box: Box, scale: float, shift: float) -> Box:
    """A box scaled by ``scale`` about its centre, the centre then moved down by ``shift`` of the
    scaled height: how a detector whose boxes are drawn differently reports them in the reference
    convention (YuNet's, which the models' crop margins refer to; see docs/inference.md).
    Computed in float64 step for step as the browser's ``rescaleBox`` does."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = (x2 - x1) * scale, (y2 - y1) * scale
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + shift * h
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def clip_box(box: Box, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Round a box to ints inside the image; None when less than 2 px of it is left (or a coordinate
    is not finite: a detector's garbage output)."""
    if not all(math.isfinite(v) for v in box):
        return None
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    return (x1, y1, x2, y2) if x2 - x1 >= 2 and y2 - y1 >= 2 else None


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection-over-union of N×4 and M×4 (x1, y1, x2, y2) boxes (extra columns ignored)."""
    a, b = a[:, None, :4].astype(np.float64), b[None, :, :4].astype(np.float64)
    inter = np.prod(np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None), axis=-1)
    area_a = np.prod(a[..., 2:] - a[..., :2], axis=-1)
    area_b = np.prod(b[..., 2:] - b[..., :2], axis=-1)
    return inter / (area_a + area_b - inter + 1e-9)


def box_iou(a: np.ndarray | Sequence[float], b: np.ndarray | Sequence[float]) -> float:
    """Intersection-over-union of two (x1, y1, x2, y2) boxes."""
    return float(iou_matrix(np.asarray(a)[None], np.asarray(b)[None])[0, 0])


def from_yolo(xc: float, yc: float, w: float, h: float, width: int, height: int) -> Box:
    """A normalised YOLO box (centre x, centre y, width, height) as pixel (x1, y1, x2, y2) in a width×height image."""
    return (xc - w / 2) * width, (yc - h / 2) * height, (xc + w / 2) * width, (yc + h / 2) * height
