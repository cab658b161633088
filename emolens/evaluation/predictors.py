"""One small interface over every kind of model evaluation accepts: ``classes``, ``crop`` and
``predict_proba(uint8 N×H×W×C faces) -> N×K``.

Run folders and ``.pt`` checkpoints run in torch; ``.onnx`` files and bundled model names
(``default``, ``mixed8``, ...) go through :class:`emolens.inference.classifier.EmotionClassifier`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from emolens.data.preprocess import CropSpec, normalize, prepare


class Predictor(Protocol):
    classes: tuple[str, ...]
    crop: CropSpec
    model_name: str

    def predict_proba(self, faces: np.ndarray, batch_size: int = 64) -> np.ndarray: ...


class TorchPredictor:
    """A checkpoint or run folder, evaluated in torch on the CPU (or ``device``)."""

    def __init__(self, path: str | Path, device: str = "cpu") -> None:
        import torch

        from emolens.models.checkpoint import load_model

        self._torch = torch
        self.device = torch.device(device)
        self.model, meta = load_model(path, map_location=self.device)
        self.model.to(self.device)
        self.classes = tuple(meta["classes"])
        self.crop = CropSpec.from_dict(meta["crop"])
        self.model_name = meta["model_name"]

    def predict_proba(self, faces: np.ndarray, batch_size: int = 64) -> np.ndarray:
        torch, spec = self._torch, self.crop
        faces = np.asarray(faces)
        if faces.ndim == 3:
            faces = faces[None]
        if faces.shape[1:] != (spec.size, spec.size, spec.channels):
            faces = np.stack([prepare(f, spec) for f in faces])
        out = [np.zeros((0, len(self.classes)), np.float32)]
        with torch.inference_mode():
            for start in range(0, len(faces), batch_size):
                x = torch.from_numpy(normalize(faces[start : start + batch_size])).to(self.device)
                out.append(torch.softmax(self.model(x).float(), dim=1).cpu().numpy())
        return np.concatenate(out)


def is_torch_model(ref: str | Path) -> bool:
    path = Path(ref)
    return path.is_dir() or path.suffix in (".pt", ".pth")


def load_predictor(ref: str | Path, device: str = "cpu") -> Predictor:
    """A run folder / .pt checkpoint (torch), an .onnx file or a bundled model name (ONNX Runtime)."""
    if is_torch_model(ref):
        return TorchPredictor(ref, device)
    from emolens.inference.classifier import EmotionClassifier

    return EmotionClassifier.load(ref)
