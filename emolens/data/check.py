"""``emolens data check``: counts, unreadable files, exact duplicates/leakage, sizes and colour modes."""

from __future__ import annotations

import hashlib
import io
import warnings
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from emolens.age import is_age_model
from emolens.data.datasets import load_dataset
from emolens.data.splits import ArraySplit, FileSplit, Split
from emolens.errors import DatasetWarning
from emolens.figures import new_figure, save_figure
from emolens.progress import Tracked


@dataclass
class _Item:
    """One stored image (a file, or a CSV row) as seen by the check."""

    name: str
    label: str
    digest: str
    size: str | None
    mode: str | None
    error: str | None


@dataclass
class SplitReport:
    """What the check found in one split (``images`` counts samples; YOLO: face boxes)."""

    images: int
    classes: dict[str, int]
    sizes: dict[str, int]
    modes: dict[str, int]
    unreadable: list[dict[str, str]]
    duplicate_groups: list[list[str]]

    @property
    def duplicate_files(self) -> int:
        """Copies beyond the first of each duplicate group."""
        return sum(len(g) - 1 for g in self.duplicate_groups)


@dataclass
class CheckReport:
    """The whole check: per-split reports, duplicates across splits, and the reader's warnings."""

    root: str
    format: str
    classes: list[str]
    splits: dict[str, SplitReport]
    cross_split_duplicates: list[dict[str, list[str]]] = field(default_factory=list)
    #: Over the whole dataset: groups of byte-identical images and copies beyond the first.
    duplicates_total: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain JSON-ready data, with duplicate totals alongside the groups."""
        out = asdict(self)
        for name, split in self.splits.items():
            out["splits"][name]["duplicate_files"] = split.duplicate_files
        out["cross_split_files"] = self.cross_split_files()
        return out

    def cross_split_files(self) -> dict[str, int]:
        """Per split, how many of its files have a byte-identical copy in another split."""
        counts = Counter(s for g in self.cross_split_duplicates for s in g["splits"])
        return {name: counts.get(name, 0) for name in self.splits}


def check_dataset(path: str | Path, format: str = "auto", workers: int = 2) -> CheckReport:
    """Inspect every image of every split; file problems are reported (a path in no layout raises DatasetError)."""
    with warnings.catch_warnings():  # the reader's warnings are part of the report
        warnings.simplefilter("ignore", DatasetWarning)
        dataset = load_dataset(path, format=format)
    items_per_split = {name: _inspect_split(split, workers) for name, split in dataset.splits.items()}
    splits = {name: _split_report(split, items_per_split[name]) for name, split in dataset.splits.items()}
    return CheckReport(
        root=str(dataset.root),
        format=dataset.format,
        classes=dataset.classes,
        splits=splits,
        cross_split_duplicates=_cross_split_duplicates(items_per_split),
        duplicates_total=_duplicates_total(items_per_split),
        warnings=dataset.warnings,
    )


def _inspect_split(split: Split, workers: int) -> list[_Item]:
    if isinstance(split, ArraySplit):
        return [
            _Item(
                split.describe(i),
                split.classes[split.labels[i]],
                _digest(split.pixels[i].tobytes()),
                f"{split.pixels.shape[2]}x{split.pixels.shape[1]}",
                "L",
                None,
            )
            for i in range(len(split))
        ]
    assert isinstance(split, FileSplit)
    first: dict[Path, int] = {}  # a YOLO image with several boxes is one file
    for i, p in enumerate(split.paths):
        first.setdefault(p, i)
    labels = [split.classes[split.labels[i]] for i in first.values()]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(Tracked(pool.map(_inspect_file, first, labels, chunksize=64), f"checking {split.name}",
                            total=len(first)))


def _inspect_file(path: Path, label: str) -> _Item:
    try:
        data = path.read_bytes()
    except OSError as e:
        return _Item(str(path), label, "", None, None, f"cannot read: {e.strerror or e}")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # full decode: a truncated file fails here
            return _Item(str(path), label, _digest(data), f"{im.width}x{im.height}", im.mode, None)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return _Item(str(path), label, _digest(data), None, None, f"{type(e).__name__}: {e}")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _split_report(split: Split, items: list[_Item]) -> SplitReport:
    groups: dict[str, list[str]] = defaultdict(list)
    for it in items:
        if it.digest:
            groups[it.digest].append(it.name)
    return SplitReport(
        images=len(split),
        classes=split.counts(),
        sizes=dict(Counter(it.size for it in items if it.size).most_common()),
        modes=dict(Counter(it.mode for it in items if it.mode).most_common()),
        unreadable=[{"file": it.name, "error": it.error} for it in items if it.error],
        duplicate_groups=[g for g in groups.values() if len(g) > 1],
    )


def _cross_split_duplicates(items_per_split: dict[str, list[_Item]]) -> list[dict[str, list[str]]]:
    """Byte-identical images found in more than one split (leakage), with their splits and classes."""
    by_digest: dict[str, list[tuple[str, _Item]]] = defaultdict(list)
    for name, items in items_per_split.items():
        for it in items:
            if it.digest:
                by_digest[it.digest].append((name, it))
    return [
        {
            "files": [it.name for _, it in group],
            "splits": [s for s, _ in group],
            "classes": [it.label for _, it in group],
        }
        for group in by_digest.values()
        if len({s for s, _ in group}) > 1
    ]


def _duplicates_total(items_per_split: dict[str, list[_Item]]) -> dict[str, int]:
    counts = Counter(it.digest for items in items_per_split.values() for it in items if it.digest)
    sizes = [n for n in counts.values() if n > 1]
    return {"groups": len(sizes), "extra_files": sum(sizes) - len(sizes)}


def plot_distribution(report: CheckReport, out: Path) -> Path:
    """Grouped bar chart of images per class (an age dataset: per year of age) and split, written
    atomically to ``out`` (PNG)."""
    import numpy as np

    age = is_age_model(report.classes)  # an age histogram: one bar per year
    x = np.arange(len(report.classes))
    width = 0.8 / max(1, len(report.splits))
    fig = new_figure(figsize=(12 if age else max(6, len(report.classes) * 1.1), 4), layout="constrained")
    ax = fig.subplots()
    for k, (name, split) in enumerate(report.splits.items()):
        ax.bar(x + k * width - 0.4 + width / 2, [split.classes.get(c, 0) for c in report.classes], width, label=name)
    if age:
        ax.set_xticks(x[::10], report.classes[::10])
        ax.set_xlabel(f"age (years; {report.classes[-1]} = {report.classes[-1]} or older)")
    else:
        ax.set_xticks(x, report.classes, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.set_title(f"{'age histogram' if age else 'class distribution'}: {Path(report.root).name} ({report.format})")
    ax.legend()
    return save_figure(fig, out, format="png", dpi=100)
