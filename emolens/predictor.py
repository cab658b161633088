"""The predictor contract: uint8 faces in, class probabilities out, whatever runs the model.

:class:`emolens.inference.classifier.OnnxPredictor` (ONNX Runtime; ``EmotionClassifier`` and
``AgeEstimator`` are its two tasks) and :class:`emolens.models.predictor.TorchPredictor` (a
checkpoint in torch) both satisfy it, so
evaluation, teachers and the export check run either. Both share :func:`predict_in_batches`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from emolens.preprocess import CropSpec, normalize, prepare


class Predictor(Protocol):
    """A trained model behind one call. Adding a runtime (e.g. OpenVINO) is one class with these members."""

    classes: tuple[str, ...]
    crop: CropSpec
    model_name: str
    temperature: float  # divides the logits in predict_proba (an exported model's calibrated one)

    def predict_proba(self, faces: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """float32 N×K probabilities (K = ``len(classes)``) for uint8 N×H×W×C faces."""
        ...

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw logits (N×K) of a normalised float32 N×C×H×W batch at ``crop``'s size."""
        ...


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise float32 softmax of N×K ``logits`` divided by ``temperature``."""
    z = logits.astype(np.float32) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_in_batches(
    logits: Callable[[np.ndarray], np.ndarray], faces: np.ndarray, crop: CropSpec, num_classes: int,
    batch_size: int = 64, temperature: float = 1.0,
) -> np.ndarray:
    """The body of every ``predict_proba``: faces not already ``crop``-sized are prepared, then
    ``logits(float32 N×C×H×W batch)`` runs per batch and its softmax is returned (float32 N×K)."""
    faces = np.asarray(faces)
    if faces.ndim == 3:
        faces = faces[None]
    if len(faces) and faces.shape[1:] != (crop.size, crop.size, crop.channels):
        faces = np.stack([prepare(f, crop) for f in faces])
    out = [np.zeros((0, num_classes), np.float32)]
    for start in range(0, len(faces), batch_size):
        out.append(softmax(logits(normalize(faces[start:start + batch_size])), temperature))
    return np.concatenate(out)
