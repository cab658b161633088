"""Face detectors behind one interface: ``create_detector(name).detect(image_rgb) -> [Detection]``.

Every backend's weights ship offline: ``blazeface`` (MediaPipe BlazeFace full-range, converted to
ONNX, the default), ``blazeface-short`` (short-range, faces within ~2 m, fastest), ``yunet``
(libfacedetection's YuNet through OpenCV, best recall on close-ups and crowded photos),
``yunet-tiled`` (YuNet plus a second look for small faces and faces cut by the edge), ``haar``
(OpenCV's frontal-face cascade, tuned for real time) and ``none`` (the whole image is one face,
for inputs that are already face crops). What a detector returns (:class:`Detection`) and the
interface (:class:`Detector`) live in ``detectors/base.py``, which every backend imports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from emolens.errors import ConfigError
from emolens.inference.detectors.base import BLAZEFACE_LANDMARKS, YUNET_LANDMARKS, Detection, Detector

#: What ``default`` means, chosen by ``benchmarks/bench_detectors.py`` (docs/inference.md): photos
#: get YuNet on the image shrunk to 640 px plus a second look for small faces and faces cut by the
#: edge (``yunet-tiled``: mirrored borders, 2×2 enlarged tiles); video frames get BlazeFace
#: (fastest, finds 24 px faces) and, on frames where it finds nothing (close-ups), YuNet at 320 px.
DEFAULT_DETECTOR = "yunet-tiled"
DEFAULT_STREAM_DETECTOR = "blazeface,yunet-320"
__all__ = ["BLAZEFACE_LANDMARKS", "DEFAULT_DETECTOR", "DEFAULT_STREAM_DETECTOR", "YUNET_LANDMARKS", "Detection", "Detector",
           "FallbackChain", "WholeImage", "create_detector", "list_detectors", "probably_face_crop"]


def _blazeface(variant: str) -> Callable[..., Detector]:
    def make(**opts: Any) -> Detector:
        from emolens.inference.detectors.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(variant, **opts)

    return make


def _haar(**opts: Any) -> Detector:
    from emolens.inference.detectors.haar import HaarDetector

    return HaarDetector(**opts)


def _yunet(**opts: Any) -> Detector:
    from emolens.inference.detectors.yunet import YuNetDetector

    return YuNetDetector(**opts)


def _yunet_tiled(**opts: Any) -> Detector:
    from emolens.inference.detectors.tiled import TiledDetector

    return TiledDetector(**opts)


def _yunet_sized(key: str) -> Callable[..., Detector] | None:
    """``yunet-N``: YuNet with ``max_side=N`` (e.g. ``yunet-320``), or None for other names."""
    size = key.removeprefix("yunet-")
    return (lambda **opts: _yunet(max_side=int(size), **opts)) if key.startswith("yunet-") and size.isdigit() else None


class WholeImage:
    """No detection: the whole image is one face (for inputs that already are face crops)."""

    name = "none"

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """One detection covering the image, score 1."""
        h, w = image_rgb.shape[:2]
        return [Detection((0, 0, w, h), 1.0)]


class FallbackChain:
    """Detectors tried in order: the first that finds a face answers (``create_detector("a,b")``).

    A fast detector first and a thorough one behind it costs the thorough pass only on frames
    where the fast one finds nothing.
    """

    def __init__(self, detectors: list[Detector]):
        if len(detectors) < 2:
            raise ValueError("a fallback chain needs at least two detectors")
        self.detectors = detectors
        self.name = ",".join(d.name for d in detectors)

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        """Faces from the first detector of the chain that finds any, best first."""
        for detector in self.detectors:
            found = detector.detect(image_rgb)
            if found:
                return found
        return []


_REGISTRY: dict[str, Callable[..., Detector]] = {
    "blazeface": _blazeface("full"),
    "blazeface-short": _blazeface("short"),
    "yunet": _yunet,
    "yunet-tiled": _yunet_tiled,
    "haar": _haar,
    "none": lambda: WholeImage(),
}


def list_detectors() -> list[str]:
    """Names accepted by :func:`create_detector` (besides ``default``, ``yunet-N`` for YuNet at N px,
    and fallback chains "a,b")."""
    return sorted(_REGISTRY)


def create_detector(name: str | None = "default", **opts: Any) -> Detector:
    """Build a detector by name; ``opts`` go to its constructor (e.g. ``min_score``, ``max_side``).

    ``None`` or ``"none"`` treats every image as one face; ``"a,b"`` is a :class:`FallbackChain`
    (then ``opts`` are not accepted: each part keeps its defaults).
    """
    key = "none" if name is None else DEFAULT_DETECTOR if name == "default" else name.strip().lower()
    if "," in key:
        if opts:
            raise ConfigError(f"detector options {sorted(opts)} cannot apply to the fallback chain {name!r}")
        return FallbackChain([create_detector(part) for part in key.split(",")])
    make = _REGISTRY.get(key) or _yunet_sized(key)
    if make is None:
        raise ConfigError(f"unknown face detector {name!r}: choose one of default, {', '.join(list_detectors())}, "
                         f"yunet-N (YuNet at N px), or a fallback chain such as 'blazeface,yunet'")
    try:
        return make(**opts)
    except TypeError as e:  # an option the detector does not take
        raise ConfigError(f"face detector {key!r}: {e}") from e


#: Images at most this many pixels on their long side and near square look like face crops.
CROP_MAX_SIDE = 320


def probably_face_crop(detector: Detector, image_rgb: np.ndarray) -> bool:
    """For an image where ``detector`` found no face: does one face probably fill it?

    True for small near-square images (face-crop datasets are 48-256 px), or when the detector
    finds a face spanning at least 40 % of the image's width once the image is shrunk into the
    middle of a canvas twice its size (detectors are trained on faces with context around them).
    """
    h, w = image_rgb.shape[:2]
    if max(h, w) <= CROP_MAX_SIDE and 0.5 <= w / h <= 2.0:
        return True
    if max(h, w) > 640:  # a thumbnail is enough to see a face that fills the image
        import cv2

        scale = 640 / max(h, w)
        image_rgb = cv2.resize(image_rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
                               interpolation=cv2.INTER_AREA)
        h, w = image_rgb.shape[:2]
    canvas = np.zeros((2 * h, 2 * w, 3), np.uint8)
    canvas[h // 2:h // 2 + h, w // 2:w // 2 + w] = image_rgb
    return any(d.box[2] - d.box[0] >= 0.4 * w for d in detector.detect(canvas))
