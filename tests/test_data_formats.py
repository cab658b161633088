"""The dataset-format registry: built-in names, detection order, and adding a layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emolens.data import DatasetError, load_dataset
from emolens.data.formats import (
    FORMATS,
    Layout,
    ReadOptions,
    detect_format,
    get_format,
    list_formats,
    register_format,
    registry,
)
from emolens.data.splits import ArraySplit
from emolens.preprocess import CropSpec


def test_builtin_formats_and_unknown_names() -> None:
    assert FORMATS == ("split-folders", "fer2013-csv", "yolo", "class-folders", "eval-folder", "packed", "utkface",
                       "utkface-eval")
    assert get_format("yolo").name == "yolo"
    with pytest.raises(DatasetError, match="unknown dataset format 'zip': expected auto or one of split-folders"):
        get_format("zip")


def test_detection_order_between_layouts(tmp_path: Path) -> None:
    (tmp_path / "train" / "happy").mkdir(parents=True)
    (tmp_path / "notes.csv").write_text("a,b\n")
    assert detect_format(tmp_path) == "split-folders"  # a lone .csv comes after the folder layouts
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n")
    assert detect_format(tmp_path) == "fer2013-csv"  # fer2013.csv comes before them
    assert detect_format(tmp_path / "notes.csv") == "fer2013-csv"
    (tmp_path / "faces.bin").write_bytes(b"")
    with pytest.raises(DatasetError, match="faces.bin: a file that is neither a .csv"):
        detect_format(tmp_path / "faces.bin")


def test_a_registered_format_is_read_and_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # forget the new format afterwards
    seen: list[ReadOptions] = []

    @register_format("gray-npy", detect={5: lambda path: path.suffix == ".npy"})
    def read_gray_npy(path: Path, options: ReadOptions) -> Layout:
        seen.append(options)
        pixels = np.load(path)
        split = ArraySplit("eval", ["happy"], np.zeros(len(pixels), np.int64), pixels=pixels,
                           rows=np.arange(1, len(pixels) + 1), source=path)
        return Layout(["happy"], {"eval": split})

    path = tmp_path / "faces.npy"
    np.save(path, np.zeros((3, 48, 48, 1), np.uint8))
    ds = load_dataset(path, crop=CropSpec(margin=0.3, square=False))
    assert ds.format == "gray-npy" and len(ds.split("eval")) == 3 and ds.name == "faces"
    assert seen[0].crop.margin == 0.3 and not seen[0].crop.square
    assert "gray-npy" in list_formats()
    with pytest.raises(ValueError, match="registered twice"):
        register_format("gray-npy")(read_gray_npy)
