"""``packed``: an ``.npz`` written by :func:`emolens.data.pack.pack_dataset`: faces already cut and
sized, with labels and sample keys (a compact copy to train elsewhere, e.g. on a GPU host)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from emolens.data.formats.registry import Layout, ReadOptions, register_format
from emolens.data.splits import SPLITS, ArraySplit, Split
from emolens.errors import DatasetError


@register_format("packed", detect={10: lambda path: path.is_file() and path.suffix.lower() == ".npz"})
def read_packed(path: Path, options: ReadOptions) -> Layout:
    """The packed name, classes and splits (see :mod:`emolens.data.pack`)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path}: cannot read packed dataset ({e}); expected an .npz written by `emolens data pack`") from e
    if options.for_model and "boxes" in arrays and bool(arrays["boxes"]):  # older packs do not say
        packed = float(arrays["margin"])
        if abs(packed - options.crop.margin) > 1e-6:
            raise DatasetError(
                f"{path}: faces were cut from their boxes with margin {packed:g}, but the crop spec asks for "
                f"{options.crop.margin:g}; repack with `emolens data pack … --margin {options.crop.margin:g}` "
                f"or train with --margin {packed:g}"
            )
    try:
        classes = [str(c) for c in arrays["classes"]]
        name = str(arrays["name"])
        splits: dict[str, Split] = {}
        for split_name in (s for s in (*SPLITS, "eval") if f"{s}_images" in arrays):
            images, labels = arrays[f"{split_name}_images"], arrays[f"{split_name}_labels"].astype(np.int64)
            if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
                raise DatasetError(f"{path}: split {split_name!r} is not uint8 N×H×W×C images with N labels")
            splits[split_name] = ArraySplit(
                split_name, classes, labels, pixels=images, rows=np.arange(1, len(labels) + 1),
                source=path, keys=arrays[f"{split_name}_keys"],
            )
    except KeyError as e:
        raise DatasetError(f"{path}: packed dataset lacks {e}; expected an .npz written by `emolens data pack`") from e
    if not splits:
        raise DatasetError(f"{path}: packed dataset holds no splits")
    return Layout(classes, splits, name)
