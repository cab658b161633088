"""``emolens evaluate``: a model on a dataset split, across datasets by canonical class names.

Data classes the model does not know are reported and left out (never mislabelled); the
model's predictions are restricted to the shared classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emolens.age import age_metrics, is_age_model, parse_utkface_name, predicted_age
from emolens.boxes import box_iou, from_yolo
from emolens.data import load_arrays, load_dataset
from emolens.errors import ConfigError, DatasetError
from emolens.evaluation.metrics import compute_metrics, expected_calibration_error, fit_temperature, rescale
from emolens.evaluation.plots import plot_age_scatter, plot_confusion_matrix
from emolens.evaluation.predictors import load_predictor
from emolens.files import write_json
from emolens.labels import match_classes, remap
from emolens.predictor import Predictor
from emolens.preprocess import crop_face, resize_to

TTA_MODES = ("none", "flip", "tencrop")
DEFAULT_SPLITS = ("test", "val", "eval")
TENCROP_SCALE = 0.875
MIN_IOU = 0.3  # a detection must overlap the labelled face box this much to count as that face

Log = Callable[[str], None]


def tta_views(faces: np.ndarray, mode: str) -> list[np.ndarray]:
    """The views of uint8 N×S×S×C faces that test-time augmentation averages over.

    ``flip``: the faces and their mirror images; ``tencrop``: four corner crops and the centre
    crop at 87.5 % of the size, resized back, and their mirror images.
    """
    if mode not in TTA_MODES:
        raise ConfigError(f"tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    if mode == "none":
        return [faces]
    if mode == "flip":
        return [faces, faces[:, :, ::-1]]
    size, channels = faces.shape[1], faces.shape[3]
    c = round(size * TENCROP_SCALE)
    offsets = ((0, 0), (0, size - c), (size - c, 0), (size - c, size - c), ((size - c) // 2, (size - c) // 2))
    crops = [np.stack([resize_to(f[y : y + c, x : x + c], size, channels) for f in faces]) for y, x in offsets]
    return crops + [v[:, :, ::-1] for v in crops]


def predict_tta(predictor: Predictor, faces: np.ndarray, mode: str, batch_size: int = 64) -> np.ndarray:
    """Class probabilities of the views' mean logits, as an exported ``--tta flip`` graph computes them:
    the mean of the views' log-probabilities differs from the mean logits by one constant per face,
    which the softmax removes (a geometric mean of the views' probabilities, renormalised)."""
    views = tta_views(faces, mode)
    if len(views) == 1:
        return predictor.predict_proba(faces, batch_size)
    logp = np.mean([np.log(np.maximum(predictor.predict_proba(np.ascontiguousarray(v), batch_size), 1e-30))
                    for v in views], axis=0)
    p = np.exp(logp - logp.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Samples:
    """Model-ready faces of one split, with their labels."""

    faces: np.ndarray  # uint8 N×S×S×C, model-ready
    labels: np.ndarray  # indices into the data classes
    missing: np.ndarray  # bool N: no face found (only with detection)
    keys: np.ndarray  # each sample's key in its dataset


def _dataset_faces(split, predictor: Predictor, cache_dir: Path | None) -> Samples:
    crop = predictor.crop
    faces, labels, keys = load_arrays(
        split, crop.size, crop.channels, cache_dir=cache_dir, contrast=crop.contrast, with_keys=True
    )
    return Samples(faces, labels, np.zeros(len(labels), bool), keys)


def _detected_faces(split, predictor: Predictor, detector: str, align: bool = False) -> Samples:
    """End-to-end: find the face in each full photo with the inference detector (the one that
    matches a labelled box best, else the largest), levelled by its eyes with ``align``; photos
    without one are marked missing."""
    from emolens.images import load_image
    from emolens.inference.detectors import create_detector
    from emolens.progress import Tracked

    paths = getattr(split, "paths", None)
    if not paths:
        raise DatasetError(f"--detect needs a dataset of image files; split {split.name!r} has none")
    det = create_detector(detector)
    spec = predictor.crop
    boxes = getattr(split, "boxes", None)
    faces = np.zeros((len(paths), spec.size, spec.size, spec.channels), np.uint8)
    missing = np.zeros(len(paths), bool)
    for i, path in enumerate(Tracked(paths, f"detecting faces ({split.name})")):
        rgb = load_image(path)  # the pixels `emolens analyze` sees
        found = det.detect(rgb)
        if boxes is not None and found:
            truth = from_yolo(*boxes[i].tolist(), rgb.shape[1], rgb.shape[0])
            ious = [box_iou(d.box, truth) for d in found]
            found = [found[int(np.argmax(ious))]] if max(ious) >= MIN_IOU else []
        if not found:
            missing[i] = True
            continue
        face = max(found, key=lambda d: d.area)
        faces[i] = crop_face(rgb, tuple(map(float, face.box)), spec, eyes=face.eyes if align else None)
    return Samples(faces, np.asarray(split.labels), missing, np.asarray([split.key(i) for i in range(len(paths))]))


def _votes_accuracy(probs: np.ndarray, classes: list[str], keys: np.ndarray, votes: str | Path) -> tuple[float, int]:
    """Accuracy against the plurality of the crowd votes, over the voted classes the model knows."""
    from emolens.data.sources import plurality, read_votes, vote_matrix

    vote_classes, table = read_votes(votes)
    known = [c for c in vote_classes if c in classes]
    truth = plurality(vote_matrix(keys, table, vote_classes, vote_classes))
    columns = [classes.index(c) for c in known]
    pred = np.array([vote_classes.index(known[j]) for j in probs[:, columns].argmax(axis=1)]) if len(probs) else truth
    has = truth >= 0
    if not has.any():
        raise DatasetError(f"{votes}: no vote row matches an evaluated image (paths must be relative to the dataset root)")
    return float((pred[has] == truth[has]).mean()), int(has.sum())


def evaluate_age(predictor: Predictor, samples: Samples, out_dir: str | Path, *, tta: str = "none",
                 batch_size: int = 64, log: Log = print, report: dict | None = None) -> dict:
    """Score an age model on faces whose keys are UTKFace file names (true age, gender, race):
    MAE, CS(5), bias, per age band and per gender/race group (:func:`emolens.age.age_metrics`);
    writes ``metrics.json`` and ``age_scatter.png`` (predicted against true age) to ``out_dir``."""
    parsed = [parse_utkface_name(Path(str(k)).name) for k in samples.keys]
    unnamed = [str(k) for k, p in zip(samples.keys, parsed) if p is None]
    if unnamed:
        raise DatasetError(f"{unnamed[0]}: age evaluation needs UTKFace-named images (<age>_<gender>_<race>_<datetime>.jpg); "
                         f"{len(unnamed)} of {len(parsed)} are not")
    found = ~samples.missing
    true = np.array([p[0] for p in parsed], np.float64)[found]
    groups = {"gender": np.array([p[1] for p in parsed])[found], "race": np.array([p[2] for p in parsed])[found]}
    pred = predicted_age(predict_tta(predictor, samples.faces[found], tta, batch_size), predictor.classes)
    out = {"task": "age", **age_metrics(true, pred, groups), **(report or {}),
           "skipped": {"no_face_found": int(samples.missing.sum())}}
    if tta != "none":
        plain = predicted_age(predictor.predict_proba(samples.faces[found], batch_size), predictor.classes)
        out["mae_without_tta"] = float(np.abs(plain - true).mean()) if len(true) else None
    log(f"age: MAE {out['mae']:.2f} years, CS(5) {out['cs5']:.3f}, bias {out['bias']:+.2f} on {out['n']} faces")
    path = Path(out_dir)
    write_json(path / "metrics.json", out)
    plot_age_scatter(true, pred, path / "age_scatter.png", title=f"{predictor.model_name}: MAE {out['mae']:.2f} years")
    return out


def _samples(data_split, predictor: Predictor, detect: bool, detector: str, align: bool,
             cache_dir: str | Path | None) -> Samples:
    """The split's faces as the model sees them: cut from the dataset's boxes, or found by ``detector``."""
    if detect:
        return _detected_faces(data_split, predictor, detector, align)
    return _dataset_faces(data_split, predictor, Path(cache_dir) if cache_dir else None)


def _match(predictor: Predictor, dataset, samples: Samples, log: Log) -> tuple[list[str], list[str], dict[str, int], np.ndarray]:
    """The classes model and data share, the model's classes the data lacks, the data's images of
    classes the model lacks (per class), and each sample's label among the shared classes (-1: left out)."""
    shared, only_model, only_data = match_classes(predictor.classes, dataset.classes)
    if not shared:
        raise DatasetError(
            f"model classes ({', '.join(predictor.classes)}) and data classes ({', '.join(dataset.classes)}) share none"
        )
    counts = np.bincount(samples.labels, minlength=len(dataset.classes))
    left_out = {c: int(counts[i]) for i, c in enumerate(dataset.classes) if c in only_data and counts[i]}
    if left_out:
        log(f"left out {sum(left_out.values())} images of classes the model does not know: "
            + ", ".join(f"{c} ({n})" for c, n in left_out.items()))
    if only_model:
        log(f"model classes absent from the data (predictions never fall there): {', '.join(only_model)}")
    return shared, only_model, left_out, remap(samples.labels, dataset.classes, shared)


def _scores(predictor: Predictor, faces: np.ndarray, y_true: np.ndarray, found: np.ndarray, shared: list[str],
            tta: str, batch_size: int) -> tuple[dict, np.ndarray]:
    """Accuracy, F1, the confusion matrix, ECE and the temperature that would minimise log-loss here,
    with predictions restricted to the shared classes (an image without a face found counts as wrong);
    also the full probabilities of the images with a face."""
    columns = [list(predictor.classes).index(c) for c in shared]

    def restricted(probs: np.ndarray) -> np.ndarray:
        p = probs[:, columns]
        return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)

    full = predict_tta(predictor, faces[found], tta, batch_size)
    probs = np.zeros((len(faces), len(shared)), np.float32)
    probs[found] = restricted(full)
    report = compute_metrics(y_true, np.where(found, probs.argmax(axis=1), -1), shared)
    report["ece"] = expected_calibration_error(probs[found], y_true[found])  # over images with a face
    if found.any():
        t = fit_temperature(probs[found], y_true[found])
        report["temperature_fit"] = {
            "temperature": t, "ece": expected_calibration_error(rescale(probs[found], t), y_true[found]),
            "note": "relative to the model's own temperature; fitted on this split",
            # one temperature serves every set a model meets: this grid lets sets be weighed together
            "ece_by_temperature": {f"{g:.2f}": expected_calibration_error(rescale(probs[found], g), y_true[found])
                                   for g in np.arange(0.5, 1.51, 0.05)},
        }
    if tta != "none":
        plain = restricted(predictor.predict_proba(faces[found], batch_size)).argmax(axis=1)
        report["accuracy_without_tta"] = float((plain == y_true[found]).sum() / max(len(y_true), 1))
        report["tta_gain"] = report["accuracy"] - report["accuracy_without_tta"]
    return report, full


def evaluate_model(
    model: str | Path,
    data: str | Path,
    out_dir: str | Path,
    *,
    split: str | None = None,
    format: str = "auto",
    tta: str = "none",
    detect: bool = False,
    detector: str = "default",
    batch_size: int = 64,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    votes: str | Path | None = None,
    align: bool = False,
    log: Log = print,
) -> dict:
    """Evaluate ``model`` (run folder, .pt, .onnx or bundled name) on a split of ``data``; writes
    ``metrics.json`` and ``confusion_matrix.png`` to ``out_dir`` and returns the report. An age
    model is scored by :func:`evaluate_age` instead (``metrics.json`` and ``age_scatter.png``).

    With ``votes`` (a FER+-style votes CSV for the dataset's images), the report also holds
    ``votes_accuracy``: agreement with each image's single most-voted class (ties and images
    without votes left out), predictions restricted to the voted classes the model knows."""
    if tta not in TTA_MODES:
        raise ConfigError(f"tta must be one of {', '.join(TTA_MODES)}, got {tta!r}")
    predictor = load_predictor(model, device)
    dataset = load_dataset(data, format=format, crop=predictor.crop)
    split_name = split or next((s for s in DEFAULT_SPLITS if s in dataset.splits), None)
    if split_name is None:
        raise DatasetError(f"{data}: no test/val/eval split (found {', '.join(dataset.splits)}); choose one with --split")
    data_split = dataset.split(split_name)
    about = {"model": str(model), "model_name": predictor.model_name, "data": str(data), "split": data_split.name,
             "tta": tta, "detect": detect, "align": align}
    if is_age_model(predictor.classes):
        samples = _samples(data_split, predictor, detect, detector, align, cache_dir)
        return evaluate_age(predictor, samples, out_dir, tta=tta, batch_size=batch_size, log=log, report=about)
    samples = _samples(data_split, predictor, detect, detector, align, cache_dir)
    shared, only_model, left_out, y_all = _match(predictor, dataset, samples, log)
    keep = y_all >= 0
    found = ~samples.missing[keep]
    report, full = _scores(predictor, samples.faces[keep], y_all[keep], found, shared, tta, batch_size)
    if votes is not None:
        report["votes_accuracy"], report["votes_n"] = _votes_accuracy(
            full, list(predictor.classes), samples.keys[keep][found], votes
        )
    report.update({**about, "model_classes": list(predictor.classes), "skipped": {
        "data_classes_unknown_to_model": left_out, "model_classes_not_in_data": only_model,
        "no_face_found": int(samples.missing[keep].sum()),
    }})
    out = Path(out_dir)
    write_json(out / "metrics.json", report)
    plot_confusion_matrix(
        np.asarray(report["confusion_matrix"]), shared, out / "confusion_matrix.png",
        title=f"{predictor.model_name} on {Path(str(data)).name}/{data_split.name}",
    )
    return report
