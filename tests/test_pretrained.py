"""Transfer learning: the shipped face-identity backbone reproduces the original graph, its file is
checked before use, and fine-tuning freezes what it says it freezes."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emolens.errors import ModelError  # noqa: E402
from emolens.images import decode  # noqa: E402
from emolens.models import create_model  # noqa: E402
from emolens.models.checkpoint import init_from, load_checkpoint  # noqa: E402
from emolens.models.mobilenetv1 import same_padding  # noqa: E402
from emolens.models.pretrained import PRETRAINED_DIR, available, load_pretrained, read_pretrained  # noqa: E402
from emolens.preprocess import normalize, resize_to  # noqa: E402
from emolens.training.config import TrainConfig  # noqa: E402
from emolens.training.train import fit  # noqa: E402

REFERENCE = Path(__file__).parent / "data" / "faceres-reference.npz"


@pytest.mark.parametrize(("size", "stride", "expected"), [(224, 2, (0, 1, 0, 1)), (7, 2, (1, 1, 1, 1)), (96, 1, (1, 1, 1, 1))])
def test_same_padding_is_tensorflows(size: int, stride: int, expected: tuple[int, int, int, int]) -> None:
    """TF "SAME": out = ceil(size / stride); an uneven total pads the extra pixel right and bottom."""
    assert same_padding(size, 3, stride) == expected
    out = (size + expected[0] + expected[1] - 3) // stride + 1
    assert out == -(-size // stride)


def test_shipped_backbone_matches_the_original_graph(shared: Path) -> None:
    """The fp16 weights in emolens/models/pretrained reproduce the TF.js graph's 1,024-d features and its
    age/gender heads on real faces (reference: the original graph run in TensorFlow, see
    scripts/convert_faceres.py) to the precision fp16 storage allows."""
    zip_path = shared / "datasets" / "affectnet-yolo.zip"
    if not zip_path.exists():
        pytest.skip(f"{zip_path} not found")
    ref = np.load(REFERENCE)
    with zipfile.ZipFile(zip_path) as z:  # the converter's `faces` selection, first 8
        names = sorted(n for n in z.namelist() if "/valid/images/" in n and n.endswith(".jpg"))[::80][:8]
        faces = np.stack([resize_to(decode(z.read(n))[0], 224, 3) for n in names])
    tensors, cfg = read_pretrained("vggface2")
    assert cfg["arch"] == "mobilenetv1" and cfg["input_norm"] == "vggface2-bgr" and "Apache-2.0" in cfg["licence"]
    model = create_model("mobilenetv1", 8, input_size=224).eval()
    report = load_pretrained(model, "vggface2")
    fresh = {k for k in report["untouched"] if not k.endswith("num_batches_tracked")}
    assert fresh == {"classifier.1.weight", "classifier.1.bias"}
    heads = {k.split(".", 1)[1]: v.float() for k, v in tensors.items() if k.startswith("faceres_heads.")}
    with torch.no_grad():
        feat = model.features(torch.from_numpy(normalize(faces)))
        hidden = torch.relu(feat @ heads["feats.weight"].T + heads["feats.bias"])
        age = torch.softmax(hidden @ heads["age_pred.weight"].T + heads["age_pred.bias"], 1)
    for got, name in ((feat, "features"), (age, "age")):
        err = np.linalg.norm(got.numpy() - ref[name]) / np.linalg.norm(ref[name])
        assert err < 1e-2, (name, err)
    assert (feat > 0).float().mean() > 0.3  # real, varied features, not a dead layer


def test_pretrained_file_is_checked(tmp_path: Path) -> None:
    assert "vggface2" in available()
    with pytest.raises(ModelError, match="unknown pretrained weights 'imagenet'.*vggface2"):
        read_pretrained("imagenet")
    for name in ("vggface2.safetensors", "vggface2.json"):
        shutil.copy(PRETRAINED_DIR / name, tmp_path / name)
    data = bytearray((tmp_path / "vggface2.safetensors").read_bytes())
    data[-1000] ^= 0xFF  # one flipped byte in the tensors
    (tmp_path / "vggface2.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        read_pretrained(str(tmp_path / "vggface2.safetensors"))
    with pytest.raises(ModelError, match="does not fit"):
        load_pretrained(create_model("resnet10-tiny", 7), "vggface2")


def _frozen_run(data: Path, out: Path, epochs: int) -> TrainConfig:
    return TrainConfig(data=[str(data)], out=str(out), arch="mobilenetv1", pretrained="vggface2", input_size=64,
                       channels=3, head_epochs=1, backbone_lr=0.3, freeze_bn=True, epochs=epochs, batch_size=32,
                       optimizer="adamw", lr=1e-3, scheduler="cosine", early_stopping=0, amp="off", workers=1)


def test_head_warm_up_then_fine_tune(fer_small: Path, tmp_path: Path) -> None:
    """Epoch 0 trains only the classifier (the backbone stays the pretrained one, BatchNorm statistics
    included); epoch 1 fine-tunes the backbone too, with BatchNorm statistics still frozen. The
    checkpoint names the pretrained weights it started from."""
    pretrained = create_model("mobilenetv1", 7, input_size=64)
    load_pretrained(pretrained, "vggface2")
    before = pretrained.state_dict()
    fit(_frozen_run(fer_small, tmp_path / "warm", 1), log=lambda _m: None)
    warm = load_checkpoint(tmp_path / "warm" / "last.pt")
    for k, v in before.items():
        if k.startswith("backbone.") and v.is_floating_point():
            assert torch.equal(warm["model"][k], v), k
    assert not torch.equal(warm["model"]["classifier.1.weight"], pretrained.state_dict()["classifier.1.weight"])
    assert warm["pretrained"]["arch"] == "mobilenetv1" and warm["config"]["pretrained"] == "vggface2"
    fit(_frozen_run(fer_small, tmp_path / "tuned", 2), log=lambda _m: None)
    tuned = load_checkpoint(tmp_path / "tuned" / "last.pt")["model"]
    assert not torch.equal(tuned["backbone.conv_pw_13.conv.weight"], before["backbone.conv_pw_13.conv.weight"])
    for k in ("backbone.conv1.bn.running_var", "backbone.conv_pw_13.bn.running_mean"):
        assert torch.equal(tuned[k], before[k]), k


def test_pretrained_config_is_saved_with_the_run(fer_small: Path, tmp_path: Path) -> None:
    fit(_frozen_run(fer_small, tmp_path / "run", 1), log=lambda _m: None)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["pretrained"], cfg["head_epochs"], cfg["backbone_lr"], cfg["freeze_bn"]) == ("vggface2", 1, 0.3, True)


@pytest.mark.parametrize("name", ["accurate", "mixed8-fast"])
def test_onnx_to_init_recovers_a_shipped_model(name: str, fer_small: Path, tmp_path: Path) -> None:
    """scripts/onnx_to_init.py rebuilds trainable weights (BatchNorm unfolded) of a shipped model
    whose checkpoint is gone, for the MobileNet-v1 and ResNet families alike; `--init` takes them.
    With --calibrate the BatchNorms get real faces' statistics, so that train mode (batch
    statistics) computes nearly what eval mode does, and eval mode still matches the ONNX file."""
    import subprocess
    import sys

    out = tmp_path / "init.pt"
    calibrate = ["--calibrate", str(fer_small)] if name == "mixed8-fast" else []
    done = subprocess.run([sys.executable, "scripts/onnx_to_init.py", f"emolens/weights/{name}.onnx", str(out), *calibrate],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert done.returncode == 0, done.stderr
    difference = float(done.stdout.rsplit(" ", 1)[1])
    assert difference < 1e-4, done.stdout
    arch, size, channels = {"accurate": ("mobilenetv1", 96, 3), "mixed8-fast": ("resnet10-tiny", 48, 1)}[name]
    report = init_from(create_model(arch, 8, size, channels), out)
    assert report["loaded"] and not report["skipped"]
    assert all(k.endswith("num_batches_tracked") for k in report["missing"])
    if calibrate:
        from emolens.data.cache import load_arrays
        from emolens.data.datasets import load_dataset
        from emolens.preprocess import CropSpec

        model = create_model(arch, 8, size, channels)
        init_from(model, out)
        crop = CropSpec(48, 1, margin=0.0, contrast="equalize")
        faces, _ = load_arrays(load_dataset(fer_small, crop=crop).split("train"), 48, 1, contrast="equalize")
        x = torch.from_numpy(normalize(faces))
        with torch.no_grad():
            evaluated = model.eval()(x)
            for m in model.modules():  # train-mode BatchNorm (batch statistics), dropout off
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.train()
            trained = model(x)
        assert (evaluated.argmax(1) == trained.argmax(1)).float().mean() > 0.9
