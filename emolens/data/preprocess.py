"""Re-export of :mod:`emolens.preprocess`, the face-to-model-input contract (kept while callers move to it)."""

from emolens.preprocess import (
    CONTRASTS,
    MEAN,
    STD,
    CropSpec,
    crop_box,
    crop_face,
    equalize,
    expand_box,
    level_eyes,
    normalize,
    prepare,
    resize_to,
    to_channels,
)

__all__ = ["CONTRASTS", "MEAN", "STD", "CropSpec", "crop_box", "crop_face", "equalize", "expand_box", "level_eyes",
           "normalize", "prepare", "resize_to", "to_channels"]
