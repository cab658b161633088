"""Dataset readers on real subsets: every layout, aliases, selection, stratified splits, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from emolens.data import ClassSelection, DatasetError, DatasetWarning, ImageReadError, load_dataset, read_image
from emolens.labels import FER2013_CSV_LABELS

FER_CLASSES = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def copy_classes(src: Path, dst: Path, per_class: int, classes: tuple[str, ...] | None = None) -> Path:
    """Copy the first ``per_class`` images of each class folder of ``src`` into ``dst``."""
    for d in sorted(src.iterdir()):
        if classes is None or d.name in classes:
            (dst / d.name).mkdir(parents=True)
            for f in sorted(d.iterdir())[:per_class]:
                shutil.copy(f, dst / d.name / f.name)
    return dst


def test_split_folders_fer(fer_small: Path) -> None:
    ds = load_dataset(fer_small)
    assert ds.format == "split-folders"
    assert ds.classes == FER_CLASSES
    assert set(ds.splits) == {"train", "val"}
    train = ds.split("train")
    assert len(train) == 7 * 30 and train.counts() == dict.fromkeys(FER_CLASSES, 30)
    assert train.labels.dtype == np.int64
    for alias in ("validation", "valid", "val", "PublicTest"):
        assert ds.split(alias) is ds.splits["val"]
    image = train.read(0)
    assert image.shape == (48, 48, 1) and image.dtype == np.uint8
    assert train.describe(0).endswith(".jpg") and "/angry/" in train.describe(0)
    with pytest.raises(DatasetError, match="available splits: train, val"):
        ds.split("test")


def test_split_folders_under_images_parent(fer_small: Path, tmp_path: Path) -> None:
    copy_classes(fer_small / "train", tmp_path / "images" / "train", 3, ("happy", "sad"))
    copy_classes(fer_small / "validation", tmp_path / "images" / "validation", 2, ("happy", "sad"))
    ds = load_dataset(tmp_path)
    assert ds.format == "split-folders" and ds.classes == ["happy", "sad"]
    assert len(ds.split("train")) == 6 and ds.split("val").counts() == {"happy": 2, "sad": 2}


def test_yolo_affectnet(affectnet_small: Path) -> None:
    ds = load_dataset(affectnet_small)
    assert ds.format == "yolo"
    assert ds.classes == ["anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert len(ds.split("train")) == 160 and len(ds.split("valid")) == 64
    assert not ds.warnings
    image = ds.split("val").read(0)
    assert image.shape[2] == 3 and image.dtype == np.uint8
    assert abs(image.shape[0] - 96) <= 1
    wide = load_dataset(affectnet_small, box_margin=0.25).split("val").read(0)
    assert abs(wide.shape[0] - 144) <= 1  # the box widened by 25 % per side, border replicated


def _yolo_copy(affectnet_small: Path, dst: Path, n: int) -> Path:
    names = (affectnet_small / "data.yaml").read_text().split("names:")[1]
    (dst / "data.yaml").write_text(f"train: train/images\nnc: 8\nnames:{names}")
    for sub in ("images", "labels"):
        (dst / "train" / sub).mkdir(parents=True)
    for img in sorted((affectnet_small / "train" / "images").iterdir())[:n]:
        shutil.copy(img, dst / "train" / "images" / img.name)
        label = affectnet_small / "train" / "labels" / f"{img.stem}.txt"
        shutil.copy(label, dst / "train" / "labels" / label.name)
    return dst


def test_yolo_box_is_cropped(affectnet_small: Path, tmp_path: Path) -> None:
    root = _yolo_copy(affectnet_small, tmp_path, 1)
    label = next((root / "train" / "labels").iterdir())
    label.write_text("4 0.25 0.25 0.5 0.5\n")
    split = load_dataset(root).split("train")
    full = read_image(split.paths[0])
    assert split.classes[split.labels[0]] == "happy"
    np.testing.assert_array_equal(split.read(0), full[:48, :48])


def test_yolo_missing_pairs_warn_with_names(affectnet_small: Path, tmp_path: Path) -> None:
    root = _yolo_copy(affectnet_small, tmp_path, 4)
    images = sorted((root / "train" / "images").iterdir())
    (root / "train" / "labels" / f"{images[0].stem}.txt").unlink()
    images[1].unlink()
    with pytest.warns(DatasetWarning) as record:
        ds = load_dataset(root)
    messages = " ".join(str(w.message) for w in record)
    assert f"1 image(s) without a label file, skipped: {images[0].name}" in messages
    assert f"1 label file(s) without an image: {images[1].stem}.txt" in messages
    assert len(ds.split("train")) == 2 and len(ds.warnings) == 2


def test_yolo_bad_label_line_names_file(affectnet_small: Path, tmp_path: Path) -> None:
    root = _yolo_copy(affectnet_small, tmp_path, 1)
    label = next((root / "train" / "labels").iterdir())
    label.write_text("9 0.5 0.5 1 1\n")
    with pytest.raises(DatasetError, match=f"{label.name}: line 1 .*class 0-7"):
        load_dataset(root)


def _write_csv(fer_small: Path, path: Path) -> list[tuple[str, np.ndarray]]:
    """A fer2013.csv with two rows per usage, plus one row with a wrong pixel count (row 4)."""
    rows, expected = [], []
    for usage, folder, cls in [
        ("Training", "train", "happy"),
        ("Training", "train", "neutral"),
        ("PublicTest", "validation", "angry"),
        ("Training", "train", "sad"),
        ("PrivateTest", "validation", "surprise"),
        ("PublicTest", "validation", "fear"),
    ]:
        image = read_image(sorted((fer_small / folder / cls).iterdir())[0])[:, :, 0]
        emotion = FER2013_CSV_LABELS.index({"angry": "anger"}.get(cls, cls))
        rows.append(f"{emotion},{' '.join(map(str, image.ravel()))},{usage}")
        expected.append((usage, image))
    rows[3] = rows[3].rsplit(" ", 10)[0] + ",Training"  # drop pixel values from row 4
    path.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    return expected


def test_fer2013_csv(fer_small: Path, tmp_path: Path) -> None:
    expected = _write_csv(fer_small, tmp_path / "fer2013.csv")
    with pytest.warns(DatasetWarning, match=r"skipped 1 bad row\(s\): row 4 \(2294 pixel values, expected 2304"):
        ds = load_dataset(tmp_path)
    assert ds.format == "fer2013-csv" and ds.classes == list(FER2013_CSV_LABELS)
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 2, "val": 2, "test": 1}
    train = ds.split("train")
    assert [train.classes[i] for i in train.labels] == ["happy", "neutral"]
    np.testing.assert_array_equal(train.read(1)[:, :, 0], expected[1][1])
    assert train.read(1).shape == (48, 48, 1)
    assert ds.split("publictest").describe(1) == "fer2013.csv row 6"
    assert ds.split("test").classes[ds.split("test").labels[0]] == "surprise"


def test_fer2013_csv_bad_header(tmp_path: Path) -> None:
    path = tmp_path / "fer2013.csv"
    path.write_text("label,image\n0,1 2 3\n")
    with pytest.raises(
        DatasetError, match=r"fer2013.csv: malformed header label,image; expected columns emotion,pixels,Usage"
    ):
        load_dataset(path)


def test_class_folders_stratified_split(fer_small: Path, tmp_path: Path) -> None:
    root = copy_classes(fer_small / "train", tmp_path / "faces", 20)
    ds = load_dataset(root, seed=3)
    assert ds.format == "class-folders" and ds.classes == FER_CLASSES
    assert {n: s.counts() for n, s in ds.splits.items()} == {
        "train": dict.fromkeys(FER_CLASSES, 16),
        "val": dict.fromkeys(FER_CLASSES, 2),
        "test": dict.fromkeys(FER_CLASSES, 2),
    }
    files = {n: {str(p) for p in s.paths} for n, s in ds.splits.items()}
    assert not (files["train"] & files["val"]) and not (files["train"] & files["test"])
    assert sum(map(len, files.values())) == 140
    again = load_dataset(root, seed=3)
    assert {n: s.paths for n, s in again.splits.items()} == {n: s.paths for n, s in ds.splits.items()}
    other = load_dataset(root, seed=4)
    assert other.split("val").paths != ds.split("val").paths
    halves = load_dataset(root, split_ratios=(0.5, 0.5, 0.0))
    assert set(halves.splits) == {"train", "val"} and len(halves.split("val")) == 70
    with pytest.raises(DatasetError, match="split ratios"):
        load_dataset(root, split_ratios=(0.5, 0.2, 0.2))


def test_eval_folder(fer_small: Path) -> None:
    ds = load_dataset(fer_small / "validation", format="eval-folder")
    assert ds.format == "eval-folder" and list(ds.splits) == ["eval"]
    assert len(ds.split("eval")) == 56


def test_class_selection(fer_small: Path) -> None:
    keep = load_dataset(fer_small, selection=ClassSelection.parse(keep="sad,happy"))
    assert keep.classes == ["sad", "happy"] and keep.split("train").counts() == {"sad": 30, "happy": 30}
    assert all("/sad/" in keep.split("train").describe(i) for i in np.flatnonzero(keep.split("train").labels == 0))
    drop = load_dataset(fer_small, selection=ClassSelection.parse(drop="disgust"))
    assert drop.classes == [c for c in FER_CLASSES if c != "disgust"] and len(drop.split("val")) == 48
    merge = load_dataset(fer_small, selection=ClassSelection.parse(merge="anger=angry+disgust"))
    assert merge.classes == [c for c in FER_CLASSES if c != "disgust"]
    assert merge.split("train").counts()["anger"] == 60


def test_bad_layouts_name_the_folder(fer_small: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetError, match=f"{tmp_path}: no known dataset layout .*expected split folders"):
        load_dataset(tmp_path)
    root = copy_classes(fer_small / "train", tmp_path / "faces", 2, ("happy",))
    (root / "banana").mkdir()
    shutil.copy(next((root / "happy").iterdir()), root / "banana")
    with pytest.raises(DatasetError, match=r"faces/banana: folder name 'banana' is not an emotion class"):
        load_dataset(root, format="class-folders")
    shutil.rmtree(root / "banana")
    (root / "sad").mkdir()
    with pytest.raises(DatasetError, match=r"faces/sad: empty class folder"):
        load_dataset(root)
    with pytest.raises(DatasetError, match="unknown dataset format 'zip'"):
        load_dataset(root, format="zip")


def test_corrupt_image_read_names_file(fer_small: Path, tmp_path: Path) -> None:
    root = copy_classes(fer_small / "train", tmp_path / "faces", 3, ("happy",))
    bad = sorted((root / "happy").iterdir())[1]
    bad.write_bytes(b"not a jpeg")
    split = load_dataset(root, format="eval-folder").split("eval")
    assert split.read(0).shape == (48, 48, 1)
    with pytest.raises(ImageReadError, match=f"{bad}: not a readable image"):
        split.read(1)
