"""Decode a split once into compact uint8 arrays, cached on disk and invalidated when files change."""

from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from emolens.data.splits import Split
from emolens.errors import DatasetError, DatasetWarning
from emolens.files import atomic_path
from emolens.preprocess import resize_to
from emolens.progress import progress

_CACHE_VERSION = 2
_CHUNK = 256
#: The arrays of a cache file; ``emolens_cache`` (the cache version) marks the file as written by
#: this cache, so ``emolens cache clear`` deletes nothing else. Files written before the marker hold
#: exactly the other four.
_MARKER = "emolens_cache"
_ARRAYS = frozenset({"images", "labels", "kept", "skipped"})


def default_cache_dir() -> Path:
    """``$EMOLENS_CACHE`` or ``~/.cache/emolens``."""
    return Path(os.environ.get("EMOLENS_CACHE", "~/.cache/emolens")).expanduser()


def cache_path(split: Split, size: int, channels: int, cache_dir: Path | None = None, contrast: str = "none") -> Path:
    """The cache file for ``split`` at size×size×channels (its name holds a hash of every input)."""
    key = hashlib.sha256(f"{_CACHE_VERSION}:{split.fingerprint()}:{size}:{channels}:{contrast}".encode()).hexdigest()[:24]
    return Path(cache_dir or default_cache_dir()) / f"{split.name}-{size}px-{channels}ch-{key}.npz"


def is_cache_file(path: Path) -> bool:
    """Whether ``path`` is a file this cache wrote: a regular file (not a link) named as
    :func:`cache_path` names them, holding exactly the cache's arrays."""
    if path.is_symlink() or not path.is_file() or not path.match("*-*px-*ch-*.npz"):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            arrays = {name.removesuffix(".npy") for name in z.namelist()}
    except (OSError, zipfile.BadZipFile):
        return False
    return arrays in (_ARRAYS | {_MARKER}, _ARRAYS)


def cache_files(cache_dir: Path | None = None) -> list[Path]:
    """The files of the cache folder (default :func:`default_cache_dir`) that this cache wrote."""
    folder = Path(cache_dir or default_cache_dir())
    return sorted(p for p in folder.glob("*.npz") if is_cache_file(p)) if folder.is_dir() else []


def load_arrays(
    split: Split, size: int, channels: int, cache_dir: Path | None = None, workers: int = 2, contrast: str = "none",
    *, with_keys: bool = False,
) -> tuple[np.ndarray, ...]:
    """All samples of ``split`` as (N, size, size, channels) uint8 and int64 labels (and, with
    ``with_keys``, each sample's :meth:`Split.key`).

    Decoded once with :func:`preprocess.resize_to` and cached; the cache key covers the file list,
    sizes, mtimes, boxes, margin, labels, classes and contrast. Unreadable images are skipped with a
    :class:`DatasetWarning` naming them (also on later cache hits).
    """
    path = cache_path(split, size, channels, cache_dir, contrast)
    cached = _read_cache(path)
    if cached is None:
        images, labels, kept, skipped = _decode(split, size, channels, workers, contrast)
        _write_cache(path, images=images, labels=labels, kept=kept, skipped=np.asarray(skipped, dtype=str),
                     **{_MARKER: np.asarray(_CACHE_VERSION)})
    else:
        images, labels, kept, skipped = cached
    if len(skipped):
        warnings.warn(
            f"split {split.name!r}: skipped {len(skipped)} unreadable image(s): "
            + "; ".join(skipped[:5])
            + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""),
            DatasetWarning,
            stacklevel=2,
        )
    if with_keys:
        return images, labels, np.asarray([split.key(int(i)) for i in kept], dtype=str)
    return images, labels


def _decode(
    split: Split, size: int, channels: int, workers: int, contrast: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    n = len(split)
    images = np.empty((n, size, size, channels), np.uint8)
    ok = np.ones(n, bool)

    def decode_chunk(start: int) -> tuple[int, list[str]]:
        errors = []
        stop = min(start + _CHUNK, n)
        for i in range(start, stop):
            try:
                images[i] = resize_to(split.read(i), size, channels, contrast)
            except DatasetError as e:
                ok[i] = False
                errors.append(str(e))
        return stop - start, errors

    skipped: list[str] = []
    with progress(f"decoding {split.name}", n) as advance, ThreadPoolExecutor(max(1, workers)) as pool:
        for done, errors in pool.map(decode_chunk, range(0, n, _CHUNK)):
            skipped += errors
            advance(done)
    return images[ok], split.labels[ok].astype(np.int64), np.flatnonzero(ok), skipped


def _read_cache(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return z["images"], z["labels"], z["kept"], z["skipped"].tolist()
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # a damaged cache is rebuilt
        return None


def _write_cache(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)