"""Load any model evaluation accepts as a :class:`emolens.predictor.Predictor`.

Run folders and ``.pt`` checkpoints run in torch (:class:`emolens.models.predictor.TorchPredictor`);
``.onnx`` files and bundled model names (``default``, ``mixed8``, ...) go through
:class:`emolens.inference.classifier.OnnxPredictor` (any task).
"""

from __future__ import annotations

from pathlib import Path

from emolens.predictor import Predictor


def is_torch_model(ref: str | Path) -> bool:
    """Whether ``ref`` is a run folder or a PyTorch checkpoint (else an ONNX file or bundled name)."""
    path = Path(ref)
    return path.is_dir() or path.suffix in (".pt", ".pth")


def load_predictor(ref: str | Path, device: str = "cpu") -> Predictor:
    """A run folder / .pt checkpoint (torch), an .onnx file or a bundled model name (ONNX Runtime)."""
    if is_torch_model(ref):
        from emolens.models.predictor import TorchPredictor

        return TorchPredictor(ref, device)
    from emolens.inference.classifier import OnnxPredictor, resolve_model

    return OnnxPredictor(resolve_model(ref))
