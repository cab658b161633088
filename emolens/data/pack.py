"""``emolens data pack``: a dataset's faces, cut and sized once, in one compressed ``.npz``.

A packed dataset is what travels to another machine (a GPU host, a cluster) instead of the
original files: every split's uint8 faces, labels, class names and each sample's key, so labels
and teacher outputs computed there match the original files here. ``load_dataset`` reads it
as the ``packed`` format.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emolens.data.cache import load_arrays
from emolens.data.datasets import load_dataset
from emolens.files import atomic_path
from emolens.labels import ClassSelection


def pack_dataset(
    data: str | Path,
    out: str | Path,
    size: int,
    channels: int,
    *,
    format: str = "auto",
    margin: float = 0.1,
    selection: ClassSelection | None = None,
    splits: tuple[str, ...] | None = None,
    cache_dir: Path | None = None,
) -> dict[str, int]:
    """Write ``data`` (any layout) as a packed dataset to ``out``; returns the samples per split.

    Faces are cut with ``margin`` (box datasets) and resized to size×size×channels without
    contrast normalisation, which the training run applies as its crop spec says. The pack
    records the margin and whether boxes were cut, so that a run or model with another margin is
    refused (``load_dataset(pack, crop=...)``).
    """
    dataset = load_dataset(data, format=format, selection=selection, box_margin=margin)
    arrays: dict[str, np.ndarray] = {
        "name": np.asarray(dataset.name),
        "classes": np.asarray(dataset.classes),
        "size": np.asarray(size),
        "channels": np.asarray(channels),
        "margin": np.asarray(margin),
        "boxes": np.asarray(any(getattr(dataset.split(n), "boxes", None) is not None for n in dataset.splits)),
    }
    counts = {}
    for name in splits or tuple(dataset.splits):
        images, labels, keys = load_arrays(dataset.split(name), size, channels, cache_dir=cache_dir, with_keys=True)
        arrays.update({f"{name}_images": images, f"{name}_labels": labels, f"{name}_keys": keys})
        counts[name] = len(labels)
    with atomic_path(Path(out)) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, **arrays)
    return counts
