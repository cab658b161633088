"""``class-folders``: ``<class>/`` folders without splits, split here (stratified, seeded);
``eval-folder``: the same folders used as one ``"eval"`` split, as they are."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emolens.data.formats.folders import class_folders, file_splits, flatten, subdirs, whole
from emolens.data.formats.registry import Layout, ReadOptions, register_format
from emolens.data.splits import SPLITS
from emolens.errors import DatasetError
from emolens.labels import canonical_or_none


def _has_class_folders(path: Path) -> bool:
    """A folder with at least one emotion-named subfolder."""
    return path.is_dir() and any(canonical_or_none(d.name) for d in subdirs(path))


@register_format("class-folders", detect={40: _has_class_folders})
def read_class_folders(path: Path, options: ReadOptions) -> Layout:
    """Classes sorted by name; train/val/test by :func:`stratified_split` (``options.split_ratios``, ``.seed``)."""
    classes, labels, paths = _read(path)
    parts = stratified_split(labels, options.split_ratios, options.seed)
    return Layout(classes, file_splits(classes, labels, paths, parts, path))


@register_format("eval-folder")  # never auto-detected: it looks like class-folders
def read_eval_folder(path: Path, options: ReadOptions) -> Layout:
    """Classes sorted by name; every image in the ``"eval"`` split."""
    classes, labels, paths = _read(path)
    return Layout(classes, file_splits(classes, labels, paths, whole(labels), path))


def _read(path: Path) -> tuple[list[str], np.ndarray, list[Path]]:
    """Classes (sorted), labels and paths of the class folders in ``path``."""
    files = class_folders(path)
    classes = sorted(files)
    paths, labels = flatten(classes, files)
    return classes, labels, paths


def stratified_split(
    labels: np.ndarray, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, np.ndarray]:
    """Deterministic stratified train/val/test indices; empty splits are left out."""
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or (r < 0).any() or not np.isclose(r.sum(), 1.0) or r[0] == 0:
        raise DatasetError(f"split ratios must be 3 non-negative numbers summing to 1 with train > 0, got {ratios}")
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        bounds = np.round(np.cumsum(r)[:2] * len(idx)).astype(int)
        for name, chunk in zip(SPLITS, np.split(idx, bounds)):
            parts[name].append(chunk)
    out = {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}
    return {name: idx for name, idx in out.items() if len(idx)}
