"""Shared fixtures: small, deterministic subsets of the real datasets in ../shared.

Subsets are extracted once into .cache/test-data (git-ignored) and reused across runs.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOLENS_SHARED", REPO.parent / "shared"))
CACHE = REPO / ".cache" / "test-data"


def _extract(zip_path: Path, dest: Path, pick) -> Path:
    """Extract the members chosen by ``pick(names)`` into ``dest`` once (marker file)."""
    marker = dest / ".complete"
    if marker.exists():
        return dest
    if not zip_path.exists():
        pytest.skip(f"{zip_path} not found: the tests read real data from ../shared")
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as zf:
        for name in pick(sorted(n for n in zf.namelist() if not n.endswith("/"))):
            zf.extract(name, tmp)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    marker.touch()
    return dest


def fer_subset_path(train_per_class: int, val_per_class: int) -> Path:
    """FER2013 image folders with the first N images of each class per split."""

    def pick(names: list[str]) -> list[str]:
        per: dict[tuple[str, str], list[str]] = defaultdict(list)
        for n in names:
            split, cls, _ = n.split("/", 2)
            per[(split, cls)].append(n)
        out = []
        for (split, _), members in per.items():
            out += members[: train_per_class if split == "train" else val_per_class]
        return out

    return _extract(SHARED / "datasets" / "fer2013.zip", CACHE / f"fer2013-{train_per_class}-{val_per_class}", pick)


@pytest.fixture(scope="session", autouse=True)
def temporary_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The decoded-image cache lives in a temporary folder, never in the user's ~/.cache/emolens."""
    path = tmp_path_factory.mktemp("emolens-cache")
    before = os.environ.get("EMOLENS_CACHE")
    os.environ["EMOLENS_CACHE"] = str(path)
    yield path
    if before is None:
        os.environ.pop("EMOLENS_CACHE", None)
    else:
        os.environ["EMOLENS_CACHE"] = before


@pytest.fixture(scope="session")
def shared() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def media() -> Path:
    path = SHARED / "media"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def fer_small() -> Path:
    """FER2013 layout (train/, validation/), 30 train and 8 validation images per class."""
    return fer_subset_path(30, 8)


@pytest.fixture(scope="session")
def fer_medium() -> Path:
    """FER2013 layout, 200 train and 40 validation images per class (for loss-falls checks)."""
    return fer_subset_path(200, 40)


@pytest.fixture(scope="session")
def affectnet_small() -> Path:
    """AffectNet YOLO layout (data.yaml, train/, valid/), 160 train and 64 valid images."""

    def pick(names: list[str]) -> list[str]:
        out = [n for n in names if n.endswith("data.yaml")]
        for split, count in (("train", 160), ("valid", 64)):
            images = [n for n in names if n.startswith(f"affectnet-yolo/{split}/images/")][:count]
            out += images
            out += [n.replace("/images/", "/labels/").rsplit(".", 1)[0] + ".txt" for n in images]
        return out

    return _extract(SHARED / "datasets" / "affectnet-yolo.zip", CACHE / "affectnet-small", pick) / "affectnet-yolo"


@pytest.fixture(scope="session")
def muxspace_small() -> Path:
    """muxspace-dev close-ups (160×160, in the wild): the first 6 images of each class folder."""

    def pick(names: list[str]) -> list[str]:
        per: dict[str, list[str]] = defaultdict(list)
        for n in names:
            per[n.rsplit("/", 1)[0]].append(n)
        return [n for members in per.values() for n in members[:6]]

    return _extract(SHARED / "datasets" / "muxspace-dev.zip", CACHE / "muxspace-small", pick) / "muxspace-dev"


@pytest.fixture(scope="session")
def utkface_small() -> Path:
    """UTKFace 64×64 chips (one flat folder, ages in the names): every 50th file, 426 images over all ages."""
    return _extract(SHARED / "datasets" / "utkface-64.zip", CACHE / "utkface-small", lambda names: names[::50]) / "utkface-64"


@pytest.fixture(scope="session")
def utkface_val_sample() -> Path:
    """60 UTKFace chips from the validation side of the seeded split of the whole release (the
    split the bundled age model was selected on, never trained on): the split's order, every 35th."""
    zip_path = SHARED / "datasets" / "utkface-64.zip"

    def pick(names: list[str]) -> list[str]:
        import hashlib

        from emolens.data.datasets import UTKFACE_VAL_SHARE, group_split

        with zipfile.ZipFile(zip_path) as zf:
            digests = [hashlib.sha1(zf.read(n)).hexdigest() for n in names]
        return [names[i] for i in group_split(digests, UTKFACE_VAL_SHARE, seed=0)["val"][::35]]

    return _extract(zip_path, CACHE / "utkface-val-sample", pick) / "utkface-64"
