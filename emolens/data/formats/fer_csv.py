"""``fer2013-csv``: the original ``fer2013.csv`` (``emotion,pixels,Usage``; 48×48 gray rows), or a
folder holding it (or a single other ``.csv``). Usage Training → ``train``, PublicTest → ``val``,
PrivateTest → ``test``."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from emolens.data.formats.registry import Layout, ReadOptions, first, register_format
from emolens.data.splits import CSV_SIDE, SPLITS, ArraySplit, Split, canonical_split
from emolens.errors import DatasetError
from emolens.labels import FER2013_CSV_LABELS


def _named_csv(path: Path) -> bool:
    """A ``.csv`` file, or a folder with ``fer2013.csv``."""
    return path.suffix.lower() == ".csv" if path.is_file() else (path / "fer2013.csv").is_file()


def _single_csv(path: Path) -> bool:
    """A folder with exactly one ``.csv`` (tried after the folder layouts)."""
    return path.is_dir() and bool(_csv_candidates(path))


@register_format("fer2013-csv", detect={20: _named_csv, 90: _single_csv})
def read_fer_csv(path: Path, options: ReadOptions) -> Layout:
    """Read fer2013.csv: columns emotion (0-6), pixels (2304 space-separated values), Usage;
    bad rows are skipped with a warning."""
    path = _csv_file(path)
    classes = list(FER2013_CSV_LABELS)
    expected = CSV_SIDE * CSV_SIDE
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
                pixels.append(values.astype(np.uint8).reshape(CSV_SIDE, CSV_SIDE, 1))
                labels.append(label)
                rows.append(row_no)
    if bad:
        options.warn(f"{path}: skipped {len(bad)} bad row(s): {first(bad)}")
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
    return Layout(classes, splits)


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
