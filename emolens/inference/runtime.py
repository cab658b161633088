"""ONNX Runtime sessions tuned for low latency on a few CPU cores."""

from __future__ import annotations

import os
from pathlib import Path

import onnxruntime as ort

from emolens.errors import ModelError


def cpu_threads() -> int:
    """Intra-op threads: ``EMOLENS_THREADS`` or the usable cores, at most 4 (small models stop scaling)."""
    if "EMOLENS_THREADS" in os.environ:
        return max(1, int(os.environ["EMOLENS_THREADS"]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores))


def create_session(model: str | Path | bytes, threads: int | None = None) -> ort.InferenceSession:
    """A CPU session: all graph optimisations, sequential execution, ``threads`` intra-op threads
    (default :func:`cpu_threads`), no thread spinning. ValueError naming the file when ONNX
    Runtime cannot load it."""
    ort.disable_telemetry_events()  # also where onnxruntime was imported before emolens set ORT_DISABLE_TELEMETRY
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads or cpu_threads()
    opts.inter_op_num_threads = 1
    # Spinning threads burn the cores that video decoding and drawing need between calls.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001  (onnxruntime raises its own types: Fail, InvalidGraph, ...)
        name = "<model bytes>" if isinstance(model, bytes) else str(model)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{name}: not a usable ONNX model ({first_line})") from None
