"""emolens — real-time facial emotion recognition."""

from typing import TYPE_CHECKING, Any

from emolens.labels import EMOTIONS, ClassSelection, canonical

if TYPE_CHECKING:
    from emolens.inference.recognizer import Recognizer

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "ClassSelection", "Recognizer", "canonical", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: ``import emolens`` stays light (no onnxruntime/OpenCV) until Recognizer is used.
    if name == "Recognizer":
        from emolens.inference.recognizer import Recognizer

        return Recognizer
    raise AttributeError(f"module 'emolens' has no attribute {name!r}")
