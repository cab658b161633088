"""Do detector crops look like the faces a model was trained on? A dataset's validation faces
(face crops such as FER2013's 48 px, AffectNet's 96 px or UTKFace's 64 px chips) are put back
into a scene (upscaled to 192 px onto a grey canvas twice that size), each inference detector
finds the face there, and the face is cut with the model's crop spec as in ``Recognizer``; with
``--margins``, also with other margins, to find the one whose crops match the training faces.

Reports, per detector: faces found, the detected box relative to the face image (side and
centre; a square crop of margin m covers side × (1 + 2m) of it), and the model's score on the
detector crops (expression models: accuracy; age models: MAE on UTKFace-named files) against its
score on the dataset's own crops of the same faces (what ``emolens evaluate`` reads); for every
detector after the first, its box against the first one's on the faces both find (side ratio,
centre offset in the first one's sides: how far apart the detectors' box conventions are)::

    python benchmarks/bench_crops.py --model age --data DATA/utkface-64 --limit 500
    python benchmarks/bench_crops.py --model mixed8 --data DATA/fer2013 --margins 0,0.05,0.1
    python benchmarks/bench_crops.py --data DATA/muxspace-dev --format eval-folder --split eval --limit 2324
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np

from emolens.age import is_age_model, parse_utkface_name
from emolens.data import load_arrays, load_dataset
from emolens.inference.classifier import AgeEstimator, EmotionClassifier
from emolens.inference.detectors import create_detector
from emolens.labels import match_classes, remap
from emolens.preprocess import crop_face

SIDE, PAD = 192, 96  # the face image upscaled to 192 px, on a 384 px canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset of face images with a val split (any layout)")
    parser.add_argument("--format", default="auto", help="dataset layout (default auto)")
    parser.add_argument("--split", default="val", help="split to use (default val)")
    parser.add_argument("--model", default="default", help="bundled model name or .onnx (expression or age)")
    parser.add_argument("--limit", type=int, default=500, help="validation faces to use (evenly spaced over the split)")
    parser.add_argument("--detectors", default="yunet,blazeface", help="comma-separated detector names")
    parser.add_argument("--margins", default="", help="also cut detector crops with these margins, e.g. 0,0.05,0.1")
    parser.add_argument("--cache-dir", type=Path, help="decoded-image cache for the dataset's own crops")
    args = parser.parse_args()

    model = EmotionClassifier.load(args.model)
    if is_age_model(model.classes):
        model = AgeEstimator.load(args.model)
    spec = model.crop
    split = load_dataset(args.data, format=args.format, crop=spec).split(args.split)
    pick = np.arange(0, len(split), max(1, len(split) // args.limit))[: args.limit]  # evenly spaced over the split
    split = split.take(pick, split.classes, np.asarray(split.labels)[pick])
    own, labels = load_arrays(split, spec.size, spec.channels, cache_dir=args.cache_dir, contrast=spec.contrast)
    faces = load_dataset(args.data, format=args.format, box_margin=0.0).split(args.split)  # the labelled box, unwidened
    faces = faces.take(pick, faces.classes, np.asarray(faces.labels)[pick])
    scenes = [cv2.copyMakeBorder(cv2.resize(_rgb(faces.read(i)), (SIDE, SIDE), interpolation=cv2.INTER_CUBIC), PAD, PAD,
                                 PAD, PAD, cv2.BORDER_CONSTANT, value=(128, 128, 128)) for i in range(len(faces))]
    score = _Scorer(model, split, labels)
    margins = sorted({spec.margin, *(float(m) for m in args.margins.split(",") if m)})
    report = {"data": str(args.data), "model": args.model, "n": len(split), "crop": spec.to_dict(), "metric": score.metric,
              "dataset_crops": score(own)}
    first: dict[int, np.ndarray] = {}  # face index → the first detector's box
    for name in args.detectors.split(","):
        detector = create_detector(name)
        found, boxes = [], []
        for i, scene in enumerate(scenes):
            detected = detector.detect(scene)
            if detected:
                found.append(i)
                boxes.append(max(detected, key=lambda d: d.area).box)
        idx = np.array(found, int)
        rel = (np.array(boxes, float).reshape(-1, 4) - PAD) / SIDE  # x1, y1, x2, y2 in face-image units
        entry = {
            "found": len(idx),
            "box_side_median": float(np.median(_sides(rel))),
            "box_centre_median": [float(np.median((rel[:, 0] + rel[:, 2]) / 2)), float(np.median((rel[:, 1] + rel[:, 3]) / 2))],
            "dataset_crops_same_faces": score(own[idx], idx),
        }
        if not first:
            first = dict(zip(found, np.array(boxes, float)))
        else:
            entry["vs_first_detector"] = _versus(first, dict(zip(found, np.array(boxes, float))))
        for m in margins:
            cut = dataclasses.replace(spec, margin=m)
            crops = np.stack([crop_face(scenes[i], tuple(map(float, b)), cut) for i, b in zip(idx, boxes)])
            entry[f"detector_crops_margin_{m:g}"] = score(crops, idx)
        report[name] = entry
    print(json.dumps(report, indent=1))


def _versus(reference: dict[int, np.ndarray], other: dict[int, np.ndarray]) -> dict:
    """Median side ratio and centre offset (x, y, in reference sides) of ``other``'s boxes on the faces both found."""
    both = sorted(set(reference) & set(other))
    if not both:
        return {"faces": 0}
    a, b = np.stack([reference[i] for i in both]), np.stack([other[i] for i in both])
    shift = ((b[:, :2] + b[:, 2:]) - (a[:, :2] + a[:, 2:])) / 2 / _sides(a)[:, None]
    return {"faces": len(both), "side_ratio_median": float(np.median(_sides(b) / _sides(a))),
            "centre_offset_median": [float(v) for v in np.median(shift, axis=0)]}


def _sides(boxes: np.ndarray) -> np.ndarray:
    """The side of the square crop each N×4 (x1, y1, x2, y2) box becomes: its longer edge."""
    return np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def _rgb(image: np.ndarray) -> np.ndarray:
    """An H×W×C face image (gray ones too) as RGB, like a photo the detectors get."""
    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.shape[2] == 1 else image


class _Scorer:
    """Accuracy (expression) or MAE in years (age, true ages from UTKFace file names) of model-ready crops."""

    def __init__(self, model: EmotionClassifier, split, labels: np.ndarray) -> None:
        self.model = model
        if isinstance(model, AgeEstimator):
            self.metric = "mae"
            self.truth = np.array([parse_utkface_name(Path(split.key(i)).name)[0] for i in range(len(split))], float)
        else:
            self.metric = "accuracy"
            shared, _, _ = match_classes(model.classes, split.classes)
            self.truth = remap(labels, split.classes, shared)
            self.columns = [list(model.classes).index(c) for c in shared]

    def __call__(self, crops: np.ndarray, idx: np.ndarray | None = None) -> float:
        truth = self.truth if idx is None else self.truth[idx]
        if self.metric == "mae":
            return float(np.abs(self.model.predict_ages(crops) - truth).mean())
        keep = truth >= 0
        pred = self.model.predict_proba(crops)[:, self.columns].argmax(axis=1)
        return float((pred[keep] == truth[keep]).mean())


if __name__ == "__main__":
    main()
