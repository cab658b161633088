"""Dataset splits and datasets: the :class:`Split` contract, its two kinds (image files,
decoded arrays), :class:`Dataset`, canonical split names and the dataset image decoder.

The layouts that build them are in :mod:`emolens.data.formats`.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from emolens.boxes import from_yolo
from emolens.errors import DatasetError, ImageReadError, InputError
from emolens.images import DECODER_VERSION, decode
from emolens.preprocess import crop_box

SPLITS: tuple[str, ...] = ("train", "val", "test")

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "publictest": "val",
    "test": "test",
    "privatetest": "test",
    "eval": "eval",
}
CSV_SIDE = 48  #: fer2013.csv rows are 48×48 grayscale


def canonical_split(name: str) -> str | None:
    """Canonical split name ("train", "val", "test", "eval") for a folder/alias, or None."""
    return _SPLIT_ALIASES.get(name.strip().lower())


def read_image(path: Path) -> np.ndarray:
    """Decode a dataset image file with :func:`emolens.images.decode` into uint8 RGB H×W×3 (a
    grayscale file: H×W×1); ImageReadError names the file."""
    try:
        return decode(path, keep_gray=True)[0]
    except InputError as e:
        raise ImageReadError(str(e)) from None


@dataclass(eq=False)
class Split(ABC):
    """One split of a dataset: ``labels[i]`` indexes ``classes``; :meth:`read` decodes sample i."""

    name: str
    classes: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    @abstractmethod
    def read(self, i: int) -> np.ndarray:
        """Sample i as uint8 RGB H×W×3 or gray H×W×1 (a YOLO box already cropped)."""

    @abstractmethod
    def describe(self, i: int) -> str:
        """Where sample i comes from, for messages."""

    @abstractmethod
    def key(self, i: int) -> str:
        """A stable id of sample i inside its dataset (e.g. its path relative to the dataset root):
        soft labels and teacher outputs are matched to samples by it."""

    @abstractmethod
    def take(self, indices: np.ndarray, classes: list[str], labels: np.ndarray) -> Split:
        """A split of the samples at ``indices``, relabelled with ``labels`` over ``classes``."""

    @abstractmethod
    def _sources(self) -> Iterator[bytes]:
        """What the samples are decoded from (file names, sizes, mtimes, boxes, ...), for the fingerprint."""

    def fingerprint(self) -> str:
        """Hash of everything that determines the decoded samples and their labels."""
        h = hashlib.sha256(repr((type(self).__name__, self.name, self.classes)).encode())
        h.update(np.ascontiguousarray(self.labels, dtype=np.int64).tobytes())
        for chunk in self._sources():
            h.update(chunk)
        return h.hexdigest()

    def counts(self) -> dict[str, int]:
        """Number of samples per class, in class order."""
        return dict(zip(self.classes, np.bincount(self.labels, minlength=len(self.classes)).tolist()))


@dataclass(eq=False)
class FileSplit(Split):
    """Samples stored as image files; optional YOLO boxes (normalised xc, yc, w, h) are cropped."""

    paths: list[Path] = field(default_factory=list)
    boxes: np.ndarray | None = None
    box_margin: float = 0.0
    box_square: bool = True  # boxes are squared about their centre, as inference does (CropSpec.square)
    root: Path | None = None  # keys are paths relative to it
    box_lines: np.ndarray | None = None  # each box's line in its YOLO label file

    def read(self, i: int) -> np.ndarray:
        image = read_image(self.paths[i])
        if self.boxes is None:
            return image
        box = from_yolo(*self.boxes[i].tolist(), image.shape[1], image.shape[0])
        try:
            return crop_box(image, box, self.box_margin, self.box_square)
        except ValueError as e:
            raise DatasetError(f"{self.paths[i]}: {e}") from e

    def describe(self, i: int) -> str:
        return str(self.paths[i])

    def key(self, i: int) -> str:
        path = self.paths[i]
        rel = path.relative_to(self.root).as_posix() if self.root is not None else path.name
        return rel if self.box_lines is None else f"{rel}#{int(self.box_lines[i])}"

    def _sources(self) -> Iterator[bytes]:
        yield repr((DECODER_VERSION, self.box_margin, self.box_square)).encode()
        if self.boxes is not None:
            yield np.ascontiguousarray(self.boxes, dtype=np.float32).tobytes()
        for p in self.paths:
            yield _file_signature(p)

    def take(self, indices: np.ndarray, classes: list[str], labels: np.ndarray) -> FileSplit:
        return replace(
            self,
            classes=classes,
            labels=labels,
            paths=[self.paths[i] for i in indices],
            boxes=None if self.boxes is None else self.boxes[indices],
            box_lines=None if self.box_lines is None else self.box_lines[indices],
        )


@dataclass(eq=False)
class ArraySplit(Split):
    """Samples held as decoded pixels: fer2013.csv (``rows`` are 1-based data row numbers) or a
    packed dataset (``keys`` are the original samples' keys)."""

    pixels: np.ndarray = field(default_factory=lambda: np.empty((0, CSV_SIDE, CSV_SIDE, 1), np.uint8))
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    source: Path = Path()
    keys: np.ndarray | None = None

    def read(self, i: int) -> np.ndarray:
        return self.pixels[i].copy()

    def describe(self, i: int) -> str:
        if self.keys is not None:
            return f"{self.source.name}: {self.keys[i]}"
        return f"{self.source.name} row {int(self.rows[i])}"

    def key(self, i: int) -> str:
        return str(self.keys[i]) if self.keys is not None else f"row{int(self.rows[i])}"

    def _sources(self) -> Iterator[bytes]:
        yield _file_signature(self.source)
        yield np.ascontiguousarray(self.rows, dtype=np.int64).tobytes()

    def take(self, indices: np.ndarray, classes: list[str], labels: np.ndarray) -> ArraySplit:
        return replace(
            self, classes=classes, labels=labels, pixels=self.pixels[indices], rows=self.rows[indices],
            keys=None if self.keys is None else self.keys[indices],
        )


@dataclass(eq=False)
class Dataset:
    """A loaded dataset: canonical class list and its splits ("train"/"val"/"test" or "eval")."""

    root: Path
    format: str
    classes: list[str]
    splits: dict[str, Split]
    warnings: list[str] = field(default_factory=list)
    name: str = ""  # a short name for reports and sample keys (default: the folder or file name)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = self.root.stem if self.root.is_file() else self.root.name

    def split(self, name: str) -> Split:
        """The split called ``name`` (aliases: validation/valid/val/publictest → "val", ...)."""
        key = canonical_split(name) or name
        if key not in self.splits:
            raise DatasetError(f"{self.root}: no split {name!r}; available splits: {', '.join(self.splits) or 'none'}")
        return self.splits[key]


def _file_signature(path: Path) -> bytes:
    st = path.stat()
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
