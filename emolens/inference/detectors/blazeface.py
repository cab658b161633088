"""MediaPipe BlazeFace (Apache-2.0) on ONNX Runtime: letterbox, SSD anchors, box decoding, weighted NMS.

The models and their options (input size, anchor strides, score threshold) come from
``assets/blazeface_{full,short}.onnx``, made by ``scripts/convert_blazeface.py``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from emolens.boxes import box_iou, clip_box, iou_matrix, rescale_box
from emolens.errors import ConfigError, ModelError
from emolens.inference.detectors.base import BLAZEFACE_LANDMARKS, Detection
from emolens.inference.runtime import create_session

ASSETS = Path(__file__).resolve().parent / "assets"


def ssd_anchors(options: dict) -> np.ndarray:
    """Anchor centres (A×2, normalised x, y) as MediaPipe's SsdAnchorsCalculator lays them out.

    Consecutive layers with the same stride share one grid; each layer adds one anchor per cell,
    plus one for the interpolated scale when ``interpolated_scale_aspect_ratio`` > 0 (with
    ``fixed_anchor_size`` every anchor is 1×1, so only centres matter).
    """
    strides = options["strides"]
    per_layer = 1 + (options["interpolated_scale_aspect_ratio"] > 0)
    offset = options["anchor_offset"]
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        same = 0
        while layer < len(strides) and strides[layer] == stride:
            same += 1
            layer += 1
        rows = -(-options["input_height"] // stride)
        cols = -(-options["input_width"] // stride)
        ys, xs = np.mgrid[0:rows, 0:cols]
        grid = np.stack([(xs + offset) / cols, (ys + offset) / rows], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, same * per_layer, axis=1).reshape(-1, 2))
    return np.concatenate(centres).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED non-maximum suppression: overlapping boxes are blended by score.

    ``boxes`` is N×D: the first 4 columns (x1, y1, x2, y2) decide overlap, every column (box and
    any keypoints after it) is blended.
    """
    order = np.argsort(-scores)
    kept_boxes, kept_scores = [], []
    while order.size:
        top = order[0]
        iou = iou_matrix(boxes[top:top + 1], boxes[order])[0]
        members = order[iou > iou_threshold]
        w = scores[members, None]
        kept_boxes.append((boxes[members] * w).sum(axis=0) / w.sum())
        kept_scores.append(scores[top])
        order = order[iou <= iou_threshold]
    return np.array(kept_boxes, dtype=np.float32).reshape(-1, boxes.shape[1]), np.array(kept_scores, dtype=np.float32)


@cache
def _load(variant: str):
    path = ASSETS / f"blazeface_{variant}.onnx"
    if not path.is_file():
        raise ModelError(f"BlazeFace model {path} is missing; rebuild it with scripts/convert_blazeface.py")
    # One thread: a 192×192 pass is too small to gain from a second (measured 2.2 ms either way,
    # while waking idle workers costs more), and the other core stays free for video decoding.
    session = create_session(path, threads=1)
    options = json.loads(session.get_modelmeta().custom_metadata_map["blazeface"])
    return session, options, ssd_anchors(options)


#: First-pass score at which a face is accepted outright. MediaPipe uses 0.6 (full) / 0.5 (short),
#: but both score the no-face cartoon's lettering up to ~0.7 / 0.61, so they are raised and weaker
#: candidates must pass the close-up re-check (``VERIFY_SCORE``) instead.
ACCEPT_SCORE = {"full": 0.75, "short": 0.65}
VERIFY_SCORE = {"full": 0.7, "short": 0.8}
#: BlazeFace's boxes are smaller than YuNet's and sit lower (full range: median side 0.90 of
#: YuNet's, centre 0.02 of a side lower, on the 1,182 muxspace-dev faces both find; short range:
#: 0.87 and 0.07; benchmarks/bench_crops.py); they are reported scaled and moved into YuNet's
#: convention, so a model's crop margin means the same crop whichever detector found the face.
BOX_SCALE = {"full": 1.11, "short": 1.15}
BOX_SHIFT = {"full": -0.02, "short": -0.075}


class BlazeFaceDetector:
    """BlazeFace ``full`` range (faces up to ~5 m) or ``short`` range (within ~2 m, fastest).

    Two stages: the whole frame is letterboxed into the model input; a candidate scoring between
    ``candidate_score`` and ``min_score`` (at most ``max_verify`` per frame) is re-checked on a
    close-up ``context``× its size, where a real face scores high (40 px faces in 640×480:
    0.8-0.94) and look-alikes do not (≤ 0.55); it is kept when the close-up scores ≥ ``verify_score``.
    """

    def __init__(self, variant: str = "full", min_score: float | None = None, candidate_score: float = 0.25,
                 verify_score: float | None = None, max_verify: int = 4, context: float = 3.0,
                 iou_threshold: float | None = None):
        if variant not in ("full", "short"):
            raise ConfigError(f"BlazeFace variant must be 'full' or 'short', got {variant!r}")
        self.name = "blazeface" if variant == "full" else "blazeface-short"
        self.session, self.options, self.anchors = _load(variant)
        self.size = int(self.options["input_width"])
        self.min_score = ACCEPT_SCORE[variant] if min_score is None else float(min_score)
        self.box_calibration = BOX_SCALE[variant], BOX_SHIFT[variant]
        self.candidate_score = min(candidate_score, self.min_score)
        self.verify_score = VERIFY_SCORE[variant] if verify_score is None else float(verify_score)
        self.max_verify = max_verify
        self.context = context
        default_iou = self.options["min_suppression_threshold"]
        self.iou_threshold = float(default_iou if iou_threshold is None else iou_threshold)
        if len(self.anchors) != self.options["num_boxes"]:
            raise ModelError(f"{len(self.anchors)} anchors generated, the model has {self.options['num_boxes']}")

    def letterbox(self, image_rgb: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Fit the image into the square model input (aspect kept, centred, black borders).

        Downscaling is area averaging, first in exact halves while the target is at most half
        the size (OpenCV's fast integer path: 0.6 ms instead of 1.4 ms for a 640×480 frame, with
        the same anti-aliasing), then the rest."""
        h, w = image_rgb.shape[:2]
        scale = self.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        image = image_rgb
        while image.shape[1] % 2 == 0 and image.shape[0] % 2 == 0 and 2 * nw <= image.shape[1] and 2 * nh <= image.shape[0]:
            image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas = np.zeros((self.size, self.size, 3), np.uint8)
        px, py = (self.size - nw) // 2, (self.size - nh) // 2
        canvas[py:py + nh, px:px + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
        return canvas, scale, px, py

    def run(self, image_rgb: np.ndarray, min_score: float) -> tuple[np.ndarray, np.ndarray]:
        """One model pass after weighted NMS, best first: N×16 float rows in input pixels (box
        x1, y1, x2, y2, then the 6 keypoints' x, y in :data:`BLAZEFACE_LANDMARKS` order) and N scores."""
        canvas, scale, px, py = self.letterbox(image_rgb)
        x = canvas.astype(np.float32)[None] * (2.0 / 255.0) - 1.0
        regressors, logits = self.session.run(None, {"input": x})
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[0, :, 0].astype(np.float64), -100.0, 100.0)))
        hit = scores >= min_score
        if not hit.any():
            return np.zeros((0, 16), np.float32), np.zeros(0, np.float32)
        raw, anchors, scores = regressors[0, hit], self.anchors[hit], scores[hit].astype(np.float32)
        o = self.options
        cx = raw[:, 0] / o["x_scale"] + anchors[:, 0]
        cy = raw[:, 1] / o["y_scale"] + anchors[:, 1]
        half_w, half_h = raw[:, 2] / o["w_scale"] / 2, raw[:, 3] / o["h_scale"] / 2
        keypoints = raw[:, 4:16].reshape(-1, 6, 2) / np.array([o["x_scale"], o["y_scale"]]) + anchors[:, None, :]
        rows = np.concatenate([np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1),
                               keypoints.reshape(-1, 12)], axis=1)
        rows, scores = weighted_nms(rows, scores, self.iou_threshold)
        # canvas-normalised coordinates -> input pixels
        return (rows * self.size - np.tile(np.array([px, py], np.float32), 8)) / scale, scores

    def verify(self, image_rgb: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Re-detect on a close-up around ``box``; the matching face (row as in :meth:`run`, in image
        pixels, and score) or None."""
        h, w = image_rgb.shape[:2]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = max(box[2] - box[0], box[3] - box[1]) * self.context / 2
        x1, y1 = int(max(0, cx - half)), int(max(0, cy - half))
        x2, y2 = int(min(w, cx + half)), int(min(h, cy + half))
        if x2 - x1 < 4 or y2 - y1 < 4:
            return None
        boxes, scores = self.run(image_rgb[y1:y2, x1:x2], self.verify_score)
        boxes = boxes + np.tile(np.array([x1, y1], np.float32), 8)
        size = max(box[2] - box[0], 1.0)
        for b, score in zip(boxes, scores):
            if abs((b[0] + b[2]) / 2 - cx) < size / 2 and abs((b[1] + b[3]) / 2 - cy) < size / 2:
                return b, float(score)
        return None

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces in a uint8 H×W×3 RGB image, best first, with 6 keypoints each."""
        rows, scores = self.run(image_rgb, self.candidate_score)
        sure = scores >= self.min_score
        kept = [(r, float(s)) for r, s in zip(rows[sure], scores[sure])]
        for r in rows[~sure][: self.max_verify]:
            found = self.verify(image_rgb, r)
            if found is not None and not any(box_iou(found[0][:4], k[0][:4]) > self.iou_threshold for k in kept):
                kept.append(found)
        h, w = image_rgb.shape[:2]
        detections = []
        for row, score in sorted(kept, key=lambda k: -k[1]):
            clipped = clip_box(rescale_box(row[:4], *self.box_calibration), w, h)
            if clipped is not None:
                detections.append(Detection(clipped, score, row[4:].reshape(6, 2).copy(), BLAZEFACE_LANDMARKS))
        return detections
