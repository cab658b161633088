"""YuNet (libfacedetection, Apache-2.0) through OpenCV's ``cv2.FaceDetectorYN``: boxes and 5 landmarks.

The model ships as ``assets/yunet_n_640_640.onnx`` (licence: ``assets/yunet.LICENSE``). OpenCV
reshapes the network to each frame's size, so cost grows with the pixels fed in: frames are
shrunk until their long side is at most ``max_side`` first. A side under ``MIN_SIDE`` px is padded
(with black, below and to the right): on thinner inputs the network returns garbage boxes, even
infinite ones, and rows that are not finite are dropped whatever the input.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from emolens.boxes import clip_box
from emolens.errors import ConfigError, ModelError
from emolens.inference.detectors.base import YUNET_LANDMARKS, Detection

MODEL = Path(__file__).resolve().parent / "assets" / "yunet_n_640_640.onnx"
#: Smallest side fed to the network (its coarsest feature map has a stride of 32).
MIN_SIDE = 64


class YuNetDetector:
    """Faces scoring at least ``min_score``, found on the frame shrunk to ``max_side`` px (long side).

    ``cv2.FaceDetectorYN`` holds per-size state and is not thread-safe, so each thread gets its own.
    """

    landmark_names = YUNET_LANDMARKS

    def __init__(self, min_score: float = 0.8, max_side: int = 640, nms_threshold: float = 0.3, top_k: int = 200):
        if not MODEL.is_file():
            raise ModelError(f"YuNet model {MODEL} is missing; reinstall emolens (it ships in the package)")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise ModelError(f"OpenCV {cv2.__version__} has no FaceDetectorYN: YuNet needs opencv-python(-headless) 4.x")
        if not 0.0 < min_score <= 1.0 or max_side < 32:
            raise ConfigError(f"YuNet needs 0 < min_score <= 1 and max_side >= 32, got {min_score}, {max_side}")
        self.min_score = float(min_score)
        self.max_side = int(max_side)
        self.name = "yunet" if self.max_side == 640 else f"yunet-{self.max_side}"
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self._local = threading.local()

    def _net(self) -> cv2.FaceDetectorYN:
        net = getattr(self._local, "net", None)
        if net is None:
            net = cv2.FaceDetectorYN.create(str(MODEL), "", (320, 320), self.min_score, self.nms_threshold, self.top_k)
            self._local.net = net
        return net

    def raw(self, image_rgb: np.ndarray) -> np.ndarray:
        """OpenCV's N×15 rows (x, y, w, h, 5 landmark x/y pairs, score) in image pixels, best first."""
        h, w = image_rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(image_rgb, size, interpolation=cv2.INTER_AREA) if scale < 1 else image_rgb
        if min(size) < MIN_SIDE:  # boxes keep their coordinates: the padding is below and to the right
            small = cv2.copyMakeBorder(small, 0, max(0, MIN_SIDE - size[1]), 0, max(0, MIN_SIDE - size[0]),
                                       cv2.BORDER_CONSTANT)
        net = self._net()
        net.setInputSize((small.shape[1], small.shape[0]))
        _, faces = net.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        if faces is None:
            return np.zeros((0, 15), np.float32)
        faces = faces[np.isfinite(faces).all(axis=1)]
        faces = faces[np.argsort(-faces[:, 14])]
        faces[:, 0:14:2] *= np.float32(w / size[0])  # x, width and landmark x
        faces[:, 1:14:2] *= np.float32(h / size[1])  # y, height and landmark y
        return faces

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces in a uint8 H×W×3 RGB image, best first, with 5 landmarks each."""
        h, w = image_rgb.shape[:2]
        found = []
        for row in self.raw(image_rgb):
            x, y, bw, bh = map(float, row[:4])
            box = clip_box((x, y, x + bw, y + bh), w, h)
            if box is not None:
                found.append(Detection(box, float(min(1.0, row[14])), row[4:14].reshape(5, 2).copy(), YUNET_LANDMARKS))
        return found
