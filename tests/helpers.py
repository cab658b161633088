"""Shared helpers for the inference tests (no tests here).

``model_path()`` is the bundled ``default`` model once it ships; until then an untrained linear
model with the right ONNX interface, built on the fly, so plumbing tests run either way.
Model-quality tests call ``require_bundled_model()``, which skips them while it is missing.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from emolens.inference.classifier import WEIGHTS

FER_CLASSES = ["anger", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
BUNDLED = WEIGHTS / "fer2013.onnx"


def make_dev_model(path: Path, size: int = 48, channels: int = 1, classes: list[str] = FER_CLASSES) -> Path:
    """An untrained Flatten→Gemm ONNX model with emolens metadata (never shipped)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    features = size * size * channels
    weight = numpy_helper.from_array(rng.normal(0, 0.05, (features, len(classes))).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(len(classes), np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("Gemm", ["flat", "W", "B"], ["logits"])],
        "dev", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(classes)])], [weight, bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = {"classes": classes, "crop": {"size": size, "channels": channels, "margin": 0.1, "square": True},
            "model_name": "dev-linear", "temperature": 1.0}
    helper.set_model_props(model, {"emolens": json.dumps(meta)})
    onnx.save(model, path)
    return path


@cache
def model_path() -> Path:
    """The bundled default model, or (until it ships) a dev model in a temporary folder."""
    if BUNDLED.is_file():
        return BUNDLED
    folder = tempfile.mkdtemp(prefix="emolens-dev-model-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return make_dev_model(Path(folder) / "dev.onnx")


def require_bundled_model() -> Path:
    assert BUNDLED.is_file(), f"the bundled default model {BUNDLED} is missing: it ships with the package"
    return BUNDLED


def video_frames(path: Path, every: int = 1) -> list[np.ndarray]:
    """BGR frames of a video file."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    index = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if index % every == 0:
            frames.append(frame)
        index += 1
    cap.release()
    return frames
