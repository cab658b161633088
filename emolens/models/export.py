"""ONNX export of a checkpoint, optional int8 quantisation, and a check against PyTorch.

:func:`export_checked` is the whole ``emolens export`` policy (which data, calibration, which
files to check); the check runs both models through the :class:`emolens.predictor.Predictor` contract.

The ONNX model has input ``input`` (N×C×H×W float32, dynamic N), output ``logits``, and the
metadata property ``emolens`` = JSON {"classes", "crop", "model_name", "temperature", "task", "tta"}
(docs/architecture.md; ``tta: flip``: the graph averages the logits of each face and its mirror
image). Files are written atomically.
"""

from __future__ import annotations

import io
import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from emolens.age import is_age_model
from emolens.errors import ConfigError
from emolens.files import atomic_write
from emolens.labels import canonical, remap
from emolens.models.checkpoint import load_checkpoint, load_model
from emolens.models.predictor import TorchPredictor
from emolens.models.tta import with_tta
from emolens.predictor import Predictor
from emolens.preprocess import CropSpec, normalize
from emolens.progress import Bar

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


def half_weights(model: onnx.ModelProto, min_size: int = 1024) -> onnx.ModelProto:
    """Store every float32 weight of ``min_size`` or more values as float16, each read back through
    a ``Cast`` to float32: half the file, the same float32 arithmetic (ONNX Runtime folds the casts
    when the session is created, so inference is as fast as before)."""
    graph = model.graph
    casts, kept = [], []
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT or int(np.prod(init.dims)) < min_size:
            kept.append(init)
            continue
        half = onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(init).astype(np.float16), f"{init.name}.fp16")
        kept.append(half)
        casts.append(onnx.helper.make_node("Cast", [half.name], [init.name], to=onnx.TensorProto.FLOAT))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def export_onnx(
    checkpoint: str | Path, out: str | Path, *, opset: int = DEFAULT_OPSET, temperature: float = 1.0, tta: str = "none",
    fp16_weights: bool = False,
) -> tuple[Path, dict]:
    """Export a checkpoint or run folder (its best.pt) to ONNX, with ``tta`` in the graph
    (:func:`emolens.models.tta.with_tta`) and, with ``fp16_weights``, the weights stored as float16
    (:func:`half_weights`); returns (path, metadata)."""
    model, ckpt = load_model(checkpoint)
    model = with_tta(model, tta)
    crop = ckpt["crop"]
    meta = {"classes": list(ckpt["classes"]), "crop": crop, "model_name": ckpt["model_name"], "temperature": temperature,
            "task": ckpt.get("task", "expression"), "tta": tta}
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
    if fp16_weights:
        proto = half_weights(proto)
    _set_metadata(proto, meta)
    return _save(proto, Path(out)), meta


class _Calibration:
    """onnxruntime CalibrationDataReader over normalised faces, a few at a time."""

    def __init__(self, faces: np.ndarray, batch_size: int = 32) -> None:
        self._batches = iter([normalize(faces[i : i + batch_size]) for i in range(0, len(faces), batch_size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"input": batch}


def _float_ends(proto: onnx.ModelProto) -> list[str]:
    """The first convolution and the last matrix product, which static int8 leaves in float: on
    ``accurate`` (MobileNet-v1) they are a sliver of the work, and int8 there slowed the model and
    cost accuracy (docs/experiments.md)."""
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    products = [n.name for n in proto.graph.node if n.op_type in ("Gemm", "MatMul")]
    return convs[:1] + products[-1:]


def quantize_int8(fp32: str | Path, out: str | Path, *, mode: str = "static", calibration: np.ndarray | None = None) -> Path:
    """int8 copy of an exported model: ``static`` (QDQ, per-channel weights, activations calibrated
    on uint8 ``calibration`` faces; the first convolution and the classifier stay float) or ``dynamic`` (weights only, activations quantised at run time)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if mode not in INT8_MODES:
        raise ConfigError(f"int8 mode must be one of {', '.join(INT8_MODES)}, got {mode!r}")
    if mode == "static" and (calibration is None or not len(calibration)):
        raise ConfigError("static int8 quantisation needs calibration faces (give --data)")
    fp32, out = Path(fp32), Path(out)
    meta = next(p.value for p in onnx.load(fp32).metadata_props if p.key == METADATA_KEY)
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(prepared))
        if mode == "static":
            quantize_static(
                str(prepared), str(quantized), _Calibration(calibration), quant_format=QuantFormat.QDQ,
                per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                nodes_to_exclude=_float_ends(onnx.load(prepared)),
                # 7-bit weights: x86 without VNNI multiplies u8×s8 pairs into saturating int16, so
                # full-range weights give other answers there than on VNNI CPUs and in the browser
                reduce_range=True,
            )
        else:
            quantize_dynamic(str(prepared), str(quantized), weight_type=QuantType.QUInt8)
        proto = onnx.load(quantized)
    _set_metadata(proto, json.loads(meta))
    return _save(proto, out)


CHECK_BATCH = 256


def compare(candidate: Predictor, reference: Predictor, faces: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """Run two predictors on the same uint8 faces: top-1 agreement, largest probability difference,
    and both accuracies (``accuracy``, ``reference_accuracy``) when labels are given."""
    p_cand = candidate.predict_proba(faces, CHECK_BATCH)
    p_ref = reference.predict_proba(faces, CHECK_BATCH)
    report = {
        "n": int(len(faces)),
        "top1_agreement": float((p_cand.argmax(1) == p_ref.argmax(1)).mean()),
        "max_prob_diff": float(np.abs(p_cand - p_ref).max()),
    }
    if labels is not None:
        report["accuracy"] = float((p_cand.argmax(1) == labels).mean())
        report["reference_accuracy"] = float((p_ref.argmax(1) == labels).mean())
    return report


def compare_with_torch(onnx_path: str | Path, checkpoint: str | Path, faces: np.ndarray, labels: np.ndarray | None = None) -> dict:
    """:func:`compare` of an exported model (ONNX Runtime) with its checkpoint (PyTorch, at the
    exported temperature and graph TTA); the accuracies are named ``onnx_accuracy`` and ``torch_accuracy``."""
    from emolens.inference.classifier import OnnxPredictor

    onnx_model = OnnxPredictor(onnx_path)
    reference = TorchPredictor(checkpoint, temperature=onnx_model.temperature, tta=onnx_model.tta)
    report = compare(onnx_model, reference, faces, labels)
    if labels is not None:
        report["onnx_accuracy"], report["torch_accuracy"] = report.pop("accuracy"), report.pop("reference_accuracy")
    return report


def reference_faces(
    data: str | Path, classes: list[str], crop: dict, split: str, limit: int, seed: int = 0, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` random real faces of a dataset split, cut and prepared as ``crop`` says, with
    labels as indices into ``classes`` (faces of classes the model lacks are left out)."""
    from emolens.data import load_arrays, load_dataset

    spec = CropSpec.from_dict(crop)
    dataset = load_dataset(data, crop=spec)
    faces, labels = load_arrays(dataset.split(split), spec.size, spec.channels, cache_dir=cache_dir, contrast=spec.contrast)
    labels = remap(labels, dataset.classes, list(classes) if is_age_model(classes) else [canonical(c) for c in classes])
    idx = np.flatnonzero(labels >= 0)
    idx = np.sort(np.random.default_rng(seed).permutation(idx)[:limit])
    return faces[idx], labels[idx]


@dataclass
class ExportReport:
    """What :func:`export_checked` did: the files written (fp32 first), the ONNX metadata, the
    dataset the check used, each file's :func:`compare_with_torch` report, and why there was no
    check (``no_check``), if there was none."""

    files: list[Path]
    meta: dict
    data: Path | None = None
    checks: dict[Path, dict] = field(default_factory=dict)
    no_check: str | None = None


def run_data(checkpoint: str | Path) -> Path | None:
    """The dataset a run was trained on (its first source, for multi-dataset runs), from its config."""
    data = load_checkpoint(checkpoint).get("config", {}).get("data")
    if isinstance(data, list):  # multi-dataset runs: the first source, without its options
        data = data[0].split(",")[0] if data else None
    return Path(data) if data else None


def export_checked(
    checkpoint: str | Path, out: str | Path, *, opset: int = DEFAULT_OPSET, temperature: float = 1.0, tta: str = "none",
    int8: str | None = None, data: str | Path | None = None, check_split: str = "val", samples: int = 500,
    cache_dir: Path | None = None, fp16_weights: bool = False,
) -> ExportReport:
    """Export ``checkpoint`` to ``out`` (``tta`` in the graph), with ``int8`` ("static" or "dynamic") also a quantised copy
    ``OUT.int8.onnx``, and check every file against PyTorch on up to ``samples`` real faces of
    ``data``'s ``check_split`` (default data: the run's own). Static int8 is calibrated on the
    train split; without data it raises ValueError before writing anything."""
    if int8 is not None and int8 not in INT8_MODES:
        raise ConfigError(f"int8 mode must be one of {', '.join(INT8_MODES)}, got {int8!r}")
    found = Path(data) if data is not None else run_data(checkpoint)
    if (found is None or not found.exists()) and int8 == "static":
        raise ConfigError(f"static int8 needs calibration faces: dataset {found or '(none)'} not found; give --data")
    out = Path(out)
    checked = found is not None and found.exists()
    with Bar(f"export {out.name}", total=1 + (int8 is not None) + checked) as bar:
        bar.note("ONNX graph")
        path, meta = export_onnx(checkpoint, out, opset=opset, temperature=temperature, tta=tta, fp16_weights=fp16_weights)
        bar.advance()
        report = ExportReport(files=[path], meta=meta)
        if checked:
            report.data = found
        else:
            report.no_check = f"dataset {found or '(none)'} not found; give --data"
        if int8 is not None:
            bar.note(f"int8 ({int8})")
            calibration = None
            if int8 == "static":
                calibration, _ = reference_faces(found, meta["classes"], meta["crop"], "train", samples, seed=1,
                                                 cache_dir=cache_dir)
            report.files.append(quantize_int8(path, out.with_suffix(".int8.onnx"), mode=int8, calibration=calibration))
            bar.advance()
        if checked:
            bar.note(f"check against PyTorch on {check_split} faces")
            faces, labels = reference_faces(report.data, meta["classes"], meta["crop"], check_split, samples,
                                            cache_dir=cache_dir)
            report.checks = {f: compare_with_torch(f, checkpoint, faces, labels) for f in report.files}
            bar.advance()
    return report
