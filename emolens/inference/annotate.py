"""Draw recognition results on BGR frames: boxes, "emotion 87%" labels, probability bars, FPS."""

from __future__ import annotations

import cv2
import numpy as np

from emolens.inference.results import FaceResult

#: BGR colour per canonical emotion.
COLORS: dict[str, tuple[int, int, int]] = {
    "neutral": (200, 200, 200),
    "happy": (60, 200, 60),
    "sad": (200, 120, 40),
    "surprise": (0, 215, 255),
    "fear": (180, 60, 160),
    "disgust": (40, 140, 100),
    "anger": (40, 40, 230),
    "contempt": (120, 80, 200),
}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int],
          thickness: int = 1) -> None:
    """Text with a dark outline, readable on any background."""
    cv2.putText(img, text, org, FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, color, thickness, cv2.LINE_AA)


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def draw_bars(img: np.ndarray, face: FaceResult, scale: float, occupied: list[tuple[int, int, int, int]]) -> None:
    """Per-class probability bars beside the face box: right, left, below or above, whichever first
    fits in the image without covering another face or panel (``occupied``, updated)."""
    x1, y1, x2, y2 = face.box
    row = max(10, int(14 * scale))
    label_w, bar_w = int(62 * scale), int(70 * scale)
    pw, ph = label_w + bar_w + 6, row * len(face.probabilities) + 2
    h, w = img.shape[:2]
    spots = [(x2 + 4, y1), (x1 - 4 - pw, y1), (x1, y2 + 4), (x1, y1 - 4 - ph)]
    inside = [(x, y) for x, y in spots if x >= 0 and y >= 0 and x + pw <= w and y + ph <= h]
    free = [(x, y) for x, y in inside if not any(_overlaps((x, y, x + pw, y + ph), o) for o in occupied)]
    left, top = (free or inside or [(max(0, min(x2 + 4, w - pw)), max(0, min(y1, h - ph)))])[0]
    occupied.append((left, top, left + pw, top + ph))
    panel = img[top:top + ph, left:left + pw]
    panel[:] = (panel * 0.45).astype(np.uint8)  # darken for contrast
    for i, (name, p) in enumerate(face.probabilities.items()):
        y = top + i * row
        _text(img, name[:8], (left + 2, y + row - 3), 0.33 * scale, (255, 255, 255))
        cv2.rectangle(img, (left + label_w, y + 2), (left + label_w + int(bar_w * p), y + row - 2),
                      COLORS.get(name, (255, 255, 255)), -1)


def annotate(frame_bgr: np.ndarray, faces: list[FaceResult], fps: float | None = None, bars: bool = True,
             copy: bool = True) -> np.ndarray:
    """Draw ``faces`` on a BGR frame (a copy unless ``copy=False``) and return it."""
    img = frame_bgr.copy() if copy else frame_bgr
    scale = max(0.6, min(img.shape[:2]) / 480)
    thick = max(1, int(round(2 * scale)))
    if bars:
        occupied = [f.box for f in faces]
        for face in faces:
            draw_bars(img, face, scale, occupied)
    for face in faces:
        x1, y1, x2, y2 = face.box
        color = COLORS.get(face.emotion, (255, 255, 255))
        cv2.rectangle(img, (x1, y1), (x2, y2), color, thick, cv2.LINE_AA)
        label = f"{face.emotion} {face.confidence:.0%}"
        if face.face_id is not None:
            label = f"#{face.face_id} {label}"
        _text(img, label, (x1, max(int(16 * scale), y1 - 6)), 0.55 * scale, color, thick)
    if fps is not None:
        _text(img, f"{fps:.1f} FPS", (8, int(24 * scale)), 0.6 * scale, (255, 255, 255), thick)
    return img
