"""load_arrays: decoded once, cache hit, invalidation when a file changes, corrupt files skipped."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from emolens.data import ClassSelection, DatasetWarning, load_arrays, load_dataset
from emolens.data.cache import cache_path
from emolens.preprocess import resize_to


def test_arrays_match_preprocess(fer_small: Path, tmp_path: Path) -> None:
    split = load_dataset(fer_small).split("val")
    images, labels = load_arrays(split, 40, 3, cache_dir=tmp_path)
    assert images.shape == (56, 40, 40, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(labels, split.labels)
    for i in (0, 17, 55):
        np.testing.assert_array_equal(images[i], resize_to(split.read(i), 40, 3))


def test_yolo_arrays(affectnet_small: Path, tmp_path: Path) -> None:
    split = load_dataset(affectnet_small).split("val")
    images, labels = load_arrays(split, 48, 1, cache_dir=tmp_path)
    assert images.shape == (64, 48, 48, 1) and labels.dtype == np.int64
    other_margin = load_dataset(affectnet_small, box_margin=0.2).split("val")
    assert cache_path(other_margin, 48, 1, tmp_path) != cache_path(split, 48, 1, tmp_path)


def test_cache_hit_and_invalidation(fer_small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    shutil.copytree(fer_small / "validation", data)
    cache = tmp_path / "cache"
    split = load_dataset(data, format="eval-folder").split("eval")
    first, _ = load_arrays(split, 48, 1, cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == [cache_path(split, 48, 1, cache).name]

    def no_decoding(i: int) -> np.ndarray:
        raise AssertionError("a cache hit must not decode")

    monkeypatch.setattr(split, "read", no_decoding)
    again, _ = load_arrays(split, 48, 1, cache_dir=cache)
    np.testing.assert_array_equal(again, first)
    monkeypatch.undo()

    changed = split.paths[3]
    shutil.copy(split.paths[0], changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    fresh = load_dataset(data, format="eval-folder").split("eval")
    updated, _ = load_arrays(fresh, 48, 1, cache_dir=cache)
    assert len(list(cache.glob("*.npz"))) == 2
    np.testing.assert_array_equal(updated[3], first[0])
    assert not np.array_equal(updated[3], first[3])
    selected = load_dataset(data, format="eval-folder", selection=ClassSelection.parse(drop="disgust")).split("eval")
    assert cache_path(selected, 48, 1, cache) != cache_path(fresh, 48, 1, cache)
    assert cache_path(fresh, 48, 3, cache) != cache_path(fresh, 48, 1, cache)


def test_corrupt_files_are_skipped_and_reported(fer_small: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(fer_small / "validation", data)
    bad = sorted((data / "sad").iterdir())[2]
    bad.write_bytes(b"\xff\xd8 broken")
    split = load_dataset(data, format="eval-folder").split("eval")
    for _ in range(2):  # fresh decode, then the cache hit: reported both times
        with pytest.warns(DatasetWarning, match=f"skipped 1 unreadable image.*{bad.name}"):
            images, labels = load_arrays(split, 48, 1, cache_dir=tmp_path / "cache")
        assert len(images) == len(labels) == 55
        assert np.bincount(labels).tolist() == [8, 8, 8, 8, 8, 7, 8]
