"""``emolens teach``: save teacher models' outputs for every image of some datasets, so a student
is distilled from a small file alone (``emolens train --teacher FILE``) — the teachers may have
been trained elsewhere, on a GPU.

The file (``.npz``) holds ``classes``, sample ``keys`` (``SOURCE/KEY``, see
:meth:`emolens.data.datasets.Split.key`), ``members`` (the teacher models) and ``probs``
(members × samples × classes, float16): each teacher's class probabilities, averaged over its
test-time augmentation views. A teacher whose run held a fold out (``train --holdout K/N``)
labels only that fold's training images (NaN rows elsewhere), so teachers trained on different
folds give every training image outputs from models that never saw it (cross-fitting); readers
average the members that hold a row. Beside it, a ``.json`` report gives each teacher's and the
ensemble's validation accuracy per source, and their accuracy on the training images they labelled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from emolens.age import AGE_CLASSES, is_age_model, predicted_age
from emolens.data.cache import load_arrays
from emolens.data.datasets import load_dataset
from emolens.data.sources import VAL_SPLITS, SourceSpec, in_fold, plurality, read_votes, union_classes, vote_matrix
from emolens.errors import ConfigError, DatasetError
from emolens.evaluation.evaluate import predict_tta
from emolens.evaluation.predictors import load_predictor
from emolens.files import atomic_path, write_json
from emolens.labels import ClassSelection, remap

Log = Callable[[str], None]


@dataclass
class TeacherOutputs:
    """Saved teacher probabilities, averaged over the chosen members, looked up by sample key."""

    classes: list[str]
    index: dict[str, int]
    probs: np.ndarray  # float32 N×K over ``classes``

    def lookup(self, source: str | Sequence[str], keys: Sequence[str]) -> np.ndarray:
        """Probabilities for ``keys`` of ``source`` (N×K); NaN rows where the file has none. Several
        source names: each key under the first name the file holds it by (a renamed source's own
        name, then its dataset's)."""
        names = [source] if isinstance(source, str) else list(source)
        out = np.full((len(keys), len(self.classes)), np.nan, np.float32)
        for i, key in enumerate(keys):
            j = next((j for name in names if (j := self.index.get(f"{name}/{key}")) is not None), None)
            if j is not None:
                out[i] = self.probs[j]
        return out


def load_teacher_outputs(path: str | Path, classes: Sequence[str], members: str | None = None) -> TeacherOutputs:
    """Read a teacher-outputs file, averaging ``members`` (comma-separated indices; default all),
    with columns in the order of ``classes`` (classes the teachers lack get probability 0)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            file_classes = [str(c) for c in z["classes"]]
            keys = [str(k) for k in z["keys"]]
            probs = z["probs"].astype(np.float32)
    except (OSError, ValueError, KeyError) as e:
        raise DatasetError(f"{path}: expected a teacher-outputs .npz written by `emolens teach` ({e})") from e
    chosen = list(range(len(probs))) if not members else [int(m) for m in members.split(",")]
    if not chosen or any(not 0 <= m < len(probs) for m in chosen):
        raise DatasetError(f"{path}: teacher members {members!r} out of range (the file holds {len(probs)})")
    mean = mean_of_members(probs[chosen])
    out = np.zeros((len(keys), len(classes)), np.float32)
    for j, c in enumerate(classes):
        if c in file_classes:
            out[:, j] = mean[:, file_classes.index(c)]
    return TeacherOutputs(list(classes), {k: i for i, k in enumerate(keys)}, out)


def mean_of_members(probs: np.ndarray) -> np.ndarray:
    """members × N × K → N × K: per sample, the mean over the members that hold it (NaN rows where none does)."""
    held = ~np.isnan(probs[:, :, 0])
    count = held.sum(axis=0)
    total = np.where(held[:, :, None], probs, 0.0).sum(axis=0)
    return np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], np.nan).astype(np.float32)


def _score(probs: np.ndarray, labels: np.ndarray, columns: list[int], age_classes: list[str] | None) -> dict:
    """Over the rows a teacher labelled: their count and the accuracy (age teachers: the MAE in years)."""
    held = ~np.isnan(probs[:, 0])
    if age_classes is None:
        return {"n": int(held.sum()), "acc": _accuracy(probs, labels, columns)}
    err = np.abs(predicted_age(probs[held], age_classes) - labels[held]) if held.any() else np.full(1, np.nan)
    return {"n": int(held.sum()), "mae": float(err.mean())}


def _accuracy(probs: np.ndarray, labels: np.ndarray, columns: list[int]) -> float:
    """Top-1 accuracy with predictions restricted to ``columns`` (labels index the run classes)."""
    keep = (labels >= 0) & ~np.isnan(probs[:, 0])
    if not keep.any():
        return float("nan")
    pred = np.asarray(columns)[probs[:, columns].argmax(axis=1)]
    return float((pred[keep] == labels[keep]).mean())


@dataclass
class _Teachers:
    """The teacher models with what the outputs file needs of them: the run's classes (the union of
    theirs; the age bins for age teachers, ``age_classes`` then set) and each one's held-out fold."""

    models: list[str]
    predictors: list
    classes: list[str]
    age_classes: list[str] | None
    holdouts: list[tuple[int, int] | None]

    @classmethod
    def load(cls, models: Sequence[str | Path], device: str) -> _Teachers:
        predictors = [load_predictor(m, device) for m in models]
        age = [is_age_model(p.classes) for p in predictors]
        if any(age) != all(age):
            raise ConfigError("teachers must be all age models or all expression models")
        classes = list(AGE_CLASSES) if all(age) else union_classes([p.classes for p in predictors])
        holdouts = [getattr(p, "holdout", None) for p in predictors]  # only torch checkpoints record one
        return cls([str(m) for m in models], predictors, classes, classes if all(age) else None, holdouts)


@dataclass
class _SplitOutputs:
    """Every teacher's probabilities (NaN rows: left out by its fold) on one split of one source."""

    name: str
    keys: np.ndarray
    labels: np.ndarray  # indices into the run's classes, -1 where the run lacks the class
    columns: list[int]  # the run classes the source defines
    probs: list[np.ndarray]


def _datasets(teachers: _Teachers, spec: SourceSpec) -> list:
    """The source as each teacher cuts it: box datasets at the teacher's crop margin, or at the
    source's own margin= where given (loaded once per distinct margin)."""
    selection = ClassSelection.parse(spec.keep, spec.drop, spec.merge)
    margins = [p.crop.margin if spec.margin is None else spec.margin for p in teachers.predictors]
    loaded = {m: load_dataset(spec.path, format=spec.format, selection=selection, crop=replace(p.crop, margin=m))
              for m, p in zip(margins, teachers.predictors)}
    return [loaded[m] for m in margins]


def _split_outputs(teachers: _Teachers, spec: SourceSpec, datasets: list, split_name: str, cache_dir: Path | None,
                   tta: str, batch_size: int, log: Log) -> _SplitOutputs | None:
    """Run every teacher over one split of a source (None when the source has no such split)."""
    out = None
    for predictor, holdout, dataset in zip(teachers.predictors, teachers.holdouts, datasets):
        crop = predictor.crop
        if split_name not in dataset.splits:
            return None
        faces, y, keys = load_arrays(dataset.split(split_name), crop.size, crop.channels, cache_dir=cache_dir,
                                     contrast=crop.contrast, with_keys=True)
        if out is None:
            out = _SplitOutputs(spec.name or dataset.name, keys, remap(y, dataset.classes, teachers.classes),
                                [teachers.classes.index(c) for c in dataset.classes if c in teachers.classes], [])
        elif not np.array_equal(out.keys, keys):
            raise ConfigError(f"{spec.path}: teachers decode different samples of {split_name}; use one crop margin")
        rows = in_fold(keys, *holdout) if holdout and split_name == "train" else np.ones(len(keys), bool)
        mapped = np.full((len(keys), len(teachers.classes)), np.nan, np.float32)
        mapped[rows] = 0.0
        if rows.any():
            p = predict_tta(predictor, faces[rows], tta, batch_size)
            mapped[np.ix_(rows, [teachers.classes.index(c) for c in predictor.classes])] = p
        out.probs.append(mapped)
        log(f"{Path(str(predictor.model_name))} on {out.name}/{split_name}: {rows.sum()} faces"
            + (f" (fold {holdout[0]}/{holdout[1]}, left out of its training)" if rows.sum() < len(keys) else ""))
    return out


def _members(teachers: _Teachers, split: _SplitOutputs) -> list[tuple[str, np.ndarray]]:
    """(label, probabilities) of each teacher and of their ensemble on one split."""
    return [*zip(teachers.models, split.probs), ("ensemble", mean_of_members(np.stack(split.probs)))]


def _scores(teachers: _Teachers, split: _SplitOutputs, members: list[tuple[str, np.ndarray]]) -> dict:
    return {label: _score(p, split.labels, split.columns, teachers.age_classes) for label, p in members}


def _val_entry(teachers: _Teachers, spec: SourceSpec, split_name: str, split: _SplitOutputs) -> dict:
    """One source's validation report: each teacher's and the ensemble's score, and their accuracy
    against the vote plurality where the source has votes."""
    members = _members(teachers, split)
    entry: dict = {"split": split_name, "n": int(len(split.labels)), **_scores(teachers, split, members)}
    if spec.votes:
        vote_classes, table = read_votes(spec.votes)
        votes = remap(plurality(vote_matrix(split.keys, table, vote_classes, vote_classes)), vote_classes, teachers.classes)
        vote_columns = sorted(set(split.columns) | {teachers.classes.index(c) for c in vote_classes if c in teachers.classes})
        for label, p in members:
            entry[label]["votes_acc"] = _accuracy(p, votes, vote_columns)
    return entry


def _entry_line(name: str, split_name: str, entry: dict) -> str:
    return f"{name}/{split_name}: " + ", ".join(
        (f"{label} MAE {v['mae']:.3f}" if "mae" in v else f"{label} {v['acc']:.4f}")
        + (f" (votes {v['votes_acc']:.4f})" if "votes_acc" in v else "")
        for label, v in entry.items() if isinstance(v, dict)
    )


def save_teacher_outputs(
    models: Sequence[str | Path],
    sources: Sequence[SourceSpec],
    out: str | Path,
    *,
    tta: str = "tencrop",
    device: str = "cpu",
    batch_size: int = 512,
    cache_dir: Path | None = None,
    log: Log = print,
) -> dict:
    """Run every teacher (with ``tta``) over the train and validation splits of every source;
    write the outputs file and its report; return the report."""
    unlabeled = [s.path for s in sources if s.unlabeled]
    if unlabeled:
        raise ConfigError(f"--data {', '.join(unlabeled)}: a transfer set (unlabeled=1) is labelled while the student "
                          "trains (`train --teacher-model`), not saved by `teach`")
    teachers = _Teachers.load(models, device)
    report: dict = {"models": teachers.models, "tta": tta, "classes": teachers.classes,
                    "holdout": [f"{h[0]}/{h[1]}" if h else None for h in teachers.holdouts], "train": {}, "val": {}}
    keys: list[np.ndarray] = []
    probs: list[list[np.ndarray]] = [[] for _ in teachers.models]
    for spec in sources:
        datasets = _datasets(teachers, spec)
        for split_name in ("train", *VAL_SPLITS):
            split = _split_outputs(teachers, spec, datasets, split_name, cache_dir, tta, batch_size, log)
            if split is None:
                continue
            keys.append(np.char.add(f"{split.name}/", split.keys.astype(str)))
            for member, p in zip(probs, split.probs):
                member.append(p)
            if split_name == "train":  # in-sample, except where a teacher's run held the image out
                report["train"][split.name] = _scores(teachers, split, _members(teachers, split))
                continue
            report["val"][split.name] = _val_entry(teachers, spec, split_name, split)
            log(_entry_line(split.name, split_name, report["val"][split.name]))
            break  # one validation split per source
    if not keys:
        raise DatasetError("no train or validation split found in any source")
    _write(out, teachers.classes, np.concatenate(keys), np.stack([np.concatenate(p) for p in probs]), report, tta)
    return report


def _write(out: str | Path, classes: list[str], keys: np.ndarray, probs: np.ndarray, report: dict, tta: str) -> None:
    """The outputs file (float16 probabilities, atomically) and its JSON report beside it."""
    out = Path(out)
    with atomic_path(out) as tmp, tmp.open("wb") as f:
        np.savez_compressed(f, classes=np.asarray(classes), keys=keys, members=np.asarray(report["models"]),
                            tta=np.asarray(tta), probs=probs.astype(np.float16))
    write_json(out.with_suffix(".json"), report)
