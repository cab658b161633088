"""Training data from several datasets at once: one class space, soft targets, class masks.

A training source is written ``PATH[,key=value...]`` (repeatable ``--data``), keys:

- ``format``: the dataset layout (default auto); ``name``: its name in reports and sample keys;
- ``weight``: sampling weight — each epoch draws ``weight × size`` of its training samples
  (with replacement above 1);
- ``votes``: a CSV of crowd votes per image (FER+ layout: ``path`` relative to the dataset root,
  one column per emotion, extra columns such as ``unknown``/``nf`` ignored);
  ``label_mix``: the share of the dataset's own label in the target when votes exist
  (target = label_mix × one-hot + (1 − label_mix) × vote distribution);
- ``keep``/``drop``/``merge``: class selection for this source (``+`` separates names in a list);
- ``margin``: the face-box margin for this source's boxes (box layouts such as YOLO; default the
  run's ``--margin``), e.g. a second copy of a box dataset cut at another framing. A renamed copy
  (``name=``) finds teacher outputs saved under its dataset's own name.
- ``unlabeled=1``: a transfer set: the faces of the dataset's train split without their labels
  (any layout, e.g. UTKFace for an expression model); their targets are all NaN until an online
  teacher (``train --teacher-model``) labels each augmented view, and they have no validation set.

A run may hold out one fold of every source's training images (``holdout="K/N"``, see
:func:`in_fold`): teachers trained without fold K label exactly those images in ``emolens teach``,
so a student is distilled from outputs of teachers that never saw the image (cross-fitting).

The run's classes are the sorted union of every source's classes. Each sample's target is a
probability vector over them with NaN where its dataset does not define a class, so its loss
covers only the classes its dataset knows.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from emolens.data.cache import load_arrays
from emolens.data.datasets import load_dataset
from emolens.errors import ConfigError, DatasetError
from emolens.labels import ClassSelection, canonical_or_none
from emolens.preprocess import CropSpec

VAL_SPLITS = ("val", "test", "eval")


@dataclass(frozen=True)
class SourceSpec:
    """One ``--data`` entry."""

    path: str
    format: str = "auto"
    name: str = ""
    weight: float = 1.0
    votes: str | None = None
    label_mix: float = 0.5
    keep: str | None = None
    drop: str | None = None
    merge: str | None = None
    margin: float | None = None
    unlabeled: bool = False

    def __post_init__(self) -> None:
        if self.weight <= 0:
            raise ConfigError(f"--data {self.path}: weight must be positive, got {self.weight}")
        if not 0.0 <= self.label_mix <= 1.0:
            raise ConfigError(f"--data {self.path}: label_mix must be in [0, 1], got {self.label_mix}")
        if self.margin is not None and not -0.4 <= self.margin <= 1.0:
            raise ConfigError(f"--data {self.path}: margin must be in [-0.4, 1], got {self.margin}")

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        """``PATH[,key=value...]``, e.g. ``data/fer2013,votes=ferplus-votes.csv,label_mix=0.5``."""
        path, *options = text.split(",")
        known = [f.name for f in fields(cls) if f.name != "path"]
        values: dict[str, object] = {}
        for option in options:
            key, sep, value = option.partition("=")
            key = key.strip()
            if not sep or key not in known:
                raise ConfigError(f"--data {text!r}: option {option!r} is not KEY=VALUE with KEY one of {', '.join(known)}")
            if key == "unlabeled":
                if value.lower() not in ("0", "1", "true", "false"):
                    raise ConfigError(f"--data {text!r}: unlabeled must be 1 or 0, got {value!r}")
                values[key] = value.lower() in ("1", "true")
            elif key in ("weight", "label_mix", "margin"):
                try:
                    values[key] = float(value)
                except ValueError:
                    raise ConfigError(f"--data {text!r}: {key} must be a number, got {value!r}") from None
            else:
                values[key] = value.replace("+", ",") if key in ("keep", "drop") else value
        return cls(path=path, **values)  # type: ignore[arg-type]


@dataclass
class SourceData:
    """One source's decoded training and validation data over the run's classes."""

    name: str
    dataset_name: str  # the dataset's own name (teacher outputs saved before a rename)
    classes: list[str]  # the dataset's own classes
    mask: np.ndarray  # bool K: the run's classes this source defines
    train_images: np.ndarray
    train_targets: np.ndarray  # float32 N×K, NaN outside ``mask``
    train_keys: np.ndarray
    val_name: str
    val_images: np.ndarray
    val_labels: np.ndarray  # int64 indices into the run's classes
    val_vote_labels: np.ndarray | None = None  # plurality of the votes (-1: tie or no votes)
    weight: float = 1.0
    notes: list[str] = field(default_factory=list)
    labelled: bool = True  # False: a transfer set (targets all NaN, no validation images)
    train_view: np.ndarray | None = None  # the training faces at ``load_source``'s ``train_crop``, when asked


def union_classes(class_lists: Sequence[Sequence[str]]) -> list[str]:
    """The sorted union of several class lists."""
    return sorted({c for classes in class_lists for c in classes})


def read_votes(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Vote counts per image from a FER+-style CSV: (emotion columns in canonical names, {path: counts})."""
    path = Path(path).expanduser()
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            if not header or header[0].strip().lower() != "path":
                raise DatasetError(f"{path}: expected a votes CSV whose first column is 'path' (FER+ layout)")
            columns = [(i, c) for i, h in enumerate(header[1:], 1) if (c := canonical_or_none(h)) is not None]
            if not columns:
                raise DatasetError(f"{path}: no emotion columns in the header ({', '.join(header)})")
            votes = {}
            for line_no, row in enumerate(reader, start=2):
                try:
                    votes[row[0]] = np.array([float(row[i]) for i, _ in columns], np.float32)
                except (ValueError, IndexError):
                    raise DatasetError(f"{path}: line {line_no} is not a path followed by vote counts") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read votes CSV ({e.strerror or e})") from e
    return [c for _, c in columns], votes


def vote_matrix(keys: np.ndarray, votes: dict[str, np.ndarray], columns: list[str], classes: list[str]) -> np.ndarray:
    """Vote counts (N×K over ``classes``) for each key; NaN rows where an image has no votes."""
    out = np.full((len(keys), len(classes)), np.nan, np.float32)
    cols = [classes.index(c) for c in columns]
    for i, key in enumerate(keys):
        v = votes.get(str(key))
        if v is not None and v.sum() > 0:
            out[i] = 0.0
            out[i, cols] = v
    return out


def plurality(counts: np.ndarray) -> np.ndarray:
    """Index of the single most-voted class per row; -1 for ties and rows without votes."""
    filled = np.nan_to_num(counts, nan=-1.0)
    top = filled.max(axis=1, keepdims=True)
    unique = ((filled == top).sum(axis=1) == 1) & (top[:, 0] > 0)
    return np.where(unique, filled.argmax(axis=1), -1)


def parse_holdout(text: str | None) -> tuple[int, int] | None:
    """``"K/N"`` → (K, N): fold K (0-based) of N held out of training; None stays None."""
    if text is None:
        return None
    fold, sep, folds = str(text).partition("/")
    try:
        k, n = int(fold), int(folds)
    except ValueError:
        k = n = -1
    if not sep or n < 2 or not 0 <= k < n:
        raise ConfigError(f"holdout must be K/N with N ≥ 2 and 0 ≤ K < N (e.g. 0/2), got {text!r}")
    return k, n


def in_fold(keys: Sequence[str] | np.ndarray, fold: int, folds: int) -> np.ndarray:
    """bool N: the samples in ``fold`` of ``folds``, chosen by a hash of each sample's key, so that
    training and `emolens teach` agree whatever the sample order, cache or other sources."""
    return np.array(
        [int.from_bytes(hashlib.blake2b(str(k).encode(), digest_size=8).digest(), "little") % folds == fold for k in keys],
        bool,
    ).reshape(len(keys))


def load_source(spec: SourceSpec, classes: list[str], crop: CropSpec, *, cache_dir: Path | None = None,
                holdout: tuple[int, int] | None = None, train_crop: CropSpec | None = None) -> SourceData:
    """Decode one source's train and validation splits with targets over the run's ``classes``
    (layouts that emolens splits itself are split with load_dataset's fixed seed, as `evaluate` does);
    ``holdout`` = (K, N) leaves fold K of N of the training images out; ``train_crop``: a second
    size and channel count for the training images (``train_view``, an online teacher's larger
    view of the same faces)."""
    if spec.margin is not None:
        crop = replace(crop, margin=spec.margin)
    view = None if train_crop is None else replace(crop, size=train_crop.size, channels=train_crop.channels)
    if spec.unlabeled:
        return _transfer_set(spec, len(classes), crop, view, cache_dir)
    dataset = load_dataset(
        spec.path, format=spec.format, selection=ClassSelection.parse(spec.keep, spec.drop, spec.merge), crop=crop,
    )
    val_name = next((n for n in VAL_SPLITS if n in dataset.splits), None)
    if "train" not in dataset.splits or val_name is None:
        raise DatasetError(f"{spec.path}: training needs a train split and a val/test split, found {', '.join(dataset.splits)}")
    to_run = np.array([classes.index(c) for c in dataset.classes])
    mask = np.zeros(len(classes), bool)
    mask[to_run] = True

    def arrays(split: str, spec: CropSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return load_arrays(
            dataset.split(split), spec.size, spec.channels, cache_dir=cache_dir, contrast=spec.contrast, with_keys=True
        )

    x_train, y_train, k_train = arrays("train", crop)
    x_view = arrays("train", view)[0] if view is not None else None
    x_val, y_val, k_val = arrays(val_name, crop)
    targets = np.zeros((len(y_train), len(classes)), np.float32)
    targets[np.arange(len(y_train)), to_run[y_train]] = 1.0
    notes: list[str] = []
    val_votes = None
    if spec.votes:
        columns, votes = read_votes(spec.votes)
        unknown = [c for c in columns if c not in classes]
        if unknown:
            raise DatasetError(f"{spec.votes}: vote classes {', '.join(unknown)} are not among the run's classes")
        mask[[classes.index(c) for c in columns]] = True
        counts = vote_matrix(k_train, votes, columns, classes)
        has = ~np.isnan(counts[:, 0])
        dist = counts[has] / counts[has].sum(axis=1, keepdims=True)
        targets[has] = spec.label_mix * targets[has] + (1.0 - spec.label_mix) * dist
        val_votes = plurality(vote_matrix(k_val, votes, columns, classes))
        notes.append(f"votes for {has.sum()} of {len(has)} training images (label_mix {spec.label_mix})")
        if not has.any():
            raise DatasetError(f"{spec.votes}: no vote row matches an image of {spec.path} (paths must be relative to its root)")
    targets[:, ~mask] = np.nan
    if holdout is not None:
        keep = ~in_fold(k_train, *holdout)
        notes.append(f"fold {holdout[0]}/{holdout[1]} held out: trains on {keep.sum()} of {len(keep)}")
        x_train, targets, k_train = x_train[keep], targets[keep], k_train[keep]
        x_view = x_view[keep] if x_view is not None else None
    return SourceData(
        name=spec.name or dataset.name, dataset_name=dataset.name, classes=list(dataset.classes), mask=mask,
        train_images=x_train, train_targets=targets, train_keys=k_train,
        val_name=val_name, val_images=x_val, val_labels=to_run[y_val], val_vote_labels=val_votes,
        weight=spec.weight, notes=notes, train_view=x_view,
    )


def _transfer_set(spec: SourceSpec, num_classes: int, crop: CropSpec, view: CropSpec | None,
                  cache_dir: Path | None) -> SourceData:
    """An unlabeled source: its train split's faces (its first split's when it has none), all-NaN
    targets, no validation images."""
    dataset = load_dataset(spec.path, format=spec.format, crop=crop)
    split = "train" if "train" in dataset.splits else next(iter(dataset.splits), "train")

    def arrays(spec: CropSpec) -> tuple[np.ndarray, ...]:
        return load_arrays(dataset.split(split), spec.size, spec.channels, cache_dir=cache_dir, contrast=spec.contrast,
                           with_keys=True)

    images, _, keys = arrays(crop)
    empty = np.zeros((0, crop.size, crop.size, crop.channels), np.uint8)
    return SourceData(
        name=spec.name or dataset.name, dataset_name=dataset.name, classes=[], mask=np.ones(num_classes, bool),
        train_images=images, train_targets=np.full((len(images), num_classes), np.nan, np.float32), train_keys=keys,
        val_name="", val_images=empty, val_labels=np.zeros(0, np.int64), weight=spec.weight,
        notes=[f"unlabeled: {len(images)} faces of its {split} split, labelled by the online teacher"],
        labelled=False, train_view=arrays(view)[0] if view is not None else None,
    )


def source_classes(spec: SourceSpec) -> list[str]:
    """A source's classes after its selection (plus its vote classes), without decoding images;
    none for a transfer set (``unlabeled``)."""
    if spec.unlabeled:
        return []
    dataset = load_dataset(spec.path, format=spec.format, selection=ClassSelection.parse(spec.keep, spec.drop, spec.merge))
    classes = list(dataset.classes)
    if spec.votes:
        classes += [c for c in read_votes(spec.votes)[0] if c not in classes]
    return classes


def smooth_targets(targets: np.ndarray, epsilon: float) -> np.ndarray:
    """Label smoothing within each sample's defined classes (NaN entries stay NaN)."""
    if epsilon <= 0:
        return targets
    defined = ~np.isnan(targets)
    uniform = defined / np.maximum(defined.sum(axis=1, keepdims=True), 1)  # transfer-set rows define none
    return np.where(defined, (1 - epsilon) * np.nan_to_num(targets) + epsilon * uniform, np.nan).astype(np.float32)


def mix_targets(targets: np.ndarray, other: np.ndarray, weight: float) -> np.ndarray:
    """(1 − weight) × targets + weight × ``other`` renormalised over each sample's defined classes;
    rows of ``other`` that are NaN (no teacher output) leave the target as it is."""
    defined = ~np.isnan(targets)
    has = ~np.isnan(other).all(axis=1)
    other = np.where(defined, np.nan_to_num(other), 0.0)
    total = other.sum(axis=1, keepdims=True)
    has &= total[:, 0] > 0
    out = targets.copy()
    out[has] = (1 - weight) * targets[has] + weight * other[has] / total[has]
    out[~defined] = np.nan
    return out


def epoch_indices(sizes: Sequence[int], weights: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """One epoch's shuffled sample order over concatenated sources: ``round(weight × size)`` draws
    from each (every sample once per whole multiple of its weight, the rest drawn without repeats)."""
    parts, offset = [], 0
    for n, w in zip(sizes, weights):
        draws = int(round(w * n))
        whole, rest = divmod(draws, n) if n else (0, 0)
        parts += [offset + np.arange(n)] * whole + [offset + rng.permutation(n)[:rest]]
        offset += n
    order = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    return order[rng.permutation(len(order))]
