"""Checkpoints: atomic writes, loading a model back, and starting from foreign weights (``--init``).

A checkpoint is a dict with at least ``model`` (state dict), ``model_name``, ``model_kwargs``,
``classes`` and ``crop`` (CropSpec.to_dict()); training adds epoch, optimiser/scheduler/scaler
and RNG states, and the resolved config.

Trust: a ``.pt`` file is a pickle, and unpickling can run code. Every file is read with
``torch.load(weights_only=True)``: only tensors, plain Python data and the numpy arrays of an RNG
state are rebuilt; anything else (a function, a class) is refused with a ValueError naming the
file, before any of it runs.
"""

from __future__ import annotations

import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emolens.errors import ModelError
from emolens.files import atomic_write
from emolens.models.registry import create_model

LAST = "last.pt"
BEST = "best.pt"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` ``state`` to ``path`` atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def resolve_checkpoint(path_or_run_dir: str | Path) -> Path:
    """A ``.pt`` file as is; a run folder → its ``best.pt`` (or ``last.pt`` when there is no best)."""
    path = Path(path_or_run_dir)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise ModelError(f"{path}: run folder without {BEST} or {LAST}")
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file or run folder")
    return path


def _numpy_globals() -> list[Any]:
    """What ``np.random.get_state()`` (in a checkpoint's RNG state) and numpy scalars pickle to,
    under the module names of numpy 1.x (``numpy.core``) and 2.x (``numpy._core``)."""
    reconstruct = np.ndarray.__reduce__(np.zeros(0))[0]
    scalar = np.float64(0).__reduce__()[0]
    named = [(f, f"numpy.{core}.multiarray.{f.__name__}") for f in (reconstruct, scalar) for core in ("core", "_core")]
    dtypes = {type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"} - {np.dtype}  # numpy>=1.25: one class each
    return [np.ndarray, np.dtype, *sorted(dtypes, key=str), *named]


SAFE_GLOBALS = _numpy_globals()


def _read(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` (plus numpy arrays); ValueError in one line naming
    the file when it is refused or unreadable."""
    try:
        with open(path, "rb") as f:
            pickled = f.read(1) == b"\x80"  # the PROTO opcode of torch's legacy format
        zipped = zipfile.is_zipfile(path)
    except OSError as e:
        raise ModelError(f"{path}: cannot be read: {e.strerror or e}") from None
    if not pickled and not zipped:
        raise ModelError(f"{path}: not a readable torch checkpoint (expected a .pt file written by torch.save)")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # legacy files: refused or read
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise ModelError(f"{path}: not a readable torch checkpoint ({_first_line(e)})") from None
        found = re.search(r"GLOBAL (\S+)|got <class '([^']+)'>", str(e))
        what = f"a Python object ({found.group(1) or found.group(2)})" if found else "pickle instructions"
        raise ModelError(f"{path}: refused: it holds {what} beyond weights; emolens loads only tensors, "
                         f"numbers, strings and numpy arrays, since unpickling anything else can run code") from None
    except Exception as e:  # noqa: BLE001  (torch raises several unrelated types for a bad file)
        raise ModelError(f"{path}: not a readable torch checkpoint ({_first_line(e)})") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_checkpoint(path_or_run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint dict; ValueError naming the file when it is not an emolens checkpoint."""
    path = resolve_checkpoint(path_or_run_dir)
    ckpt = _read(path, map_location)
    missing = [k for k in ("model", "model_name", "classes", "crop") if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ModelError(f"{path}: not an emolens checkpoint (missing {', '.join(missing)})")
    return ckpt


def load_model(path_or_run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint or run folder in eval mode; returns (model, checkpoint meta)."""
    ckpt = load_checkpoint(path_or_run_dir, map_location)
    crop = ckpt["crop"]
    model = create_model(
        ckpt["model_name"], len(ckpt["classes"]), crop["size"], crop["channels"], **ckpt.get("model_kwargs", {})
    )
    model.load_state_dict(ckpt["model"])
    meta = {k: v for k, v in ckpt.items() if k != "model"}
    return model.eval(), meta


def _adapt_channels(src: torch.Tensor, dst_shape: torch.Size) -> torch.Tensor | None:
    """Adapt a first-conv kernel between RGB and grayscale; None when shapes are otherwise different."""
    if src.ndim != 4 or len(dst_shape) != 4 or src.shape[0] != dst_shape[0] or src.shape[2:] != dst_shape[2:]:
        return None
    if src.shape[1] == 3 and dst_shape[1] == 1:
        return src.sum(dim=1, keepdim=True)  # gray = r = g = b, so summing keeps the response
    if src.shape[1] == 1 and dst_shape[1] == 3:
        return src.repeat(1, 3, 1, 1) / 3
    return None


def init_from(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load local weights (a state dict or any checkpoint holding ``model``/``state_dict``) into
    ``model`` by parameter name. Input convs are adapted RGB↔gray; tensors whose shapes still
    differ (e.g. the classifier head) are skipped. Returns {"loaded", "adapted", "skipped", "missing"}."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"--init {path}: no such weights file")
    obj = _read(path)
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"--init {path}: expected a state dict or a checkpoint with a 'model' state dict")
    src = {k.removeprefix("module."): v for k, v in obj.items()}
    own = model.state_dict()
    report: dict[str, list[str]] = {"loaded": [], "adapted": [], "skipped": [], "missing": []}
    new_state = {}
    for name, tensor in own.items():
        if name not in src:
            report["missing"].append(name)
            continue
        value = src[name]
        if value.shape != tensor.shape:
            value = _adapt_channels(value, tensor.shape)
            if value is None:
                report["skipped"].append(f"{name} {tuple(src[name].shape)}→{tuple(tensor.shape)}")
                continue
            report["adapted"].append(name)
        else:
            report["loaded"].append(name)
        new_state[name] = value.to(tensor.dtype)
    if not new_state:
        raise ModelError(f"--init {path}: no parameter name matches this model")
    model.load_state_dict(new_state, strict=False)
    return report
