"""Recover ``--init`` weights for a run from its exported ONNX file (any architecture whose every
convolution is followed by a BatchNorm, and whose classifier is its last linear layer:
``mobilenetv1``, the ``resnet`` family, ``vgg48``).

``emolens export`` folds each BatchNorm into the convolution before it, so the ONNX file holds a
kernel and a bias per layer. This rebuilds the PyTorch state dict the way the VGGFace2 port does
(``convert_faceres.fold_into_bn``): BatchNorm statistics (0, 1 - eps), each kernel at He
initialisation's spread with its factor in the BatchNorm weight; eval mode reproduces the ONNX
logits. The architecture, classes and input come from the file's emolens metadata; ONNX nodes are
matched to modules by the scope names the exporter gives them. Used when a shipped model's
checkpoint is gone and training continues from the model itself (fp16 weights round to about 1e-3):

    python scripts/onnx_to_init.py emolens/weights/accurate.onnx runs/accurate-v1-init.pt
    emolens train ... --arch mobilenetv1 --init runs/accurate-v1-init.pt ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from convert_faceres import fold_into_bn  # noqa: E402

from emolens.models import create_model  # noqa: E402


def module_path(node_name: str) -> str:
    """The module behind an exported node: ``/layer2/layer2.0/downsample/downsample.0/Conv`` →
    ``layer2.0.downsample.0`` (each scope repeats its parent's name before a dot)."""
    parts = node_name.strip("/").split("/")[:-1]
    kept = [p for p, nxt in zip(parts, [*parts[1:], ""]) if not nxt.startswith(p + ".")]
    return ".".join(kept)


def model_of(proto: onnx.ModelProto) -> tuple[nn.Module, dict]:
    """A fresh model of the file's architecture, classes and input (its emolens metadata)."""
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["emolens"])
    crop = meta.get("crop", {})
    model = create_model(meta["model_name"], len(meta["classes"]), crop.get("size", 48), crop.get("channels", 1))
    return model.eval(), meta


def batchnorm_after(model: nn.Module, conv: str) -> str | None:
    """The BatchNorm registered next after module ``conv`` (pools and activations between them are
    skipped; another convolution or linear layer first means there is none)."""
    names = [name for name, _ in model.named_modules()]
    if conv not in names:
        return None
    for name, module in list(model.named_modules())[names.index(conv) + 1:]:
        if isinstance(module, nn.BatchNorm2d):
            return name
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return None
    return None


class Recovered(NamedTuple):
    state: dict[str, torch.Tensor]
    model: nn.Module  # a fresh model of the file's architecture (the state not loaded)
    pairs: list[tuple[str, str]]  # (convolution, BatchNorm) module names
    meta: dict  # the file's emolens metadata


def recover(onnx_path: Path) -> Recovered:
    """The state dict behind an exported ONNX file, the fresh model it fits, its (convolution,
    BatchNorm) module pairs and the file's metadata (the file is read once)."""
    proto = onnx.load(str(onnx_path))
    graph = proto.graph
    inits = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in graph.initializer}
    # fp16-weight exports store W as "name.fp16" feeding a Cast whose output is the Conv's input
    casts = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Cast"}

    def weight(name: str) -> np.ndarray:
        return inits[casts.get(name, name)]

    model, meta = model_of(proto)
    modules = dict(model.named_modules())
    sd: dict[str, torch.Tensor] = {}
    pairs: list[tuple[str, str]] = []
    for node in (n for n in graph.node if n.op_type == "Conv"):
        conv = module_path(node.name)
        following = batchnorm_after(model, conv)
        if not isinstance(modules.get(conv), nn.Conv2d) or following is None:
            raise ValueError(f"{onnx_path}: node {node.name} is not a convolution followed by a BatchNorm in "
                             f"{type(model).__name__} (looked for module {conv!r})")
        folded = fold_into_bn("x", weight(node.input[1]), None, weight(node.input[2]), modules[following].eps)
        sd |= {k.replace("x.conv", conv).replace("x.bn", following): v for k, v in folded.items()}
        pairs.append((conv, following))
    gemm = next(n for n in graph.node if n.op_type == "Gemm")
    head = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    sd[f"{head}.weight"] = torch.from_numpy(weight(gemm.input[1]))
    sd[f"{head}.bias"] = torch.from_numpy(weight(gemm.input[2]))
    return Recovered(sd, model, pairs, meta)


@torch.no_grad()
def calibrate(model: nn.Module, pairs: list[tuple[str, str]], faces: np.ndarray, batch_size: int = 256) -> None:
    """Give every BatchNorm the statistics its convolution's output really has on ``faces`` (uint8
    N×H×W×C at the model's input), keeping eval mode's function: with statistics (0, 1) a layer
    trained in train mode renormalises by its batch statistics at the first step, and the recovered
    network loses most of what it knew. Each layer's weight and bias absorb the change."""
    from emolens.preprocess import normalize

    modules = dict(model.named_modules())
    sums = {conv: [0.0, 0.0, 0] for conv, _ in pairs}

    def hook(conv: str):
        def record(_module, _inputs, out: torch.Tensor) -> None:
            y = out.double().transpose(0, 1).flatten(1)
            sums[conv][0] += y.sum(1)
            sums[conv][1] += (y * y).sum(1)
            sums[conv][2] += y.shape[1]
        return record

    handles = [modules[conv].register_forward_hook(hook(conv)) for conv, _ in pairs]
    model.eval()
    for start in range(0, len(faces), batch_size):  # eval mode: every layer's input is the ONNX graph's
        model(torch.from_numpy(normalize(faces[start:start + batch_size])))
    for h in handles:
        h.remove()
    for conv, bn_name in pairs:
        total, squares, n = sums[conv]
        mean = total / n
        var = (squares / n - mean * mean).clamp_min(0)
        bn = modules[bn_name]
        factor = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
        bn.bias.copy_(bn.bias.double() + factor * (mean - bn.running_mean.double()))
        bn.weight.copy_(factor * (var + bn.eps).sqrt())
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)


def calibration_faces(path: str, meta: dict, count: int = 4096) -> np.ndarray:
    """``count`` faces drawn (seeded) from a dataset's train split, cut at the file's crop spec."""
    from emolens.data.cache import load_arrays
    from emolens.data.datasets import load_dataset
    from emolens.preprocess import CropSpec

    crop = CropSpec.from_dict(meta.get("crop", {}))
    images, _ = load_arrays(load_dataset(path, crop=crop).split("train"), crop.size, crop.channels, contrast=crop.contrast)
    pick = np.sort(np.random.default_rng(0).permutation(len(images))[:count])
    return images[pick]


def check(onnx_path: Path, sd: dict[str, torch.Tensor], model: nn.Module) -> float:
    """Largest absolute logit difference between the ONNX file and the recovered model on random crops."""
    missing = [k for k in model.load_state_dict(sd, strict=False).missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise ValueError(f"{onnx_path}: no weights recovered for {', '.join(missing)}")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    shape = [8, *session.get_inputs()[0].shape[1:]]
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.abs(ours - theirs).max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--calibrate", metavar="DATASET", help="give the BatchNorms the statistics of 4,096 of "
                        "this dataset's training faces (for runs that train them: without --freeze-bn)")
    args = parser.parse_args(argv)
    sd, model, pairs, meta = recover(args.onnx)
    if args.calibrate:
        model.load_state_dict(sd, strict=False)
        calibrate(model, pairs, calibration_faces(args.calibrate, meta))
        sd = {k: v.detach().clone() for k, v in model.state_dict().items() if k in sd}
    diff = check(args.onnx, sd, model)
    print(f"{args.onnx}: {len(sd)} tensors of {type(model).__name__}; largest logit difference to ONNX Runtime {diff:.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, args.out)


if __name__ == "__main__":
    main()
