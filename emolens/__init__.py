"""emolens — real-time facial emotion recognition."""

import os
from typing import TYPE_CHECKING, Any

# ONNX Runtime's official builds record usage events (device id, process path) under ~/.cache
# and the temp folder unless this is set before it loads; emolens keeps everything local.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

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
