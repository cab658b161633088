"""``Recognizer``: faces and their emotions in one call.

    >>> from emolens import Recognizer
    >>> rec = Recognizer()                      # bundled default model, BlazeFace detector
    >>> result = rec.analyze("group.jpg")       # path, RGB array, BGR array (color="bgr"), PIL image
    >>> [(f.box, f.emotion, f.confidence) for f in result.faces]
    >>> result.to_dataframe()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emolens.errors import ConfigError
from emolens.images import MAX_PIXELS, Color, ImageInput, describe, load_image
from emolens.inference.classifier import AgeEstimator, EmotionClassifier
from emolens.inference.detectors import DEFAULT_STREAM_DETECTOR, Detection, Detector, create_detector
from emolens.inference.results import FaceResult, ImageResult

#: Optional per-face attributes (``Recognizer(attributes=...)``).
ATTRIBUTES: tuple[str, ...] = ("age",)


class Recognizer:
    """A face detector plus an emotion classifier.

    ``model``: a bundled model name (``default`` → ``accurate-int8``), an .onnx path or an
    :class:`EmotionClassifier`; ``detector``: a detector name (see
    :func:`~emolens.inference.detectors.list_detectors`; ``None`` or ``"none"``: each image is one
    face) or object. ``"default"`` uses the thorough default for photos and the fast one for video
    frames (:meth:`detect` with ``stream=True``); any other choice serves both.
    ``max_pixels``: largest image accepted (decompression-bomb guard).
    ``attributes``: more per-face estimates, opt-in — ``("age",)`` adds ``FaceResult.age`` (apparent
    age in years) from ``age_model`` (bundled ``age``, an .onnx path or an :class:`AgeEstimator`);
    nothing is loaded or run for an attribute that is off.

    A recognizer holds models only, no per-stream state, so one serves any number of images and
    streams: streams (tracking, smoothing, detection every k frames) go through
    :class:`~emolens.inference.stream.StreamAnalyzer`.
    """

    def __init__(self, model: str | Path | EmotionClassifier = "default", detector: str | Detector | None = "default",
                 max_pixels: int = MAX_PIXELS, attributes: Sequence[str] = (),
                 age_model: str | Path | AgeEstimator = "age", **detector_opts: Any):
        if "smoothing" in detector_opts:
            raise TypeError("smoothing is a stream setting: analyze_video(..., smoothing=...) or "
                            "StreamAnalyzer(recognizer, smoothing=...)")
        if isinstance(attributes, str):  # attributes="age" means ("age",), not the letters a, g, e
            attributes = (attributes,)
        unknown = sorted(set(attributes) - set(ATTRIBUTES))
        if unknown:
            raise ConfigError(f"unknown face attribute(s) {', '.join(unknown)}: expected some of {', '.join(ATTRIBUTES)}")
        self.classifier = model if isinstance(model, EmotionClassifier) else EmotionClassifier.load(model)
        self.age: AgeEstimator | None = None
        if "age" in attributes:
            self.age = age_model if isinstance(age_model, AgeEstimator) else AgeEstimator.load(age_model)
        if detector is None or isinstance(detector, str):
            self.detector = create_detector(detector, **detector_opts)
            default = detector == "default" and not detector_opts
            self.stream_detector = create_detector(DEFAULT_STREAM_DETECTOR) if default else self.detector
        else:
            self.detector = self.stream_detector = detector
        self.max_pixels = max_pixels

    @property
    def classes(self) -> tuple[str, ...]:
        return self.classifier.classes

    def __repr__(self) -> str:
        stream = "" if self.stream_detector is self.detector else f", stream_detector={self.stream_detector.name!r}"
        return f"Recognizer(model={self.classifier.path.name!r}, detector={self.detector.name!r}{stream})"

    def detect(self, image_rgb: np.ndarray, stream: bool = False) -> list[Detection]:
        """Faces in an RGB image; ``stream=True`` for video frames (the fast detector when both differ).

        Faces come in reading order (left to right), so a face's index is easy to find on the
        picture, and in a stream the tracker numbers new faces in that order too (as the page does).
        """
        detector = self.stream_detector if stream else self.detector
        return sorted(detector.detect(image_rgb), key=lambda d: (d.box[0], d.box[1]))

    def classify(self, image_rgb: np.ndarray, detections: Sequence[Detection]) -> list[FaceResult]:
        """Emotion probabilities for already-found faces; ``face_id`` is each face's index."""
        boxes = [d.box for d in detections]
        probs = self.classifier.classify_faces(image_rgb, boxes)
        ages = self.age.estimate_faces(image_rgb, boxes) if self.age is not None else None
        return self._faces(detections, probs, ages)

    def _faces(self, detections: Sequence[Detection], probs: np.ndarray, ages: np.ndarray | None = None
               ) -> list[FaceResult]:
        return [FaceResult(d.box, d.score, dict(zip(self.classes, map(float, p), strict=True)), i, d.landmarks,
                           d.landmark_names, None if ages is None else float(ages[i]))
                for i, (d, p) in enumerate(zip(detections, probs, strict=True))]

    def analyze(self, image: ImageInput, color: Color = "rgb", stream: bool = False) -> ImageResult:
        """Faces and emotions in one image; no face gives an empty ``faces`` list.

        ``image``: a path, a PIL image, or a uint8 (or 16-bit/float) numpy array whose channel order
        is ``color`` — "rgb" by default (emolens' convention); pass ``color="bgr"`` for OpenCV frames.
        ``stream=True`` marks a video frame (see :meth:`detect`). The result keeps the decoded RGB
        image (``result.image``, drawn by ``result.annotated()``).
        Raises :class:`~emolens.errors.InputError` for an unusable input.
        """
        rgb = load_image(image, color, self.max_pixels)
        h, w = rgb.shape[:2]
        return ImageResult(describe(image), w, h, self.classify(rgb, self.detect(rgb, stream)), rgb)

    def analyze_batch(self, images: Sequence[ImageInput], batch_size: int = 64, color: Color = "rgb",
                      sources: Sequence[str] | None = None) -> list[ImageResult]:
        """Like :meth:`analyze` for many images; faces from all images are classified in batches.

        ``sources`` optionally names the results (default: the path or a description of each input).
        Each result keeps its image, so holding all of them holds every image: for many files, call
        this per chunk (as ``emolens analyze`` does) or set ``result.image = None`` once done with it.
        """
        if not images:
            return []
        names = list(sources) if sources is not None else [describe(i) for i in images]
        if len(names) != len(images):
            raise ValueError(f"{len(images)} images but {len(names)} sources")
        rgbs = [load_image(i, color, self.max_pixels) for i in images]
        detections = [self.detect(rgb) for rgb in rgbs]
        crops = [self.classifier.crops(rgb, [d.box for d in dets]) for rgb, dets in zip(rgbs, detections, strict=True)]
        probs = self.classifier.predict_proba(np.concatenate(crops), batch_size=batch_size)
        ages = None
        if self.age is not None:
            age_crops = [self.age.crops(rgb, [d.box for d in dets]) for rgb, dets in zip(rgbs, detections, strict=True)]
            ages = self.age.predict_ages(np.concatenate(age_crops), batch_size=batch_size)
        results, start = [], 0
        for name, rgb, dets in zip(names, rgbs, detections, strict=True):
            faces = self._faces(dets, probs[start:start + len(dets)], None if ages is None else ages[start:start + len(dets)])
            results.append(ImageResult(name, rgb.shape[1], rgb.shape[0], faces, rgb))
            start += len(dets)
        return results
