"""Stable face ids across frames (greedy IoU matching, centroid fallback) and per-face smoothing.

Smoothing is an exponential moving average of each track's probabilities (and age, when estimated):
``p ← smoothing·p_previous + (1 − smoothing)·p_new``; ``smoothing=0`` turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from emolens.boxes import iou_matrix
from emolens.errors import ConfigError
from emolens.inference.results import FaceResult

#: Default smoothing for video and live streams (still images are never smoothed).
DEFAULT_SMOOTHING = 0.6


def check_smoothing(value: float) -> float:
    """``value`` when it is a valid smoothing factor in [0, 1); ValueError otherwise."""
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"smoothing must be in [0, 1) (0 turns it off), got {value}")
    return float(value)


@dataclass
class Track:
    face_id: int
    box: tuple[int, int, int, int]
    probabilities: dict[str, float]
    missed: int = 0
    age: float | None = None


class FaceTracker:
    """Give faces the same ``face_id`` from frame to frame and smooth their probabilities."""

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING, iou_threshold: float = 0.3,
                 max_distance: float = 0.75, max_missed: int = 15):
        self.smoothing = check_smoothing(smoothing)
        self.iou_threshold = iou_threshold
        self.max_distance = max_distance  # centroid fallback, in face widths
        self.max_missed = max_missed  # frames a face may go unseen before its id is retired
        self.tracks: list[Track] = []
        self._next_id = 0

    def update(self, faces: list[FaceResult]) -> list[FaceResult]:
        """Assign ids to this frame's faces (returned as new, smoothed records, same order)."""
        pairs = self._match([f.box for f in faces])
        out: list[FaceResult] = []
        for i, face in enumerate(faces):
            track = pairs.get(i)
            if track is None:
                track = Track(self._next_id, face.box, dict(face.probabilities), age=face.age)
                self._next_id += 1
                self.tracks.append(track)
            else:
                s = self.smoothing
                track.probabilities = {k: s * track.probabilities.get(k, v) + (1 - s) * v
                                       for k, v in face.probabilities.items()}
                if face.age is not None:
                    track.age = face.age if track.age is None else s * track.age + (1 - s) * face.age
                track.box, track.missed = face.box, 0
            out.append(replace(face, probabilities=dict(track.probabilities), face_id=track.face_id,
                               age=None if face.age is None else track.age))
        seen = {id(t) for t in pairs.values()}
        for t in self.tracks:
            if id(t) not in seen:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return out

    def _match(self, boxes: list[tuple[int, int, int, int]]) -> dict[int, Track]:
        if not boxes or not self.tracks:
            return {}
        new = np.array(boxes, dtype=np.float64)
        old = np.array([t.box for t in self.tracks], dtype=np.float64)
        iou = iou_matrix(new, old)
        centre_new = (new[:, :2] + new[:, 2:]) / 2
        centre_old = (old[:, :2] + old[:, 2:]) / 2
        width = np.maximum(old[:, 2] - old[:, 0], 1.0)
        dist = np.linalg.norm(centre_new[:, None] - centre_old[None], axis=-1) / width[None]
        # IoU first; the centroid fallback catches fast motion (below any IoU) with a lower rank.
        score = np.where(iou >= self.iou_threshold, 1.0 + iou, np.where(dist <= self.max_distance, 1.0 - dist, -1.0))
        pairs: dict[int, Track] = {}
        while True:
            i, j = np.unravel_index(np.argmax(score), score.shape)
            if score[i, j] < 0:
                return pairs
            pairs[int(i)] = self.tracks[int(j)]
            score[i, :] = -1.0
            score[:, j] = -1.0
