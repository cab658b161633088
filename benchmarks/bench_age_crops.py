"""Does the age model see detector crops like its training chips? UTKFace validation chips are
put back into a scene (upscaled ×3 onto a grey canvas twice their size), each inference detector
finds the face there, and the face is cut with the age model's crop spec as in ``Recognizer``.

Reports, per detector: faces found, the detected box relative to the chip (side and centre; a
square crop of margin m covers side × (1 + 2m) of it), the crop's mean pixel difference from the
chip, and the model's MAE on the detector crops against its MAE on the chips themselves::

    python benchmarks/bench_age_crops.py --data DATA/utkface-64 --limit 500
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from emolens.age import parse_utkface_name
from emolens.data import load_dataset, read_image
from emolens.inference.classifier import AgeEstimator
from emolens.inference.detectors import create_detector

SCALE, PAD = 3, 96  # chip 64 px → 192 px, on a 384 px canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="UTKFace-style folder (its seeded val split is used)")
    parser.add_argument("--model", default="age", help="age model (bundled name or .onnx)")
    parser.add_argument("--limit", type=int, default=500, help="validation chips to use (evenly spaced over the split)")
    parser.add_argument("--detectors", default="yunet,blazeface", help="comma-separated detector names")
    args = parser.parse_args()

    estimator = AgeEstimator.load(args.model)
    paths = load_dataset(args.data, format="utkface").split("val").paths  # sorted by name, so by age digits:
    paths = paths[:: max(1, len(paths) // args.limit)][: args.limit]   # an evenly spaced sample over the split
    chips = np.stack([read_image(p) for p in paths])
    true = np.array([parse_utkface_name(p.name)[0] for p in paths], float)
    side = chips.shape[1] * SCALE
    scenes = [cv2.copyMakeBorder(cv2.resize(c, (side, side), interpolation=cv2.INTER_CUBIC), PAD, PAD, PAD, PAD,
                                 cv2.BORDER_CONSTANT, value=(128, 128, 128)) for c in chips]
    chip_ages = estimator.predict_ages(chips)
    report = {"n": len(paths), "crop": estimator.crop.to_dict(),
              "chips": {"mae": float(np.abs(chip_ages - true).mean())}}
    for name in args.detectors.split(","):
        detector = create_detector(name)
        found, boxes = [], []
        for i, scene in enumerate(scenes):
            faces = detector.detect(scene)
            if faces:
                found.append(i)
                boxes.append(max(faces, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])).box)
        idx = np.array(found, int)
        crops = np.stack([estimator.crops(scenes[i], [b])[0] for i, b in zip(idx, boxes)])
        rel = (np.array(boxes, float) - PAD) / side  # x1, y1, x2, y2 in chip units
        ages = estimator.predict_ages(crops)
        report[name] = {
            "found": len(idx),
            "box_side_median": float(np.median(np.maximum(rel[:, 2] - rel[:, 0], rel[:, 3] - rel[:, 1]))),
            "box_centre_median": [float(np.median((rel[:, 0] + rel[:, 2]) / 2)), float(np.median((rel[:, 1] + rel[:, 3]) / 2))],
            "crop_vs_chip_mean_abs_pixel_diff": float(np.abs(crops.astype(float) - chips[idx].astype(float)).mean()),
            "mae_on_detector_crops": float(np.abs(ages - true[idx]).mean()),
            "mae_on_chips_same_faces": float(np.abs(chip_ages[idx] - true[idx]).mean()),
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
