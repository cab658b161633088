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

from emolens.inference.detectors import Detection, clip_box
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
    """MediaPipe's WEIGHTED non-maximum suppression: overlapping boxes are blended by score."""
    order = np.argsort(-scores)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept_boxes, kept_scores = [], []
    while order.size:
        top = order[0]
        xy1 = np.maximum(boxes[top, :2], boxes[order, :2])
        xy2 = np.minimum(boxes[top, 2:], boxes[order, 2:])
        inter = np.prod(np.clip(xy2 - xy1, 0, None), axis=1)
        iou = inter / (areas[top] + areas[order] - inter + 1e-9)
        members = order[iou > iou_threshold]
        w = scores[members, None]
        kept_boxes.append((boxes[members] * w).sum(axis=0) / w.sum())
        kept_scores.append(scores[top])
        order = order[iou <= iou_threshold]
    return np.array(kept_boxes, dtype=np.float32).reshape(-1, 4), np.array(kept_scores, dtype=np.float32)


@cache
def _load(variant: str):
    path = ASSETS / f"blazeface_{variant}.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"BlazeFace model {path} is missing; rebuild it with scripts/convert_blazeface.py")
    session = create_session(path)
    options = json.loads(session.get_modelmeta().custom_metadata_map["blazeface"])
    return session, options, ssd_anchors(options)


class BlazeFaceDetector:
    """BlazeFace ``full`` range (faces up to ~5 m; finds ~24-40 px faces in 640×480) or ``short``."""

    def __init__(self, variant: str = "full", min_score: float | None = None, iou_threshold: float | None = None):
        if variant not in ("full", "short"):
            raise ValueError(f"BlazeFace variant must be 'full' or 'short', got {variant!r}")
        self.name = "blazeface" if variant == "full" else "blazeface-short"
        self.session, self.options, self.anchors = _load(variant)
        self.size = int(self.options["input_width"])
        self.min_score = float(self.options["min_score_thresh"] if min_score is None else min_score)
        self.iou_threshold = float(self.options["min_suppression_threshold"] if iou_threshold is None else iou_threshold)
        if len(self.anchors) != self.options["num_boxes"]:
            raise RuntimeError(f"{len(self.anchors)} anchors generated, the model has {self.options['num_boxes']}")

    def letterbox(self, image_rgb: np.ndarray) -> tuple[np.ndarray, float, int, int]:
        """Fit the image into the square model input (aspect kept, centred, black borders)."""
        h, w = image_rgb.shape[:2]
        scale = self.size / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas = np.zeros((self.size, self.size, 3), np.uint8)
        px, py = (self.size - nw) // 2, (self.size - nh) // 2
        canvas[py:py + nh, px:px + nw] = cv2.resize(image_rgb, (nw, nh), interpolation=interp)
        return canvas, scale, px, py

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces in a uint8 H×W×3 RGB image, best first."""
        canvas, scale, px, py = self.letterbox(image_rgb)
        x = canvas.astype(np.float32)[None] * (2.0 / 255.0) - 1.0
        regressors, logits = self.session.run(None, {"input": x})
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits[0, :, 0].astype(np.float64), -100.0, 100.0)))
        hit = scores >= self.min_score
        if not hit.any():
            return []
        raw, anchors, scores = regressors[0, hit, :4], self.anchors[hit], scores[hit]
        o = self.options
        cx = raw[:, 0] / o["x_scale"] + anchors[:, 0]
        cy = raw[:, 1] / o["y_scale"] + anchors[:, 1]
        half_w, half_h = raw[:, 2] / o["w_scale"] / 2, raw[:, 3] / o["h_scale"] / 2
        boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)
        boxes, scores = weighted_nms(boxes, scores, self.iou_threshold)
        # canvas-normalised coordinates -> original pixels
        boxes = (boxes * self.size - np.array([px, py, px, py], np.float32)) / scale
        h, w = image_rgb.shape[:2]
        found = []
        for box, score in zip(boxes, scores):
            clipped = clip_box(tuple(box), w, h)
            if clipped is not None:
                found.append(Detection(clipped, float(score)))
        return found
