"""Draw recognition results on BGR frames: boxes, "#id emotion 87%" labels, probability bars, FPS.

Labels and probability panels are laid out so that none covers a face or another label or panel:
each goes to the first free spot beside its face, else to the free spot nearest to it (joined to
the face by a thin line); only when the image has no free room at all does it take the spot that
covers least. Every label and panel carries the face's ``face_id``: the index used by the tables,
JSON and CSV. The web page places its labels and panels by the same rule
(:func:`layout_rects`, ported to ``apps/web/static/inpage/layout.mjs`` and checked against it).

Text is drawn with OpenCV's Hershey font, which has printable ASCII only (anything else shows as
``?``): every drawn text is ASCII (:func:`label_text`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from emolens.files import atomic_path

if TYPE_CHECKING:
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
GAP = 3  # px between a face box and its label or panel

Rect = tuple[int, int, int, int]  # x1, y1, x2, y2


@lru_cache(maxsize=1024)  # about 5 MB at most: bar names always hit, labels ("#3 happy 87%") churn
def _text_masks(text: str, scale: float, thickness: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Anti-aliased coverage (uint8 H×W×1, 255 = covered) of ``text``'s dark outline and of its
    fill, and where the text origin lies in them. Rendered once per text: labels and bar names
    repeat from frame to frame, and blending a cached mask costs a fraction of ``cv2.putText``."""
    outer = thickness + 2
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, outer)
    ox, oy = outer, outer + height
    masks = []
    for t in (outer, thickness):
        mask = np.zeros((height + baseline + 2 * outer, width + 2 * outer), np.uint8)
        cv2.putText(mask, text, (ox, oy), FONT, scale, 255, t, cv2.LINE_AA)
        masks.append(mask[:, :, None])
    return masks[0], masks[1], ox, oy


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color: tuple[int, int, int],
          thickness: int = 1) -> None:
    """Text with a dark outline, readable on any background (clipped to the image)."""
    outline, fill, ox, oy = _text_masks(text, scale, thickness)
    x, y = org[0] - ox, org[1] - oy
    h, w = fill.shape[:2]
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, img.shape[1]), min(y + h, img.shape[0])
    if x2 <= x1 or y2 <= y1:
        return
    cut = np.s_[y1 - y:y2 - y, x1 - x:x2 - x]
    region = img[y1:y2, x1:x2].astype(np.float32) * (1 - outline[cut] * np.float32(1 / 255))
    region += (np.asarray(color, np.float32) - region) * (fill[cut] * np.float32(1 / 255))
    img[y1:y2, x1:x2] = region + 0.5  # rounded; coverage keeps it within 0-255


def _overlap_area(rect: Rect, others: np.ndarray) -> np.ndarray:
    """Overlap area of ``rect`` with each of the M×4 ``others``."""
    if not len(others):
        return np.zeros(0)
    w = np.minimum(rect[2], others[:, 2]) - np.maximum(rect[0], others[:, 0])
    h = np.minimum(rect[3], others[:, 3]) - np.maximum(rect[1], others[:, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def place(size: tuple[int, int], near: Rect, preferred: list[tuple[int, int]], occupied: list[Rect],
          image_size: tuple[int, int], step: int) -> Rect:
    """A ``size`` (w, h) rectangle inside the image covering none of ``occupied``.

    Tries the ``preferred`` top-left corners first, then a grid (``step`` px) ordered by distance
    from ``near``; with no free spot anywhere, the in-image spot that covers least. Distances are
    compared as exact integers (twice the offsets, squared), so the page's port ties the same way.
    """
    w, h = size
    img_w, img_h = image_size
    others = np.array(occupied, dtype=np.int64).reshape(-1, 4)
    inside = [(x, y) for x, y in preferred if 0 <= x and 0 <= y and x + w <= img_w and y + h <= img_h]
    for x, y in inside:
        if not _overlap_area((x, y, x + w, y + h), others).any():
            return x, y, x + w, y + h
    xs = np.arange(0, max(1, img_w - w + 1), step, dtype=np.int64)
    ys = np.arange(0, max(1, img_h - h + 1), step, dtype=np.int64)
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    dx, dy = 2 * gx + w - (near[0] + near[2]), 2 * gy + h - (near[1] + near[3])
    order = np.argsort(dx * dx + dy * dy, kind="stable")
    gx, gy = gx[order], gy[order]
    if len(others):
        x1, y1 = gx[:, None], gy[:, None]
        clash = (x1 < others[None, :, 2]) & (others[None, :, 0] < x1 + w) & \
                (y1 < others[None, :, 3]) & (others[None, :, 1] < y1 + h)
        free = np.flatnonzero(~clash.any(axis=1))
    else:
        free = np.arange(len(gx))
    if len(free):
        x, y = int(gx[free[0]]), int(gy[free[0]])
        return x, y, x + w, y + h
    spots = inside or [(int(gx[i]), int(gy[i])) for i in range(min(len(gx), 2000))]
    x, y = min(spots, key=lambda p: (int(_overlap_area((p[0], p[1], p[0] + w, p[1] + h), others).sum()),
                                     abs(p[0] - near[0]) + abs(p[1] - near[1])))
    return x, y, x + w, y + h


def _leader(img: np.ndarray, rect: Rect, box: Rect, color: tuple[int, int, int]) -> None:
    """A thin line from a label or panel placed away from its face to the face box."""
    if rect[0] <= box[2] + GAP + 1 and box[0] <= rect[2] + GAP + 1 and rect[1] <= box[3] + GAP + 1 \
            and box[1] <= rect[3] + GAP + 1:
        return  # touching the box already
    px = min(max((box[0] + box[2]) // 2, rect[0]), rect[2])
    py = min(max((box[1] + box[3]) // 2, rect[1]), rect[3])
    fx = min(max(px, box[0]), box[2])
    fy = min(max(py, box[1]), box[3])
    cv2.line(img, (px, py), (fx, fy), color, 1, cv2.LINE_AA)


def label_text(face: FaceResult) -> str:
    """``#id emotion 87%, age 34`` (without ``#id`` when the face has none, without the age when
    it was not estimated); ASCII only, as the Hershey font draws nothing else."""
    text = f"{face.emotion} {face.confidence:.0%}" + ("" if face.age is None else f", age {face.age:.0f}")
    return text if face.face_id is None else f"#{face.face_id} {text}"


def layout_rects(boxes: list[Rect], label_sizes: list[tuple[int, int]], panel_sizes: list[tuple[int, int]] | None,
                 image_size: tuple[int, int], step: int, pad: int) -> list[tuple[Rect, Rect | None]]:
    """The placement rule: per face box, its label's and (with ``panel_sizes``) its panel's rect.

    Boxes (grown by ``pad``, the box line) are taken first; then, face by face, the label goes
    above the box (left- or right-aligned) or below it, and the panel beside the box (right,
    left, bottom-aligned, below, above), each at the first of those spots that is free, else
    where :func:`place` finds room. Pure geometry: the page runs the same rule on its own text sizes.
    """
    occupied: list[Rect] = [(x1 - pad, y1 - pad, x2 + pad, y2 + pad) for x1, y1, x2, y2 in boxes]
    placed = []
    for i, box in enumerate(boxes):
        x1, y1, x2, y2 = box
        lw, lh = label_sizes[i]
        label = place((lw, lh), box, [(x1, y1 - GAP - lh), (x2 - lw, y1 - GAP - lh), (x1, y2 + GAP)],
                      occupied, image_size, step)
        occupied.append(label)
        panel = None
        if panel_sizes is not None:
            pw, ph = panel_sizes[i]
            top = min(y1, label[1])
            panel = place((pw, ph), box, [(x2 + GAP, top), (x1 - GAP - pw, top), (x2 + GAP, y2 - ph),
                                          (x1 - GAP - pw, y2 - ph), (x1, max(y2, label[3]) + GAP),
                                          (x1, min(y1, label[1]) - GAP - ph)],
                          occupied, image_size, step)
            occupied.append(panel)
        placed.append((label, panel))
    return placed


def layout(faces: list[FaceResult], image_size: tuple[int, int], scale: float, bars: bool = True
           ) -> list[tuple[Rect, Rect | None]]:
    """Per face, where its label and (with ``bars``) its probability panel go: (label, panel) rects.

    None of them covers a face box or another label or panel while the image has room
    (:func:`layout_rects` on the sizes of OpenCV's text at ``scale``).
    """
    thick = max(1, int(round(2 * scale)))
    label_sizes = []
    for face in faces:
        (tw, th), base = cv2.getTextSize(label_text(face), FONT, 0.55 * scale, thick)
        label_sizes.append((tw + 6, th + base + 6))
    row = max(10, int(14 * scale))
    panels = [(int(62 * scale) + int(70 * scale) + 6, row * len(f.probabilities) + 2) for f in faces] if bars else None
    return layout_rects([f.box for f in faces], label_sizes, panels, image_size, max(4, int(8 * scale)), thick)


def draw_bars(img: np.ndarray, face: FaceResult, panel: Rect, scale: float) -> None:
    """The per-class probability bars of ``face`` in the ``panel`` rectangle (darkened first)."""
    left, top, right, bottom = panel
    row = max(10, int(14 * scale))
    label_w, bar_w = int(62 * scale), int(70 * scale)
    region = img[top:bottom, left:right]
    region[:] = (region * 0.45).astype(np.uint8)  # darken for contrast
    for i, (name, p) in enumerate(face.probabilities.items()):
        y = top + i * row
        _text(img, name[:8], (left + 2, y + row - 3), 0.33 * scale, (255, 255, 255))
        cv2.rectangle(img, (left + label_w, y + 2), (left + label_w + int(bar_w * p), y + row - 2),
                      COLORS.get(name, (255, 255, 255)), -1)


def draw_fps(img: np.ndarray, fps: float) -> None:
    """The processing rate in the top-left corner (live windows only; never in saved files)."""
    scale = max(0.6, min(img.shape[:2]) / 480)
    _text(img, f"{fps:.1f} FPS", (8, int(24 * scale)), 0.6 * scale, (255, 255, 255), max(1, int(round(2 * scale))))


def annotate(frame_bgr: np.ndarray, faces: list[FaceResult], bars: bool = True, copy: bool = True) -> np.ndarray:
    """Draw ``faces`` on a BGR frame (a copy unless ``copy=False``) and return it."""
    img = frame_bgr.copy() if copy else frame_bgr
    h, w = img.shape[:2]
    scale = max(0.6, min(h, w) / 480)
    thick = max(1, int(round(2 * scale)))
    for face in faces:
        x1, y1, x2, y2 = face.box
        cv2.rectangle(img, (x1, y1), (x2, y2), COLORS.get(face.emotion, (255, 255, 255)), thick, cv2.LINE_AA)
    for face, (label, panel) in zip(faces, layout(faces, (w, h), scale, bars)):
        color = COLORS.get(face.emotion, (255, 255, 255))
        if panel is not None:
            draw_bars(img, face, panel, scale)
            _leader(img, panel, face.box, color)
        region = img[label[1]:label[3], label[0]:label[2]]
        region[:] = (region * 0.45).astype(np.uint8)
        (_, th), _ = cv2.getTextSize(label_text(face), FONT, 0.55 * scale, thick)
        _text(img, label_text(face), (label[0] + 3, label[1] + 3 + th), 0.55 * scale, color, thick)
        _leader(img, label, face.box, color)
    return img


def save_image(frame_bgr: np.ndarray, path: str | Path) -> Path:
    """Write a BGR image atomically, its format chosen by the suffix (.jpg, .png, ...); OSError when
    it cannot be encoded or written. Encoded in memory, so any file name works (OpenCV's own file
    functions fail on names that are not valid UTF-8)."""
    path = Path(path)
    ok, data = cv2.imencode(path.suffix or ".jpg", frame_bgr)
    if not ok:
        raise OSError(f"cannot encode {path} as {path.suffix or '.jpg'}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.tobytes())
    return path
