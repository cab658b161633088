"""Emotion classification of face crops with an exported ONNX model (no torch).

A model file carries its own class list and crop spec in the ONNX metadata property ``emolens``
(see docs/architecture.md), so the crops made here match the ones it was trained on.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Self

import numpy as np

from emolens.age import predicted_age
from emolens.errors import ModelError
from emolens.inference.runtime import create_session
from emolens.labels import canonical
from emolens.predictor import predict_in_batches
from emolens.preprocess import CropSpec, crop_face

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_MODEL = "accurate-int8"
#: Bundled models of face attributes other than the expression (see :class:`AgeEstimator`).
ATTRIBUTE_MODELS: tuple[str, ...] = ("age",)


def list_bundled_models() -> list[str]:
    """Names of the expression models shipped in ``emolens/weights`` (``default`` means ``accurate-int8``)."""
    return sorted(p.stem for p in WEIGHTS.glob("*.onnx") if p.stem not in ATTRIBUTE_MODELS)


def resolve_model(name_or_path: str | Path) -> Path:
    """Path of a bundled model name (or ``default``), of an .onnx file, or of the one .onnx file in
    a folder (a training run after ``emolens export``). FileNotFoundError says what was expected."""
    text = str(name_or_path)
    path = Path(text)
    available = ", ".join(list_bundled_models()) or "none installed"
    export_hint = "export it first: emolens export {run} --out {run}/model.onnx, then --model {run}/model.onnx"
    if path.is_dir():
        models = sorted(path.glob("*.onnx"))
        if len(models) == 1:
            return models[0]
        found = f" (it holds {len(models)}: give one of them)" if models else ""
        raise ModelError(f"{path} is a folder without one exported .onnx model{found}; recognition runs "
                                f"ONNX models: for a training run, " + export_hint.format(run=path))
    if path.suffix in (".pt", ".pth") and path.is_file():
        onnx = path.with_suffix(".onnx")
        raise ModelError(f"{path} is a PyTorch checkpoint; recognition runs ONNX models: export it first: "
                                f"emolens export {path} --out {onnx}, then --model {onnx}")
    if path.is_file():
        return path
    name = DEFAULT_MODEL if text == "default" else text
    bundled = WEIGHTS / f"{name}.onnx"
    if bundled.is_file():
        return bundled
    if path.suffix or "/" in text or os.sep in text:
        raise ModelError(f"model file or folder {text} does not exist (bundled models: {available})")
    close = difflib.get_close_matches(name, [*list_bundled_models(), *ATTRIBUTE_MODELS, "default"], n=1, cutoff=0.6)
    guess = f"did you mean {close[0]!r}? " if close else ""
    raise ModelError(f"no bundled model {name!r}: {guess}(bundled models: {available}, in {WEIGHTS}); "
                     f"or give the path of a model file or run folder")


class OnnxPredictor:
    """A model exported by emolens, run by ONNX Runtime: uint8 face crops in, class probabilities out
    (a :class:`emolens.predictor.Predictor`), with the task, classes and crop spec its metadata records.
    :class:`EmotionClassifier` and :class:`AgeEstimator` are what each task makes of it."""

    #: the task this runtime serves (None: any); a file of another task is refused with a ModelError
    task_required: str | None = None
    task_hint = ""
    default_name = "default"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.session = create_session(self.path)
        meta = self.session.get_modelmeta().custom_metadata_map
        if "emolens" not in meta:
            raise ModelError(f"{self.path}: no 'emolens' metadata (classes, crop); export it with emolens")
        info = json.loads(meta["emolens"])
        self.task: str = info.get("task", "expression")
        self.classes: tuple[str, ...] = tuple(canonical(c) if self.task == "expression" else c for c in info["classes"])
        self.crop: CropSpec = CropSpec.from_dict(info.get("crop", {}))
        self.model_name: str = info.get("model_name", self.path.stem)
        self.temperature: float = float(info.get("temperature", 1.0))
        self.tta: str = info.get("tta", "none")  # flip: the graph itself averages each face with its mirror image
        self._input = self.session.get_inputs()[0].name
        if self.task_required is not None and self.task != self.task_required:
            raise ModelError(f"{self.path}: an {self.task} model, not an {self.task_required} model ({self.task_hint})")

    def predict_proba(self, faces: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities (float32 N×K, temperature-scaled softmax) for uint8 N×H×W×C face crops.

        Crops not already ``crop.size`` square with ``crop.channels`` channels are resized/converted.
        """
        return predict_in_batches(self.logits, faces, self.crop, len(self.classes), batch_size, self.temperature)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw logits (N×K) of a normalised float32 N×C×H×W batch at ``crop``'s size."""
        return self.session.run(None, {self._input: x})[0]

    def crops(self, image_rgb: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> np.ndarray:
        """Model-ready uint8 crops (N×S×S×C) of ``boxes`` in an RGB image."""
        spec = self.crop
        if not len(boxes):
            return np.zeros((0, spec.size, spec.size, spec.channels), np.uint8)
        return np.stack([crop_face(image_rgb, box, spec) for box in boxes])

    @classmethod
    def load(cls, name_or_path: str | Path | None = None) -> Self:
        """A bundled model by name (default: the class's ``default_name``) or an .onnx file by path."""
        return cls(resolve_model(name_or_path or cls.default_name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path.name}, {self.model_name}, classes={len(self.classes)})"


class EmotionClassifier(OnnxPredictor):
    """An ONNX expression model: the probability of each emotion for each face."""

    task_required = "expression"
    task_hint = "age is an attribute: Recognizer(attributes=('age',)), --age in the CLI"
    default_name = "default"  # → accurate-int8

    def classify_faces(self, image_rgb: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> np.ndarray:
        """Probabilities (N×K) of the faces at pixel ``boxes`` (x1, y1, x2, y2) in an RGB image."""
        return self.predict_proba(self.crops(image_rgb, boxes))


class AgeEstimator(OnnxPredictor):
    """An ONNX age model (metadata ``task: age``): uint8 face crops in, apparent age in years out —
    the median of its softmax over one-year bins (:func:`emolens.age.predicted_age`)."""

    task_required = "age"
    task_hint = "train one with --task age"
    default_name = "age"

    def predict_ages(self, faces: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Ages in years (float32 N) of uint8 N×H×W×C face crops."""
        return predicted_age(self.predict_proba(faces, batch_size), self.classes)

    def estimate_faces(self, image_rgb: np.ndarray, boxes: Sequence[tuple[float, float, float, float]]) -> np.ndarray:
        """Ages (N) of the faces at pixel ``boxes`` in an RGB image, cut with this model's crop spec."""
        return self.predict_ages(self.crops(image_rgb, boxes))
