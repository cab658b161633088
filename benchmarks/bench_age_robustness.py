"""Age models on degraded faces: validation MAE of UTKFace chips blurred, compressed, darkened,
flattened, gray, shrunk, tinted and zoomed out (a proxy for photos unlike the training chips)::

    python benchmarks/bench_age_robustness.py --data DATA/utkface-64 --model age --model other.onnx
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from emolens.data import load_arrays, load_dataset
from emolens.inference.classifier import AgeEstimator


def _jpeg(face: np.ndarray, quality: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", face, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_UNCHANGED)


SHIFTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda f: f,
    "blur 1.5 px": lambda f: cv2.GaussianBlur(f, (0, 0), 1.5),
    "JPEG q20": lambda f: _jpeg(f, 20),
    "dark x0.55": lambda f: (f * 0.55).astype(np.uint8),
    "contrast x0.5": lambda f: (128 + (f.astype(np.float32) - 128) * 0.5).astype(np.uint8),
    "gray": lambda f: np.repeat(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2),
    "24 px": lambda f: cv2.resize(cv2.resize(f, (24, 24), interpolation=cv2.INTER_AREA), f.shape[1::-1]),
    "warm tint": lambda f: np.clip(f * np.array([1.15, 1.0, 0.8]), 0, 255).astype(np.uint8),
    "zoom out 12 %": lambda f: cv2.resize(cv2.copyMakeBorder(f, 8, 8, 8, 8, cv2.BORDER_REFLECT), f.shape[1::-1],
                                          interpolation=cv2.INTER_AREA),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="UTKFace-style folder (its seeded val split is used)")
    parser.add_argument("--model", action="append", help="age model (bundled name or .onnx); repeatable (default: age)")
    args = parser.parse_args()
    models = {m: AgeEstimator.load(m) for m in args.model or ["age"]}
    size = next(iter(models.values())).crop.size
    faces, ages = load_arrays(load_dataset(args.data).split("val"), size, 3)
    print("| degradation | " + " | ".join(models) + " |\n|---|" + "---|" * len(models))
    for name, degrade in SHIFTS.items():
        x = np.stack([degrade(f) for f in faces])
        print(f"| {name} | " + " | ".join(f"{np.abs(m.predict_ages(x) - ages).mean():.2f}" for m in models.values()) + " |")


if __name__ == "__main__":
    main()
