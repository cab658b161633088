"""The registry of dataset layouts (timm style): name → reader, and auto-detection in one place.

A layout module registers its reader with :func:`register_format`, optionally with detection
rules ``{priority: predicate}``; :func:`detect_format` tries every rule of every format, lowest
priority first (registration order breaks ties), and the first predicate that holds names the format.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from emolens.data.formats.folders import subdirs
from emolens.data.splits import Split
from emolens.errors import DatasetError, DatasetWarning
from emolens.preprocess import CropSpec

LAYOUTS_HELP = (
    "split folders (train/<class>/, validation|val|valid/<class>/, test/<class>/, optionally under images/), "
    "a fer2013.csv, a YOLO data.yaml with <split>/images and <split>/labels, "
    "or class folders (<class>/*.jpg, e.g. angry/ happy/)"
)


@dataclass
class ReadOptions:
    """What a reader may use besides the path: the model's crop spec (``margin`` and ``square``
    cut box datasets), the seeded split of unsplit layouts, and the list that collects warnings.
    ``for_model``: the crop spec is a run's or model's (``load_dataset(crop=...)``), so faces cut
    beforehand (packs) must have been cut with its margin."""

    crop: CropSpec = field(default_factory=lambda: CropSpec(margin=0.0))
    split_ratios: Sequence[float] = (0.8, 0.1, 0.1)
    seed: int = 0
    for_model: bool = False
    issues: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        """Report skipped samples: kept in ``issues`` (``Dataset.warnings``) and warned as :class:`DatasetWarning`."""
        self.issues.append(message)
        warnings.warn(message, DatasetWarning, stacklevel=3)


class Layout(NamedTuple):
    """What a reader returns: canonical classes, splits by canonical name, and an optional dataset name."""

    classes: list[str]
    splits: dict[str, Split]
    name: str = ""


Reader = Callable[[Path, ReadOptions], Layout]
Detector = Callable[[Path], bool]


@dataclass(frozen=True)
class DatasetFormat:
    """A registered layout: its reader and its auto-detection rules (priority → predicate)."""

    name: str
    read: Reader
    detect: Mapping[int, Detector]


_REGISTRY: dict[str, DatasetFormat] = {}


def register_format(name: str, *, detect: Mapping[int, Detector] | None = None) -> Callable[[Reader], Reader]:
    """Decorator registering ``reader(path, options) -> Layout`` as format ``name``; ``detect``
    maps priorities to predicates ``path -> bool`` (none: the format is only used when asked for)."""

    def wrap(reader: Reader) -> Reader:
        if name in _REGISTRY:
            raise ValueError(f"dataset format {name!r} is registered twice")
        _REGISTRY[name] = DatasetFormat(name, reader, dict(detect or {}))
        return reader

    return wrap


def get_format(name: str) -> DatasetFormat:
    """The registry entry for ``name``; DatasetError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise DatasetError(f"unknown dataset format {name!r}: expected auto or one of {', '.join(_REGISTRY)}") from None


def list_formats() -> tuple[str, ...]:
    """Every registered format name, in registration order."""
    return tuple(_REGISTRY)


def detect_format(path: Path) -> str:
    """Guess the layout of ``path`` from the registered rules; a folder of class folders is
    ``class-folders`` (never ``eval-folder``)."""
    if not path.is_file() and not path.is_dir():
        raise DatasetError(f"{path}: no such folder")
    rules = sorted((priority, order, fmt.name, rule) for order, fmt in enumerate(_REGISTRY.values())
                   for priority, rule in fmt.detect.items())
    for _, _, name, rule in rules:
        if rule(path):
            return name
    if path.is_file():
        raise DatasetError(f"{path}: a file that is neither a .csv, a YOLO .yaml nor a packed .npz; expected {LAYOUTS_HELP}")
    found = ", ".join(d.name for d in subdirs(path)[:10]) or "no subfolders"
    raise DatasetError(f"{path}: no known dataset layout (found {found}); expected {LAYOUTS_HELP}")


def first(items: list[str], n: int = 5) -> str:
    """The first ``n`` names, and how many more, for messages."""
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")
