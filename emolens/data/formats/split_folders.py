"""``split-folders``: ``train/<class>/``, ``validation|val|valid/<class>/``, ``test/<class>/``,
optionally under an ``images/`` parent (FER2013 as distributed)."""

from __future__ import annotations

from pathlib import Path

from emolens.data.formats.folders import class_folders, flatten, split_folders
from emolens.data.formats.registry import Layout, ReadOptions, register_format
from emolens.data.splits import SPLITS, FileSplit, Split
from emolens.errors import DatasetError


@register_format("split-folders", detect={30: lambda path: path.is_dir() and bool(split_folders(path))})
def read_split_folders(path: Path, options: ReadOptions) -> Layout:
    """One split per split folder; the classes are the union of their class folders, sorted."""
    folders = split_folders(path)
    if not folders:
        raise DatasetError(
            f"{path}: no split folders; expected train/, validation|val|valid/ or test/ (optionally under images/)"
        )
    per_split = {name: class_folders(folders[name]) for name in SPLITS if name in folders}
    classes = sorted({c for files in per_split.values() for c in files})
    splits: dict[str, Split] = {}
    for name, files in per_split.items():
        paths, labels = flatten(classes, files)
        splits[name] = FileSplit(name, classes, labels, paths=paths, root=path)
    return Layout(classes, splits)
