"""Datasets: layouts and readers, the decoded uint8 cache, and (with torch) augmentation and loaders.

``emolens.data.augment`` and ``emolens.data.loader`` need torch and are imported from there.
"""

from emolens.data.cache import default_cache_dir, load_arrays
from emolens.data.datasets import (
    FORMATS,
    Dataset,
    DatasetError,
    DatasetWarning,
    ImageReadError,
    Split,
    canonical_split,
    detect_format,
    load_dataset,
    read_image,
    stratified_split,
)
from emolens.labels import ClassSelection

__all__ = [
    "FORMATS",
    "ClassSelection",
    "Dataset",
    "DatasetError",
    "DatasetWarning",
    "ImageReadError",
    "Split",
    "canonical_split",
    "default_cache_dir",
    "detect_format",
    "load_arrays",
    "load_dataset",
    "read_image",
    "stratified_split",
]
