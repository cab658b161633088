"""A checkpoint or run folder behind the :class:`emolens.predictor.Predictor` contract, run in torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from emolens.data.sources import parse_holdout
from emolens.models.checkpoint import load_model
from emolens.models.tta import with_tta
from emolens.predictor import predict_in_batches
from emolens.preprocess import CropSpec


class TorchPredictor:
    """A checkpoint or run folder (its best.pt) on ``device``; ``temperature`` divides the logits
    (1: the raw model, as evaluation uses it; the exported value: what the ONNX file serves);
    ``tta`` as :func:`emolens.models.tta.with_tta` (an export's graph TTA, to compare against it).
    ``holdout``: the (fold, folds) of training images its run left out, if any."""

    def __init__(self, path: str | Path, device: str = "cpu", temperature: float = 1.0, tta: str = "none") -> None:
        self.device = torch.device(device)
        model, meta = load_model(path, map_location=self.device)
        self.model = with_tta(model, tta).to(self.device)
        self.classes: tuple[str, ...] = tuple(meta["classes"])
        self.crop = CropSpec.from_dict(meta["crop"])
        self.model_name: str = meta["model_name"]
        self.holdout = parse_holdout(meta.get("config", {}).get("holdout"))
        self.temperature = temperature

    def predict_proba(self, faces: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """float32 N×K probabilities for uint8 N×H×W×C faces (resized to ``crop`` when they are not)."""
        return predict_in_batches(self.logits, faces, self.crop, len(self.classes), batch_size, self.temperature)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Raw logits (N×K) of a normalised float32 N×C×H×W batch at ``crop``'s size."""
        with torch.inference_mode():
            return self.model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()
