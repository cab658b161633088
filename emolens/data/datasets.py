"""Loading a dataset: :func:`load_dataset` reads any registered layout (:mod:`emolens.data.formats`)
and applies a class selection.

Supported layouts (``format=``; one module each under :mod:`emolens.data.formats`):

- ``split-folders``: ``train/<class>/``, ``validation|val|valid/<class>/``, ``test/<class>/``,
  optionally under an ``images/`` parent.
- ``fer2013-csv``: the original ``fer2013.csv`` (``emotion,pixels,Usage``).
- ``yolo``: a YOLO ``data.yaml`` with ``<split>/images`` and ``<split>/labels/*.txt``.
- ``class-folders``: ``<class>/`` folders without splits, split here (stratified, seeded).
- ``eval-folder``: ``<class>/`` folders used as one evaluation split ``"eval"`` as they are.
- ``packed``: an ``.npz`` written by :func:`emolens.data.pack.pack_dataset`.
- ``utkface``: one folder of UTKFace-named face crops, age bins as classes, split 90/10 here;
  ``utkface-eval``: the same folder as one ``"eval"`` split.

Image files are decoded by :func:`emolens.images.decode`, the decoder inference uses; a YOLO box is
cut with inference's crop geometry (:func:`emolens.preprocess.crop_box`). The splits and the
dataset object are in :mod:`emolens.data.splits`; their names are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emolens.data.formats import FORMATS, ReadOptions, detect_format, get_format
from emolens.data.formats.class_folders import stratified_split
from emolens.data.formats.folders import IMAGE_EXTENSIONS
from emolens.data.formats.utkface import UTKFACE_VAL_SHARE, group_split
from emolens.data.splits import SPLITS, ArraySplit, Dataset, FileSplit, Split, canonical_split, read_image
from emolens.errors import DatasetError, DatasetWarning, ImageReadError
from emolens.labels import ClassSelection, remap
from emolens.preprocess import CropSpec

__all__ = [
    "FORMATS", "IMAGE_EXTENSIONS", "SPLITS", "UTKFACE_VAL_SHARE", "ArraySplit", "Dataset", "DatasetError",
    "DatasetWarning", "FileSplit", "ImageReadError", "Split", "canonical_split", "detect_format", "group_split",
    "load_dataset", "read_image", "stratified_split",
]


def load_dataset(
    path: str | Path,
    format: str = "auto",
    selection: ClassSelection | None = None,
    split_ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    box_margin: float = 0.0,
    box_square: bool = True,
    crop: CropSpec | None = None,
) -> Dataset:
    """Read a dataset in any registered layout (auto-detected unless ``format`` is given).

    ``selection`` keeps/drops/merges classes and relabels; ``split_ratios`` and ``seed`` drive the
    split of an unsplit layout (``class-folders``, ``utkface``). Box datasets (YOLO) are cut with
    ``crop``, the model's :class:`~emolens.preprocess.CropSpec` (its ``margin`` and ``square``, as
    at inference); without one, with ``box_margin`` per side, squared unless ``box_square=False``.
    Skipped samples are reported as :class:`DatasetWarning` and listed in ``Dataset.warnings``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    fmt = get_format(detect_format(path) if format == "auto" else format)
    options = ReadOptions(crop or CropSpec(margin=box_margin, square=box_square), split_ratios, seed, for_model=crop is not None)
    classes, splits, name = fmt.read(path, options)
    if selection is not None and not selection.is_identity:
        classes, splits = _apply_selection(classes, splits, selection)
    return Dataset(root=path, format=fmt.name, classes=classes, splits=splits, warnings=options.issues, name=name)


def _apply_selection(
    classes: list[str], splits: dict[str, Split], selection: ClassSelection
) -> tuple[list[str], dict[str, Split]]:
    new_classes, mapping = selection.apply(classes)
    targets = [mapping[c] for c in classes]
    out = {}
    for name, split in splits.items():
        relabelled = remap(split.labels, targets, new_classes)
        keep = np.flatnonzero(relabelled >= 0)
        out[name] = split.take(keep, new_classes, relabelled[keep])
    return new_classes, out
