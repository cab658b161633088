"""A second look for the faces a photo detector misses: small ones, and ones cut by the image's edge.

The first pass sees the whole photo shrunk to the detector's input size, where a face a few
percent of the photo wide is a handful of pixels; a face cut by the edge shows too little of
itself to be recognised as one. The second pass mirrors a strip of the photo past every edge
(a face cut near its middle becomes whole again: faces are about symmetric) and looks at the padded
photo in ``grid`` × ``grid`` overlapping tiles (one, for a photo about the detector's input size),
each enlarged to the detector's input size (up to ``max_zoom``×). A face it finds counts when its score reaches ``min_score`` (the first pass's),
at least ``min_inside`` of its box lies in the photo (a face cut by a corner needs 0.9), and it
is not a face the first pass (or a better tile) already found. Measured in ``benchmarks/bench_detectors.py``: no false face on the
cartoon's frames or the development close-ups, where what it adds are the real faces of people cut
by the edge behind the subject; about three times the first pass's time (photos only: streams keep
their fast detector).
"""

from __future__ import annotations

import cv2
import numpy as np

from emolens.boxes import box_iou, clip_box
from emolens.errors import ConfigError
from emolens.inference.detectors.base import Detection
from emolens.inference.detectors.yunet import YuNetDetector

#: The score a face cut by one of the photo's corners needs (see :meth:`TiledDetector._back`).
CORNER_SCORE = 0.9


def _same_face(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Overlapping boxes, or one's centre inside the other: the same face seen twice."""
    def centre_in(p: tuple[int, int, int, int], q: tuple[int, int, int, int]) -> bool:
        return q[0] <= (p[0] + p[2]) / 2 <= q[2] and q[1] <= (p[1] + p[3]) / 2 <= q[3]

    return box_iou(a, b) > 0.2 or centre_in(a, b) or centre_in(b, a)


class TiledDetector:
    """YuNet on the whole photo, then the second look described in the module docstring."""

    def __init__(self, grid: int = 2, pad: float = 0.25, max_zoom: float = 2.0, min_score: float = 0.8,
                 min_inside: float = 0.35, max_side: int = 640):
        if grid < 1 or not 0 <= pad <= 1 or max_zoom < 1 or not 0 < min_score <= 1 or not 0 < min_inside <= 1:
            raise ConfigError(f"tiled detection needs grid >= 1, 0 <= pad <= 1, max_zoom >= 1, 0 < min_score <= 1 and "
                              f"0 < min_inside <= 1, got {grid}, {pad}, {max_zoom}, {min_score}, {min_inside}")
        self.inner = YuNetDetector(max_side=max_side)
        self.landmark_names = self.inner.landmark_names
        self.grid, self.pad, self.max_zoom = int(grid), float(pad), float(max_zoom)
        self.min_score, self.min_inside = float(min_score), float(min_inside)
        self.name = "yunet-tiled"

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces in a uint8 H×W×3 RGB image: the first pass's, best first, then the second look's."""
        found = self.inner.detect(image_rgb)
        return found + self.second_look(image_rgb, found)

    def _tiles(self, h: int, w: int) -> list[tuple[int, int, int, int]]:
        """(x1, y1, x2, y2) of n² tiles overlapping by a tenth of a tile, covering h × w: n = ``grid``,
        or fewer for a photo hardly larger than the detector's input (one tile: the padded photo)."""
        n = max(1, min(self.grid, round(max(h, w) / self.inner.max_side)))

        def spans(length: int) -> list[tuple[int, int]]:
            size = min(length, int(np.ceil(length / (n - 0.1 * (n - 1)))))
            starts = np.linspace(0, length - size, n).round().astype(int) if n > 1 else [0]
            return [(int(s), int(s) + size) for s in dict.fromkeys(starts)]

        return [(x1, y1, x2, y2) for y1, y2 in spans(h) for x1, x2 in spans(w)]

    def second_look(self, image_rgb: np.ndarray, found: list[Detection]) -> list[Detection]:
        """Faces the first pass (``found``) missed, from the mirrored, tiled, enlarged photo."""
        h, w = image_rgb.shape[:2]
        p = int(round(self.pad * min(h, w)))
        padded = cv2.copyMakeBorder(image_rgb, p, p, p, p, cv2.BORDER_REFLECT_101) if p else image_rgb
        candidates = []
        for x1, y1, x2, y2 in self._tiles(*padded.shape[:2]):
            tile = padded[y1:y2, x1:x2]
            zoom = min(self.max_zoom, self.inner.max_side / max(tile.shape[:2]))
            if zoom > 1:
                tile = cv2.resize(tile, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
            zoom = max(zoom, 1.0)
            for d in self.inner.detect(tile):
                if d.score >= self.min_score:
                    candidates.append(self._back(d, zoom, x1 - p, y1 - p, w, h))
        kept: list[Detection] = []
        for d in sorted((c for c in candidates if c is not None), key=lambda c: -c.score):
            if not any(_same_face(d.box, other.box) for other in [*found, *kept]):
                kept.append(d)
        return kept

    def _back(self, d: Detection, zoom: float, dx: int, dy: int, w: int, h: int) -> Detection | None:
        """``d`` from tile pixels to photo pixels; None when less than ``min_inside`` of it is in the photo."""
        x1, y1, x2, y2 = (d.box[0] / zoom + dx, d.box[1] / zoom + dy, d.box[2] / zoom + dx, d.box[3] / zoom + dy)
        box = clip_box((x1, y1, x2, y2), w, h)
        if box is None or (box[2] - box[0]) * (box[3] - box[1]) < self.min_inside * (x2 - x1) * (y2 - y1):
            return None
        # Mirrored past two edges, a corner is four-fold symmetric, which looks face-like easily:
        # a face cut by a corner needs the score of a sure one.
        corner = ((box[0] == 0) != (box[2] == w)) and ((box[1] == 0) != (box[3] == h))
        if corner and d.score < CORNER_SCORE:
            return None
        landmarks = None if d.landmarks is None else (d.landmarks / zoom + np.float32([dx, dy])).astype(np.float32)
        return Detection(box, d.score, landmarks, d.landmark_names)
