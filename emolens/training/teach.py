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
from emolens.labels import ClassSelection

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
    predictors = [load_predictor(m, device) for m in models]
    classes = union_classes([p.classes for p in predictors])
    age = [is_age_model(p.classes) for p in predictors]
    if any(age) != all(age):
        raise ConfigError("teachers must be all age models or all expression models")
    age_classes = None  # age teachers: the report gives each one's MAE
    if all(age):
        classes = age_classes = list(AGE_CLASSES)  # bin order, as every age model has them
    all_keys: list[np.ndarray] = []
    all_probs: list[list[np.ndarray]] = [[] for _ in predictors]
    holdouts = [getattr(p, "holdout", None) for p in predictors]  # only torch checkpoints record one
    report: dict = {"models": [str(m) for m in models], "tta": tta, "classes": classes,
                    "holdout": [f"{h[0]}/{h[1]}" if h else None for h in holdouts], "train": {}, "val": {}}
    for spec in sources:
        selection = ClassSelection.parse(spec.keep, spec.drop, spec.merge)
        # box datasets are cut with each teacher's crop spec, or at the source's own margin= where given
        margins = [p.crop.margin if spec.margin is None else spec.margin for p in predictors]
        cuts = {m: replace(p.crop, margin=m) for m, p in zip(margins, predictors)}  # one load per distinct margin
        by_margin = {m: load_dataset(spec.path, format=spec.format, selection=selection, crop=c) for m, c in cuts.items()}
        for split_name in ("train", *VAL_SPLITS):
            keys = labels = None
            split_probs = []
            for predictor, holdout, margin in zip(predictors, holdouts, margins):
                dataset = by_margin[margin]
                if split_name not in dataset.splits:
                    break
                crop = predictor.crop
                faces, y, k = load_arrays(
                    dataset.split(split_name), crop.size, crop.channels, cache_dir=cache_dir, contrast=crop.contrast,
                    with_keys=True,
                )
                if keys is not None and not np.array_equal(keys, k):
                    raise ConfigError(f"{spec.path}: teachers decode different samples of {split_name}; use one crop margin")
                keys, name, data_classes = k, spec.name or dataset.name, dataset.classes
                labels = np.array([classes.index(c) if c in classes else -1 for c in data_classes])[y]
                rows = in_fold(k, *holdout) if holdout and split_name == "train" else np.ones(len(k), bool)
                mapped = np.full((len(k), len(classes)), np.nan, np.float32)
                mapped[rows] = 0.0
                if rows.any():
                    p = predict_tta(predictor, faces[rows], tta, batch_size)
                    mapped[np.ix_(rows, [classes.index(c) for c in predictor.classes])] = p
                split_probs.append(mapped)
                log(f"{Path(str(predictor.model_name))} on {name}/{split_name}: {rows.sum()} faces"
                    + (f" (fold {holdout[0]}/{holdout[1]}, left out of its training)" if rows.sum() < len(k) else ""))
            if keys is None:
                continue
            all_keys.append(np.char.add(f"{name}/", keys.astype(str)))
            for i, p in enumerate(split_probs):
                all_probs[i].append(p)
            columns = [classes.index(c) for c in data_classes if c in classes]
            members = [*zip([str(m) for m in models], split_probs), ("ensemble", mean_of_members(np.stack(split_probs)))]
            scores = {label: _score(p, labels, columns, age_classes) for label, p in members}
            if split_name == "train":  # in-sample, except where a teacher's run held the image out
                report["train"][name] = scores
            else:
                entry: dict = {"split": split_name, "n": int(len(labels)), **scores}
                if spec.votes:
                    vote_classes, table = read_votes(spec.votes)
                    to_run = np.array([classes.index(c) if c in classes else -1 for c in vote_classes] + [-1])  # [-1]: no plurality
                    votes = to_run[plurality(vote_matrix(keys, table, vote_classes, vote_classes))]
                    vote_columns = sorted(set(columns) | {classes.index(c) for c in vote_classes if c in classes})
                    for label, p in members:
                        entry[label]["votes_acc"] = _accuracy(p, votes, vote_columns)
                report["val"][name] = entry
                log(f"{name}/{split_name}: " + ", ".join(
                    (f"{label} MAE {v['mae']:.3f}" if "mae" in v else f"{label} {v['acc']:.4f}")
                    + (f" (votes {v['votes_acc']:.4f})" if "votes_acc" in v else "")
                    for label, v in entry.items() if isinstance(v, dict)
                ))
                break  # one validation split per source
    if not all_keys:
        raise DatasetError("no train or validation split found in any source")
    probs = np.stack([np.concatenate(p) for p in all_probs]).astype(np.float16)
    out = Path(out)
    with atomic_path(out) as tmp, tmp.open("wb") as f:
        np.savez_compressed(
            f, classes=np.asarray(classes), keys=np.concatenate(all_keys), members=np.asarray(report["models"]),
            tta=np.asarray(tta), probs=probs,
        )
    write_json(out.with_suffix(".json"), report)
    return report
