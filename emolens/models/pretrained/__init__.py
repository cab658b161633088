"""Pretrained backbones shipped with emolens (timm style: each weights file has its config beside it).

``NAME.safetensors`` holds the tensors (fp16; safetensors cannot run code when read) and
``NAME.json`` what they are: the architecture, the input convention (``input_norm``, see
:data:`emolens.models.mobilenetv1.INPUT_NORMS`), the size they were trained at, source, licence
and checksums. ``emolens train --arch mobilenetv1 --pretrained vggface2`` starts from them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emolens.errors import ModelError
from emolens.files import atomic_write, write_json

PRETRAINED_DIR = Path(__file__).resolve().parent


def available(root: Path = PRETRAINED_DIR) -> dict[str, dict[str, Any]]:
    """Every pretrained weights set in ``root``, by name, with its config."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(root.glob("*.json"))
            if (p.with_suffix(".safetensors")).is_file()}


def _paths(name_or_path: str, root: Path) -> tuple[Path, Path]:
    path = Path(name_or_path)
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json")
    known = available(root)
    if name_or_path not in known:
        raise ModelError(f"unknown pretrained weights {name_or_path!r}: expected one of {', '.join(known) or '(none)'} "
                         "or a .safetensors file with its .json beside it")
    return root / f"{name_or_path}.safetensors", root / f"{name_or_path}.json"


def pretrained_config(name_or_path: str, root: Path = PRETRAINED_DIR) -> dict[str, Any]:
    """The config beside a shipped name's (``vggface2``) or a ``.safetensors`` path's weights:
    architecture, input convention, source, licence, checksum (the weights are not read)."""
    weights, config = _paths(name_or_path, root)
    for p in (weights, config):
        if not p.is_file():
            raise ModelError(f"{p}: no such file (pretrained weights are a .safetensors file with a .json beside it)")
    return json.loads(config.read_text())


def read_pretrained(name_or_path: str, root: Path = PRETRAINED_DIR) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and config of a shipped name (``vggface2``) or a ``.safetensors`` path; the
    file's checksum must match its config."""
    from safetensors.torch import load

    cfg = pretrained_config(name_or_path, root)
    weights, config = _paths(name_or_path, root)
    data = weights.read_bytes()  # read once: checked, then parsed
    digest = hashlib.sha256(data).hexdigest()
    if cfg.get("sha256") not in (None, digest):
        raise ModelError(f"{weights}: checksum {digest[:12]}… does not match {config.name} ({cfg['sha256'][:12]}…)")
    return load(data), cfg


def load_pretrained(model: nn.Module, name_or_path: str, root: Path = PRETRAINED_DIR) -> dict[str, list[str]]:
    """Copy the pretrained backbone into ``model`` (in place, cast to its dtype); the classifier and
    anything the file lacks keep their initialisation. Returns the loaded and the untouched names."""
    tensors, _cfg = read_pretrained(name_or_path, root)
    own = model.state_dict()
    loaded = [k for k in own if k in tensors and tensors[k].shape == own[k].shape]
    wrong = [k for k in own if k in tensors and k not in loaded]
    if wrong or not loaded:
        raise ModelError(f"pretrained {name_or_path!r} does not fit {type(model).__name__}: "
                         f"{len(loaded)} tensors match, shapes differ for {', '.join(wrong[:5]) or '-'}")
    with torch.no_grad():
        for k in loaded:
            own[k].copy_(tensors[k].to(own[k].dtype))
    return {"loaded": loaded, "untouched": [k for k in own if k not in tensors]}


def save_pretrained(name: str, tensors: dict[str, torch.Tensor], config: dict[str, Any], root: Path) -> Path:
    """Write ``root/name.safetensors`` (floating tensors as fp16) and ``root/name.json`` (``config`` +
    its checksum), atomically."""
    from safetensors.torch import save_file

    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    path = root / f"{name}.safetensors"
    atomic_write(path, lambda tmp: save_file(half, str(tmp), metadata={"name": name}))
    write_json(root / f"{name}.json", {**config, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return path
