"""ONNX export of a checkpoint, optional int8 quantisation, and a check against PyTorch.

The ONNX model has input ``input`` (N×C×H×W float32, dynamic N), output ``logits``, and the
metadata property ``emolens`` = JSON {"classes", "crop", "model_name", "temperature"}
(docs/architecture.md). Files are written atomically.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from emolens.data.preprocess import normalize
from emolens.io import atomic_write
from emolens.models.checkpoint import load_model

DEFAULT_OPSET = 17
INT8_MODES = ("static", "dynamic")
METADATA_KEY = "emolens"


def _set_metadata(model: onnx.ModelProto, meta: dict) -> None:
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)


def _save(model: onnx.ModelProto, out: Path) -> Path:
    onnx.checker.check_model(model)
    return atomic_write(out, lambda tmp: onnx.save(model, tmp))


def export_onnx(
    checkpoint: str | Path, out: str | Path, *, opset: int = DEFAULT_OPSET, temperature: float = 1.0
) -> tuple[Path, dict]:
    """Export a checkpoint or run folder (its best.pt) to ONNX; returns (path, metadata)."""
    model, ckpt = load_model(checkpoint)
    crop = ckpt["crop"]
    meta = {"classes": list(ckpt["classes"]), "crop": crop, "model_name": ckpt["model_name"], "temperature": temperature}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter needs no onnxscript and handles these plain CNNs exactly.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (torch.zeros(1, crop["channels"], crop["size"], crop["size"]),), buf, dynamo=False,
            input_names=["input"], output_names=["logits"], opset_version=opset,
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    proto = onnx.load_from_string(buf.getvalue())
    _set_metadata(proto, meta)
    return _save(proto, Path(out)), meta


class _Calibration:
    """onnxruntime CalibrationDataReader over normalised faces, a few at a time."""

    def __init__(self, faces: np.ndarray, batch_size: int = 32) -> None:
        self._batches = iter([normalize(faces[i : i + batch_size]) for i in range(0, len(faces), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"input": batch}


def quantize_int8(fp32: str | Path, out: str | Path, *, mode: str = "static", calibration: np.ndarray | None = None) -> Path:
    """int8 copy of an exported model: ``static`` (QDQ, per-channel weights, activations calibrated
    on uint8 ``calibration`` faces) or ``dynamic`` (weights only, activations quantised at run time)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if mode not in INT8_MODES:
        raise ValueError(f"int8 mode must be one of {', '.join(INT8_MODES)}, got {mode!r}")
    if mode == "static" and (calibration is None or not len(calibration)):
        raise ValueError("static int8 quantisation needs calibration faces (give --data)")
    fp32, out = Path(fp32), Path(out)
    meta = next(p.value for p in onnx.load(fp32).metadata_props if p.key == METADATA_KEY)
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(prepared))
        if mode == "static":
            quantize_static(
                str(prepared), str(quantized), _Calibration(calibration), quant_format=QuantFormat.QDQ,
                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            )
        else:
            quantize_dynamic(str(prepared), str(quantized), weight_type=QuantType.QUInt8)
        proto = onnx.load(quantized)
    _set_metadata(proto, json.loads(meta))
    return _save(proto, out)


def compare_with_torch(onnx_path: str | Path, checkpoint: str | Path, faces: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Run the ONNX model (ONNX Runtime) and the checkpoint (PyTorch) on the same uint8 faces:
    top-1 agreement, largest probability difference, and both accuracies when labels are given."""
    import onnxruntime as ort

    model, _ = load_model(checkpoint)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_probs, torch_probs = [], []
    for start in range(0, len(faces), 256):
        x = normalize(faces[start : start + 256])
        onnx_probs.append(_softmax(session.run(["logits"], {"input": x})[0]))
        with torch.inference_mode():
            torch_probs.append(torch.softmax(model(torch.from_numpy(x)), 1).numpy())
    p_onnx, p_torch = np.concatenate(onnx_probs), np.concatenate(torch_probs)
    report = {
        "n": int(len(faces)),
        "top1_agreement": float((p_onnx.argmax(1) == p_torch.argmax(1)).mean()),
        "max_prob_diff": float(np.abs(p_onnx - p_torch).max()),
    }
    if labels is not None:
        report["onnx_accuracy"] = float((p_onnx.argmax(1) == labels).mean())
        report["torch_accuracy"] = float((p_torch.argmax(1) == labels).mean())
    return report


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def reference_faces(
    data: str | Path, classes: list[str], crop: dict, split: str, limit: int, seed: int = 0, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` random real faces of a dataset split, cut to ``crop``, with labels as
    indices into ``classes`` (faces of classes the model lacks are left out)."""
    from emolens.data import load_arrays, load_dataset
    from emolens.labels import canonical

    dataset = load_dataset(data, box_margin=crop.get("margin", 0.0))
    faces, labels = load_arrays(dataset.split(split), crop["size"], crop["channels"], cache_dir=cache_dir)
    model_classes = [canonical(c) for c in classes]
    to_model = np.array([model_classes.index(c) if c in model_classes else -1 for c in dataset.classes])
    labels = to_model[labels]
    idx = np.flatnonzero(labels >= 0)
    idx = np.sort(np.random.default_rng(seed).permutation(idx)[:limit])
    return faces[idx], labels[idx]
