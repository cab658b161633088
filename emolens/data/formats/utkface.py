"""``utkface``: one folder of UTKFace-named face crops (``<age>_<gender>_<race>_<datetime>.jpg``);
the classes are the age bins of :mod:`emolens.age`, split here into train/val (seeded, 90/10,
byte-identical files kept on one side). ``utkface-eval``: the same folder as one ``"eval"`` split."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emolens.age import AGE_CLASSES, age_bin, parse_utkface_name
from emolens.data.formats.folders import file_splits, images_in, subdirs, whole
from emolens.data.formats.registry import Layout, ReadOptions, first, register_format
from emolens.errors import DatasetError, ImageReadError

UTKFACE_VAL_SHARE = 0.1


def _is_utkface(path: Path) -> bool:
    """A flat folder whose first image files parse as UTKFace names."""
    return path.is_dir() and not subdirs(path) and any(parse_utkface_name(p.name) for p in images_in(path)[:20])


@register_format("utkface", detect={50: _is_utkface})
def read_utkface(path: Path, options: ReadOptions) -> Layout:
    """Age-bin labels, split into train/val by :func:`group_split` (``options.seed``)."""
    classes, labels, paths = _read(path, options)
    parts = group_split([_file_digest(p) for p in paths], UTKFACE_VAL_SHARE, options.seed)
    return Layout(classes, file_splits(classes, labels, paths, parts, path))


@register_format("utkface-eval")
def read_utkface_eval(path: Path, options: ReadOptions) -> Layout:
    """Age-bin labels; every image in the ``"eval"`` split."""
    classes, labels, paths = _read(path, options)
    return Layout(classes, file_splits(classes, labels, paths, whole(labels), path))


def _read(path: Path, options: ReadOptions) -> tuple[list[str], np.ndarray, list[Path]]:
    """Age bins, labels and paths of the UTKFace-named images; other files are skipped with a warning."""
    if not path.is_dir():
        raise DatasetError(f"{path}: expected a folder of UTKFace images named <age>_<gender>_<race>_<datetime>.jpg")
    paths, ages, bad = [], [], []
    for p in images_in(path):
        parsed = parse_utkface_name(p.name)
        if parsed is None:
            bad.append(p.name)
        else:
            paths.append(p)
            ages.append(parsed[0])
    if bad:
        options.warn(f"{path}: skipped {len(bad)} file(s) not named <age>_<gender>_<race>_<datetime>: {first(bad)}")
    if not paths:
        raise DatasetError(f"{path}: no UTKFace images; expected files named <age>_<gender>_<race>_<datetime>.jpg")
    return list(AGE_CLASSES), age_bin(ages), paths


def group_split(digests: Sequence[str], val_share: float, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded train/val indices in which samples with the same digest (byte-identical files) land
    on the same side; whole groups are drawn for "val" until ``val_share`` of the samples is reached."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(digests):
        groups.setdefault(d, []).append(i)
    order = sorted(groups)
    rng = np.random.default_rng(seed)
    target, taken, val = round(val_share * len(digests)), 0, []
    for k in rng.permutation(len(order)):
        if taken >= target:
            break
        val += groups[order[k]]
        taken += len(groups[order[k]])
    is_val = np.zeros(len(digests), bool)
    is_val[val] = True
    return {"train": np.flatnonzero(~is_val), "val": np.flatnonzero(is_val)}


def _file_digest(path: Path) -> str:
    """SHA-1 of the file's bytes; ImageReadError names an unreadable file."""
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read image file ({e.strerror or e})") from e
