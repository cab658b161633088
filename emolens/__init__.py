"""emolens — real-time facial emotion recognition."""

from emolens.labels import EMOTIONS, ClassSelection, canonical

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "ClassSelection", "canonical", "__version__"]
