"""Dataset layouts: detection, readers, and the :class:`Dataset` / :class:`Split` objects.

Supported layouts (``format=``):

- ``split-folders``: ``train/<class>/``, ``validation|val|valid/<class>/``, ``test/<class>/``,
  optionally under an ``images/`` parent.
- ``fer2013-csv``: the original ``fer2013.csv`` (``emotion,pixels,Usage``).
- ``yolo``: a YOLO ``data.yaml`` with ``<split>/images`` and ``<split>/labels/*.txt``.
- ``class-folders``: ``<class>/`` folders without splits, split here (stratified, seeded).
- ``eval-folder``: ``<class>/`` folders used as one evaluation split ``"eval"`` as they are.
- ``packed``: an ``.npz`` written by :func:`emolens.data.pack.pack_dataset` — faces already cut
  and sized, with labels and sample keys (a compact copy to train elsewhere, e.g. on a GPU host).
- ``utkface``: one folder of UTKFace-named face crops (``<age>_<gender>_<race>_<datetime>.jpg``);
  the classes are the age bins of :mod:`emolens.age`, split here into train/val (seeded, 90/10,
  byte-identical files kept on one side). ``utkface-eval``: the same folder as one ``"eval"`` split.

Image files are decoded by :func:`emolens.images.decode`, the decoder inference uses, into uint8
RGB (H×W×3) or, for grayscale files, H×W×1; a YOLO box is cut with inference's crop geometry
(:func:`emolens.preprocess.crop_box`).
"""

from __future__ import annotations

import csv
import hashlib
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from emolens.age import AGE_CLASSES, age_bin, parse_utkface_name
from emolens.boxes import from_yolo
from emolens.errors import DatasetError, DatasetWarning, ImageReadError, InputError
from emolens.images import DECODER_VERSION, IMAGE_SUFFIXES, decode
from emolens.labels import FER2013_CSV_LABELS, ClassSelection, canonical_or_none, remap
from emolens.preprocess import crop_box

FORMATS: tuple[str, ...] = (
    "split-folders", "fer2013-csv", "yolo", "class-folders", "eval-folder", "packed", "utkface", "utkface-eval",
)
UTKFACE_VAL_SHARE = 0.1
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Dataset image files: the decoder's suffixes but .gif, .ppm and .pgm, which datasets do not ship.
IMAGE_EXTENSIONS = IMAGE_SUFFIXES - {".gif", ".ppm", ".pgm"}

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
_CSV_SIDE = 48  # fer2013.csv rows are 48×48 grayscale
_LAYOUTS_HELP = (
    "split folders (train/<class>/, validation|val|valid/<class>/, test/<class>/, optionally under images/), "
    "a fer2013.csv, a YOLO data.yaml with <split>/images and <split>/labels, "
    "or class folders (<class>/*.jpg, e.g. angry/ happy/)"
)


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

    pixels: np.ndarray = field(default_factory=lambda: np.empty((0, _CSV_SIDE, _CSV_SIDE, 1), np.uint8))
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
            raise KeyError(f"{self.root}: no split {name!r}; available splits: {', '.join(self.splits) or 'none'}")
        return self.splits[key]


def load_dataset(
    path: str | Path,
    format: str = "auto",
    selection: ClassSelection | None = None,
    split_ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    box_margin: float = 0.0,
    box_square: bool = True,
) -> Dataset:
    """Read a dataset in any supported layout (auto-detected unless ``format`` is given).

    ``selection`` keeps/drops/merges classes and relabels; ``split_ratios`` and ``seed`` drive the
    stratified split of a ``class-folders`` dataset; ``box_margin`` widens YOLO boxes per side and
    ``box_square`` squares them (a model's ``CropSpec.margin`` and ``.square``, as at inference).
    Skipped samples are reported as :class:`DatasetWarning` and listed in ``Dataset.warnings``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in FORMATS:
        raise DatasetError(f"unknown dataset format {format!r}: expected auto or one of {', '.join(FORMATS)}")
    issues: list[str] = []
    name = ""
    if fmt == "packed":
        name, classes, splits = _read_packed(path)
    elif fmt == "split-folders":
        classes, splits = _read_split_folders(path)
    elif fmt == "fer2013-csv":
        classes, splits = _read_csv(_csv_file(path), issues)
    elif fmt == "yolo":
        classes, splits = _read_yolo(path, box_margin, box_square, issues)
    elif fmt in ("utkface", "utkface-eval"):
        classes, splits = _read_utkface(path, fmt == "utkface-eval", seed, issues)
    else:
        files = _class_folders(path)
        classes = sorted(files)
        paths, labels = _flatten(classes, files)
        if fmt == "eval-folder":
            splits = {"eval": FileSplit("eval", classes, labels, paths=paths, root=path)}
        else:
            splits = {
                split_name: FileSplit(split_name, classes, labels[idx], paths=[paths[i] for i in idx], root=path)
                for split_name, idx in stratified_split(labels, split_ratios, seed).items()
            }
    if selection is not None and not selection.is_identity:
        classes, splits = _apply_selection(classes, splits, selection)
    return Dataset(root=path, format=fmt, classes=classes, splits=splits, warnings=issues, name=name)


def detect_format(path: Path) -> str:
    """Guess the layout of ``path``; a folder of class folders is ``class-folders`` (never ``eval-folder``)."""
    if path.is_file():
        if path.suffix.lower() == ".npz":
            return "packed"
        if path.suffix.lower() == ".csv":
            return "fer2013-csv"
        if path.suffix.lower() in (".yaml", ".yml"):
            return "yolo"
        raise DatasetError(f"{path}: a file that is neither a .csv, a YOLO .yaml nor a packed .npz; expected {_LAYOUTS_HELP}")
    if not path.is_dir():
        raise DatasetError(f"{path}: no such folder")
    if (path / "data.yaml").is_file():
        return "yolo"
    if (path / "fer2013.csv").is_file():
        return "fer2013-csv"
    if _split_folders(path):
        return "split-folders"
    subdirs = _subdirs(path)
    if any(canonical_or_none(d.name) for d in subdirs):
        return "class-folders"
    if not subdirs and any(parse_utkface_name(p.name) for p in _images_in(path)[:20]):
        return "utkface"
    if _csv_candidates(path):
        return "fer2013-csv"
    found = ", ".join(d.name for d in subdirs[:10]) or "no subfolders"
    raise DatasetError(f"{path}: no known dataset layout (found {found}); expected {_LAYOUTS_HELP}")


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


# --- layouts ---------------------------------------------------------------------------------


def _subdirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _split_folders(path: Path) -> dict[str, Path]:
    """Canonical split name → folder, for ``path`` or its ``images/`` child; {} when there are none."""
    for base in (path, path / "images"):
        if not base.is_dir():
            continue
        found: dict[str, Path] = {}
        for d in _subdirs(base):
            name = canonical_split(d.name)
            if name not in SPLITS:
                continue
            if name in found:
                raise DatasetError(f"{base}: both {found[name].name}/ and {d.name}/ are the {name!r} split; keep one")
            found[name] = d
        if found:
            return found
    return {}


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    """Canonical class → sorted image files of each class folder in ``folder``."""
    out: dict[str, list[Path]] = {}
    subdirs = _subdirs(folder)
    if not subdirs:
        raise DatasetError(f"{folder}: no class folders; expected one folder per emotion (e.g. angry/, happy/)")
    for d in subdirs:
        name = canonical_or_none(d.name)
        if name is None:
            raise DatasetError(
                f"{d}: folder name {d.name!r} is not an emotion class; expected class folders named like "
                "anger/angry, happy, sad, surprise, fear, disgust, neutral, contempt"
            )
        if name in out:
            raise DatasetError(f"{d}: a second folder for class {name!r} in {folder}; keep one")
        files = _images_in(d)
        if not files:
            raise DatasetError(f"{d}: empty class folder; expected image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
        out[name] = files
    return out


def _flatten(classes: list[str], files: dict[str, list[Path]]) -> tuple[list[Path], np.ndarray]:
    paths = [p for c in classes for p in files.get(c, [])]
    labels = np.concatenate([np.full(len(files.get(c, [])), k, np.int64) for k, c in enumerate(classes)])
    return paths, labels


def _read_split_folders(path: Path) -> tuple[list[str], dict[str, Split]]:
    folders = _split_folders(path)
    if not folders:
        raise DatasetError(
            f"{path}: no split folders; expected train/, validation|val|valid/ or test/ (optionally under images/)"
        )
    per_split = {name: _class_folders(folders[name]) for name in SPLITS if name in folders}
    classes = sorted({c for files in per_split.values() for c in files})
    splits: dict[str, Split] = {}
    for name, files in per_split.items():
        paths, labels = _flatten(classes, files)
        splits[name] = FileSplit(name, classes, labels, paths=paths, root=path)
    return classes, splits


def _csv_candidates(folder: Path) -> list[Path]:
    if (folder / "fer2013.csv").is_file():
        return [folder / "fer2013.csv"]
    found = sorted(folder.glob("*.csv"))
    return found if len(found) == 1 else []


def _csv_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = _csv_candidates(path)
    if not found:
        raise DatasetError(f"{path}: no fer2013.csv (or single .csv file) in this folder")
    return found[0]


def _read_csv(path: Path, issues: list[str]) -> tuple[list[str], dict[str, Split]]:
    """Read fer2013.csv: columns emotion (0-6), pixels (2304 space-separated values), Usage."""
    classes = list(FER2013_CSV_LABELS)
    expected = _CSV_SIDE * _CSV_SIDE
    per_split: dict[str, tuple[list[np.ndarray], list[int], list[int]]] = {}
    bad: list[str] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip().lower() for h in next(reader, [])]
        if not {"emotion", "pixels", "usage"} <= set(header):
            raise DatasetError(
                f"{path}: malformed header {','.join(header) or '(empty file)'}; expected columns emotion,pixels,Usage"
            )
        ie, ip, iu = header.index("emotion"), header.index("pixels"), header.index("usage")
        for row_no, row in enumerate(reader, start=1):
            if not row:
                continue
            try:
                label = int(row[ie])
                split = canonical_split(row[iu])
                with warnings.catch_warnings():  # fromstring warns on a non-numeric token; the count check reports it
                    warnings.simplefilter("ignore", DeprecationWarning)
                    values = np.fromstring(row[ip], dtype=np.int32, sep=" ")
            except (ValueError, IndexError):
                bad.append(f"row {row_no} (unparsable)")
                continue
            if not 0 <= label < len(classes):
                bad.append(f"row {row_no} (emotion {label}, expected 0-{len(classes) - 1})")
            elif split not in SPLITS:
                bad.append(f"row {row_no} (Usage {row[iu]!r}, expected Training, PublicTest or PrivateTest)")
            elif values.size != expected or values.min() < 0 or values.max() > 255:
                bad.append(f"row {row_no} ({values.size} pixel values, expected {expected} in 0-255)")
            else:
                pixels, labels, rows = per_split.setdefault(split, ([], [], []))
                pixels.append(values.astype(np.uint8).reshape(_CSV_SIDE, _CSV_SIDE, 1))
                labels.append(label)
                rows.append(row_no)
    if bad:
        _warn(issues, f"{path}: skipped {len(bad)} bad row(s): {_first(bad)}")
    if not per_split:
        raise DatasetError(f"{path}: no valid rows; expected emotion,pixels,Usage rows with {expected} pixel values")
    splits: dict[str, Split] = {}
    for name in (s for s in SPLITS if s in per_split):
        pixels, labels, rows = per_split[name]
        splits[name] = ArraySplit(
            name,
            classes,
            np.asarray(labels, np.int64),
            pixels=np.stack(pixels),
            rows=np.asarray(rows, np.int64),
            source=path,
        )
    return classes, splits


def _read_yolo(path: Path, box_margin: float, box_square: bool, issues: list[str]) -> tuple[list[str], dict[str, Split]]:
    yaml_path = path if path.is_file() else path / "data.yaml"
    root = yaml_path.parent
    try:
        spec = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise DatasetError(f"{yaml_path}: cannot read YOLO data.yaml ({e})") from e
    names = spec.get("names") if isinstance(spec, dict) else None
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{yaml_path}: expected a 'names' list of emotion classes")
    classes = []
    for n in names:
        c = canonical_or_none(str(n))
        if c is None or c in classes:
            raise DatasetError(
                f"{yaml_path}: class name {n!r} is not an emotion or is repeated; expected distinct emotion names"
            )
        classes.append(c)
    base = root / spec.get("path", ".")
    images_dirs = {}
    for key in ("train", "val", "test"):
        if isinstance(spec.get(key), str):
            rel = spec[key]
            # Roboflow exports write "../train/images" although the folders sit beside data.yaml.
            found = next((p for p in (base / rel, root / rel.removeprefix("../")) if p.is_dir()), None)
            if found is None:
                raise DatasetError(f"{yaml_path}: {key} images folder {rel!r} not found under {base}")
            images_dirs[key] = found
    if not images_dirs:  # no paths in the yaml: look for <split>/images folders
        images_dirs = {n: d / "images" for n, d in _split_folders(root).items() if (d / "images").is_dir()}
    if not images_dirs:
        raise DatasetError(
            f"{yaml_path}: no split folders; expected train/images and valid/images (or train:/val: in the yaml)"
        )
    splits = {name: _yolo_split(name, classes, d, box_margin, box_square, issues, root) for name, d in images_dirs.items()}
    return classes, splits


def _yolo_split(
    name: str, classes: list[str], images_dir: Path, box_margin: float, box_square: bool, issues: list[str], root: Path
) -> FileSplit:
    labels_dir = images_dir.parent / "labels" if images_dir.name == "images" else images_dir
    images = {p.stem: p for p in _images_in(images_dir)}
    label_files = {p.stem: p for p in labels_dir.glob("*.txt")} if labels_dir.is_dir() else {}
    orphans = sorted(label_files.keys() - images.keys())
    if orphans:
        names = _first([label_files[s].name for s in orphans])
        _warn(issues, f"{labels_dir}: {len(orphans)} label file(s) without an image: {names}")
    unlabelled = sorted(images.keys() - label_files.keys())
    if unlabelled:
        names = _first([images[s].name for s in unlabelled])
        _warn(issues, f"{images_dir}: {len(unlabelled)} image(s) without a label file, skipped: {names}")
    paths: list[Path] = []
    labels: list[int] = []
    boxes: list[list[float]] = []
    lines_of_boxes: list[int] = []
    empty: list[str] = []
    for stem in sorted(images.keys() & label_files.keys()):
        label_file = label_files[stem]
        lines = [ln.split() for ln in label_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if not lines:
            empty.append(label_file.name)
        for line_no, parts in enumerate(lines, start=1):
            try:
                cls, box = int(parts[0]), [float(v) for v in parts[1:]]
            except ValueError:
                cls, box = -1, []
            if len(box) != 4 or not 0 <= cls < len(classes) or box[2] <= 0 or box[3] <= 0:
                raise DatasetError(
                    f"{label_file}: line {line_no} {' '.join(parts)!r}; expected 'class xc yc w h' "
                    f"with class 0-{len(classes) - 1} and normalised box"
                )
            paths.append(images[stem])
            labels.append(cls)
            boxes.append(box)
            lines_of_boxes.append(line_no)
    if empty:
        _warn(issues, f"{labels_dir}: {len(empty)} empty label file(s) (no face box), skipped: {_first(empty)}")
    return FileSplit(
        name,
        classes,
        np.asarray(labels, np.int64),
        paths=paths,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        box_margin=box_margin,
        box_square=box_square,
        root=root,
        box_lines=np.asarray(lines_of_boxes, np.int64),
    )


def _read_utkface(path: Path, whole: bool, seed: int, issues: list[str]) -> tuple[list[str], dict[str, Split]]:
    """A folder of UTKFace-named images: age-bin labels, split into train/val by :func:`group_split`."""
    if not path.is_dir():
        raise DatasetError(f"{path}: expected a folder of UTKFace images named <age>_<gender>_<race>_<datetime>.jpg")
    paths, ages, bad = [], [], []
    for p in _images_in(path):
        parsed = parse_utkface_name(p.name)
        if parsed is None:
            bad.append(p.name)
        else:
            paths.append(p)
            ages.append(parsed[0])
    if bad:
        _warn(issues, f"{path}: skipped {len(bad)} file(s) not named <age>_<gender>_<race>_<datetime>: {_first(bad)}")
    if not paths:
        raise DatasetError(f"{path}: no UTKFace images; expected files named <age>_<gender>_<race>_<datetime>.jpg")
    classes = list(AGE_CLASSES)
    labels = age_bin(ages)
    if whole:
        return classes, {"eval": FileSplit("eval", classes, labels, paths=paths, root=path)}
    parts = group_split([_file_digest(p) for p in paths], UTKFACE_VAL_SHARE, seed)
    return classes, {
        name: FileSplit(name, classes, labels[idx], paths=[paths[i] for i in idx], root=path) for name, idx in parts.items()
    }


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
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError as e:
        raise ImageReadError(f"{path}: cannot read image file ({e.strerror or e})") from e


def _read_packed(path: Path) -> tuple[str, list[str], dict[str, Split]]:
    """A packed dataset (see :mod:`emolens.data.pack`): name, classes and its splits."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path}: cannot read packed dataset ({e}); expected an .npz written by `emolens data pack`") from e
    try:
        classes = [str(c) for c in arrays["classes"]]
        name = str(arrays["name"])
        splits: dict[str, Split] = {}
        for split_name in (s for s in (*SPLITS, "eval") if f"{s}_images" in arrays):
            images, labels = arrays[f"{split_name}_images"], arrays[f"{split_name}_labels"].astype(np.int64)
            if images.dtype != np.uint8 or images.ndim != 4 or len(images) != len(labels):
                raise DatasetError(f"{path}: split {split_name!r} is not uint8 N×H×W×C images with N labels")
            splits[split_name] = ArraySplit(
                split_name, classes, labels, pixels=images, rows=np.arange(1, len(labels) + 1),
                source=path, keys=arrays[f"{split_name}_keys"],
            )
    except KeyError as e:
        raise DatasetError(f"{path}: packed dataset lacks {e}; expected an .npz written by `emolens data pack`") from e
    if not splits:
        raise DatasetError(f"{path}: packed dataset holds no splits")
    return name, classes, splits


def _apply_selection(
    classes: list[str], splits: dict[str, Split], selection: ClassSelection
) -> tuple[list[str], dict[str, Split]]:
    new_classes, mapping = selection.apply(classes)
    targets = [mapping[c] for c in classes]
    out = {}
    for name, split in splits.items():
        relabelled = remap(split.labels, targets, new_classes)
        keep = np.flatnonzero(relabelled >= 0)
        out[name] = split.take(keep, new_classes, relabelled[keep])
    return new_classes, out


def _file_signature(path: Path) -> bytes:
    st = path.stat()
    return f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()


def _first(items: list[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _warn(issues: list[str], message: str) -> None:
    issues.append(message)
    warnings.warn(message, DatasetWarning, stacklevel=3)
