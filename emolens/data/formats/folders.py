"""Folder helpers shared by the folder layouts: image files, split folders, class folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emolens.data.splits import SPLITS, FileSplit, Split, canonical_split
from emolens.errors import DatasetError
from emolens.images import IMAGE_SUFFIXES
from emolens.labels import canonical_or_none

#: Dataset image files: the decoder's suffixes but .gif, .ppm and .pgm, which datasets do not ship.
IMAGE_EXTENSIONS = IMAGE_SUFFIXES - {".gif", ".ppm", ".pgm"}


def subdirs(folder: Path) -> list[Path]:
    """The visible subfolders of ``folder``, sorted."""
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def images_in(folder: Path) -> list[Path]:
    """The dataset image files directly in ``folder``, sorted."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def split_folders(path: Path) -> dict[str, Path]:
    """Canonical split name → folder, for ``path`` or its ``images/`` child; {} when there are none."""
    for base in (path, path / "images"):
        if not base.is_dir():
            continue
        found: dict[str, Path] = {}
        for d in subdirs(base):
            name = canonical_split(d.name)
            if name not in SPLITS:
                continue
            if name in found:
                raise DatasetError(f"{base}: both {found[name].name}/ and {d.name}/ are the {name!r} split; keep one")
            found[name] = d
        if found:
            return found
    return {}


def class_folders(folder: Path) -> dict[str, list[Path]]:
    """Canonical class → sorted image files of each class folder in ``folder``."""
    out: dict[str, list[Path]] = {}
    folders = subdirs(folder)
    if not folders:
        raise DatasetError(f"{folder}: no class folders; expected one folder per emotion (e.g. angry/, happy/)")
    for d in folders:
        name = canonical_or_none(d.name)
        if name is None:
            raise DatasetError(
                f"{d}: folder name {d.name!r} is not an emotion class; expected class folders named like "
                "anger/angry, happy, sad, surprise, fear, disgust, neutral, contempt"
            )
        if name in out:
            raise DatasetError(f"{d}: a second folder for class {name!r} in {folder}; keep one")
        files = images_in(d)
        if not files:
            raise DatasetError(f"{d}: empty class folder; expected image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        out[name] = files
    return out


def flatten(classes: list[str], files: dict[str, list[Path]]) -> tuple[list[Path], np.ndarray]:
    """Paths and labels of class → files, in class order."""
    paths = [p for c in classes for p in files.get(c, [])]
    labels = np.concatenate([np.full(len(files.get(c, [])), k, np.int64) for k, c in enumerate(classes)])
    return paths, labels


def file_splits(
    classes: list[str], labels: np.ndarray, paths: list[Path], parts: dict[str, np.ndarray], root: Path
) -> dict[str, Split]:
    """A :class:`FileSplit` of the samples at each named index array of ``parts``."""
    return {name: FileSplit(name, classes, labels[idx], paths=[paths[i] for i in idx], root=root)
            for name, idx in parts.items()}


def whole(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Every sample in one ``"eval"`` split (a dataset used as it is)."""
    return {"eval": np.arange(len(labels))}
