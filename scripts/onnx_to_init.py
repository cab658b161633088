"""Recover ``--init`` weights for a ``mobilenetv1`` run from its exported ONNX file.

``emolens export`` folds each BatchNorm into the convolution before it, so the ONNX file holds a
kernel and a bias per layer. This rebuilds the PyTorch state dict the way the VGGFace2 port does
(``convert_faceres.fold_into_bn``): BatchNorm statistics (0, 1 - eps), each kernel at He
initialisation's spread with its factor in the BatchNorm weight; eval mode reproduces the ONNX
logits. Used when a shipped model's checkpoint is gone and training continues from the model
itself (fp16 weights round to about 1e-3):

    python scripts/onnx_to_init.py emolens/weights/accurate.onnx runs/accurate-v1-init.pt
    emolens train ... --arch mobilenetv1 --init runs/accurate-v1-init.pt ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from convert_faceres import fold_into_bn  # noqa: E402

from emolens.models import create_model  # noqa: E402


def recover(onnx_path: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The ``mobilenetv1`` state dict behind an exported ONNX file, and its class count."""
    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: numpy_helper.to_array(i).astype(np.float32) for i in graph.initializer}
    # fp16-weight exports store W as "name.fp16" feeding a Cast whose output is the Conv's input
    casts = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Cast"}

    def weight(name: str) -> np.ndarray:
        return inits[casts.get(name, name)]

    convs = [n for n in graph.node if n.op_type == "Conv"]
    gemm = next(n for n in graph.node if n.op_type == "Gemm")
    model = create_model("mobilenetv1", weight(gemm.input[2]).shape[0], 96, 3)
    prefixes = [name.removesuffix(".conv") for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    if len(prefixes) != len(convs):
        raise ValueError(f"{onnx_path}: {len(convs)} convolutions, mobilenetv1 has {len(prefixes)}")
    sd: dict[str, torch.Tensor] = {}
    for prefix, node in zip(prefixes, convs, strict=True):
        sd |= fold_into_bn(prefix, weight(node.input[1]), None, weight(node.input[2]), 1e-3)
    sd["classifier.1.weight"] = torch.from_numpy(weight(gemm.input[1]))
    sd["classifier.1.bias"] = torch.from_numpy(weight(gemm.input[2]))
    return sd, len(sd["classifier.1.bias"])


def check(onnx_path: Path, sd: dict[str, torch.Tensor], classes: int) -> float:
    """Largest absolute logit difference between the ONNX file and the recovered model on random crops."""
    model = create_model("mobilenetv1", classes, 96, 3)
    model.load_state_dict(sd, strict=False)
    model.eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (8, 3, 96, 96)).astype(np.float32)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    theirs = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float(np.abs(ours - theirs).max())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    sd, classes = recover(args.onnx)
    diff = check(args.onnx, sd, classes)
    print(f"{args.onnx}: {len(sd)} tensors, {classes} classes; largest logit difference to ONNX Runtime {diff:.2e}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, args.out)


if __name__ == "__main__":
    main()
