"""The ground floor's promises: training and inference decode and crop the same pixels, one box
geometry, one label remap, one pixel limit for the API and the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emolens.boxes import box_iou, from_yolo, iou_matrix
from emolens.data import load_dataset
from emolens.errors import DatasetError, EmolensError, ImageReadError, InputError, LimitError
from emolens.images import load_image
from emolens.labels import remap
from emolens.preprocess import CropSpec, crop_box, crop_face

REPO = Path(__file__).resolve().parents[1]


def _class_folders(root: Path) -> Path:
    """happy/: a JPEG with EXIF orientation 6 (shown rotated 90°), a half-transparent PNG, a 16-bit PNG."""
    (root / "happy").mkdir(parents=True)
    pixels = np.random.default_rng(0).integers(0, 256, (40, 80, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(root / "happy" / "a_rotated.jpg", exif=exif.tobytes())
    rgba = np.dstack([pixels, np.tile(np.array([0, 255], np.uint8), (40, 40))])
    Image.fromarray(rgba, "RGBA").save(root / "happy" / "b_alpha.png")
    Image.fromarray(np.arange(40 * 80, dtype=np.uint16).reshape(40, 80) * 20).save(root / "happy" / "c_16bit.png")
    return root


def test_dataset_images_decode_as_inference_does(tmp_path: Path) -> None:
    split = load_dataset(_class_folders(tmp_path / "faces"), format="eval-folder").split("eval")
    rotated, alpha, deep = (split.read(i) for i in range(3))
    assert rotated.shape == (80, 40, 3)  # EXIF rotation applied, as at inference
    assert (alpha[:, ::2] == 255).all()  # transparent pixels are white, not black
    for i, image in enumerate((rotated, alpha)):
        assert np.array_equal(image, load_image(split.paths[i]))
    assert np.array_equal(deep[:, :, 0], load_image(split.paths[2])[:, :, 0])  # gray kept H×W×1, 16 bit ÷ 257
    assert deep.shape == (40, 80, 1)


def test_non_square_boxes_are_cut_as_inference_cuts_them(tmp_path: Path) -> None:
    """A YOLO box twice as wide as high: the dataset crop is the detector-box crop (squared, margin)."""
    root = tmp_path / "yolo"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir()
    (root / "data.yaml").write_text("names: [happy, sad]\n")
    image = np.random.default_rng(1).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "train" / "images" / "a.png")
    (root / "train" / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.2\n")
    spec = CropSpec(size=48, channels=3, margin=0.1)
    face = load_dataset(root, box_margin=spec.margin, box_square=spec.square).split("train").read(0)
    box = from_yolo(0.5, 0.5, 0.5, 0.2, 120, 100)
    assert face.shape[0] == face.shape[1]
    assert np.array_equal(face, crop_box(image, box, spec.margin, square=True))
    assert np.array_equal(crop_face(face, (0, 0, face.shape[1], face.shape[0]), CropSpec(48, 3, 0.0)),
                          crop_face(image, box, spec))
    unsquared = load_dataset(root, box_margin=0.1, box_square=False).split("train").read(0)
    assert unsquared.shape[:2] == (24, 72)


def test_box_geometry() -> None:
    assert from_yolo(0.5, 0.5, 0.5, 0.2, 120, 100) == (30.0, 40.0, 90.0, 60.0)
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou_matrix(np.array([[0, 0, 10, 10, 0.9]]), np.array([[0, 0, 10, 10], [20, 20, 30, 30]])).tolist() == [
        [pytest.approx(1.0), 0.0]]


def test_remap_matches_names_and_drops_the_rest() -> None:
    labels = np.array([0, 1, 2, -1])
    assert remap(labels, ["anger", "happy", "sad"], ["sad", "anger"]).tolist() == [1, -1, 0, -1]
    assert remap(labels, ["anger", None, "sad"], ["anger", "sad"]).tolist() == [0, -1, 1, -1]


def test_one_error_family() -> None:
    for error in (InputError, LimitError, DatasetError, ImageReadError):
        assert issubclass(error, EmolensError) and issubclass(error, ValueError)
    assert issubclass(ImageReadError, InputError)


def test_the_pixel_limit_reaches_the_cli(tmp_path: Path) -> None:
    """EMOLENS_MAX_PIXELS is read once: the CLI refuses what the Python API refuses."""
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(photo)
    env = {**os.environ, "EMOLENS_MAX_PIXELS": "1000"}
    out = subprocess.run([sys.executable, "-m", "emolens", "analyze", str(photo), "--detector", "none"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "over the limit of 0.0 megapixels" in out.stdout + out.stderr
