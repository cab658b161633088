"""``yolo``: a YOLO ``data.yaml`` (``names``, ``train:``/``val:``/``test:`` image folders) with
``<split>/images`` and ``<split>/labels/*.txt`` (AffectNet as exported by Roboflow). Each box is one
sample, cut with the model's crop geometry (:func:`emolens.preprocess.crop_box`) when read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from emolens.data.formats.folders import images_in, split_folders
from emolens.data.formats.registry import Layout, ReadOptions, first, register_format
from emolens.data.splits import FileSplit
from emolens.errors import DatasetError
from emolens.labels import canonical_or_none


def _is_yolo(path: Path) -> bool:
    """A ``.yaml``/``.yml`` file, or a folder with ``data.yaml``."""
    return path.suffix.lower() in (".yaml", ".yml") if path.is_file() else (path / "data.yaml").is_file()


@register_format("yolo", detect={10: _is_yolo})
def read_yolo(path: Path, options: ReadOptions) -> Layout:
    """Classes from the yaml ``names`` (in that order); splits from its image folders, else ``<split>/images``."""
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
        images_dirs = {n: d / "images" for n, d in split_folders(root).items() if (d / "images").is_dir()}
    if not images_dirs:
        raise DatasetError(
            f"{yaml_path}: no split folders; expected train/images and valid/images (or train:/val: in the yaml)"
        )
    splits = {name: _yolo_split(name, classes, d, options, root) for name, d in images_dirs.items()}
    return Layout(classes, splits)


def _yolo_split(
    name: str, classes: list[str], images_dir: Path, options: ReadOptions, root: Path
) -> FileSplit:
    """One split: a sample per label line (``class xc yc w h``); unmatched files are skipped with a warning."""
    labels_dir = images_dir.parent / "labels" if images_dir.name == "images" else images_dir
    images = {p.stem: p for p in images_in(images_dir)}
    label_files = {p.stem: p for p in labels_dir.glob("*.txt")} if labels_dir.is_dir() else {}
    orphans = sorted(label_files.keys() - images.keys())
    if orphans:
        names = first([label_files[s].name for s in orphans])
        options.warn(f"{labels_dir}: {len(orphans)} label file(s) without an image: {names}")
    unlabelled = sorted(images.keys() - label_files.keys())
    if unlabelled:
        names = first([images[s].name for s in unlabelled])
        options.warn(f"{images_dir}: {len(unlabelled)} image(s) without a label file, skipped: {names}")
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
        options.warn(f"{labels_dir}: {len(empty)} empty label file(s) (no face box), skipped: {first(empty)}")
    return FileSplit(
        name,
        classes,
        np.asarray(labels, np.int64),
        paths=paths,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        box_margin=options.crop.margin,
        box_square=options.crop.square,
        root=root,
        box_lines=np.asarray(lines_of_boxes, np.int64),
    )
