"""Re-export of :mod:`emolens.images`, the one image decoder (kept while callers move to it)."""

from emolens.images import (
    IMAGE_FORMATS,
    IMAGE_SUFFIXES,
    MAX_PIXELS,
    Color,
    ImageInput,
    check_pixels,
    decode,
    describe,
    load_image,
)

__all__ = ["IMAGE_FORMATS", "IMAGE_SUFFIXES", "MAX_PIXELS", "Color", "ImageInput", "check_pixels", "decode",
           "describe", "load_image"]
