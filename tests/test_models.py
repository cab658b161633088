"""Model registry and families: layouts, parameter counts, learning on real faces, --init."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emolens.data import load_arrays, load_dataset  # noqa: E402
from emolens.models import create_model, list_models, register_model  # noqa: E402
from emolens.models.checkpoint import init_from  # noqa: E402
from emolens.preprocess import normalize  # noqa: E402

NAMES = ["efficientnet-b0", "mini-xception", "mini-xception-wide", "mini-xception-xl", "mobilenetv1", "mobilenetv2", "resnet10-small", "resnet10-tiny", "resnet18", "seed-cnn", "vgg48"]


def test_registry_lists_every_family():
    infos = {m.name: m for m in list_models()}
    assert sorted(infos) == NAMES
    assert (infos["mini-xception"].input_size, infos["mini-xception"].channels) == (48, 1)
    assert (infos["seed-cnn"].input_size, infos["seed-cnn"].channels) == (224, 3)
    assert infos["mini-xception"].num_params() < 1_000_000


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model 'nope'.*mini-xception"):
        create_model("nope", 7)
    with pytest.raises(ValueError, match="registered twice"):
        register_model("vgg48", input_size=48, channels=1, description="")(lambda **kw: None)


@pytest.mark.parametrize(
    ("name", "params"),
    # torchvision's ImageNet models (1000 classes): equal counts mean the standard layouts.
    [("resnet18", 11_689_512), ("mobilenetv2", 3_504_872), ("efficientnet-b0", 5_288_548)],
)
def test_standard_layouts_match_torchvision(name, params):
    model = create_model(name, 1000)
    assert sum(p.numel() for p in model.parameters()) == params
    keys = set(model.state_dict())
    expected = {
        "resnet18": "layer4.1.bn2.running_var",
        "mobilenetv2": "features.18.0.weight",
        "efficientnet-b0": "features.6.3.block.2.fc2.bias",
    }[name]
    assert expected in keys


def test_mobilenetv1_is_keras_mobilenet():
    """Keras' MobileNet (alpha 1.0, 1000 classes) has 4,231,976 trainable parameters; the layers carry
    its names, and TF "SAME" padding keeps every size (odd ones included) at ceil(size / 32)."""
    model = create_model("mobilenetv1", 1000, input_size=224)
    assert sum(p.numel() for p in model.parameters()) == 4_231_976
    assert {"backbone.conv1.conv.weight", "backbone.conv_dw_13.bn.running_var", "backbone.conv_pw_13.conv.weight"} <= set(
        model.state_dict())
    for size in (96, 100, 112):
        small = create_model("mobilenetv1", 8, input_size=size)
        assert small.backbone(torch.zeros(1, 3, size, size)).shape[-1] == -(-size // 32)
    assert create_model("mobilenetv1", 8, input_size=96, channels=1)(torch.zeros(2, 1, 96, 96)).shape == (2, 8)


@pytest.mark.parametrize(("name", "width", "params"), [("resnet10-small", 32, 1_227_880), ("resnet10-tiny", 16, 308_280)])
def test_resnet10_students_are_one_block_per_stage(name, width, params):
    model = create_model(name, 8)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.conv1.stride == (2, 2) and model.conv1.out_channels == width and model.fc.in_features == 8 * width
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert model(torch.zeros(2, 1, 48, 48)).shape == (2, 8)


def test_seed_cnn_is_exactly_the_specified_network():
    model = create_model("seed-cnn", 5, input_size=64)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert all(c.kernel_size == (3, 3) for c in convs)
    drops = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.25] * 4 + [0.5]
    linears = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears == [(512, 256), (256, 5)]
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 5)


@pytest.fixture(scope="module")
def faces(fer_small, tmp_path_factory):
    """32 real FER2013 training faces (4 per class … cycling), gray uint8 48×48."""
    split = load_dataset(fer_small).split("train")
    images, labels = load_arrays(split, 48, 1, cache_dir=tmp_path_factory.mktemp("cache"))
    pick = np.concatenate([np.flatnonzero(labels == c)[:5] for c in np.unique(labels)])[:32]
    return images[pick], labels[pick]


def _batch(faces, size: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    import cv2

    images, labels = faces
    resized = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])[..., None]
    if channels == 3:
        resized = np.repeat(resized, 3, axis=3)
    return torch.from_numpy(normalize(resized)), torch.from_numpy(labels)


@pytest.mark.parametrize("name", NAMES)
def test_each_model_learns_real_faces(name, faces):
    """A few Adam steps on one batch of real faces lower the loss (small inputs keep big models quick)."""
    torch.manual_seed(0)
    big = name not in ("mini-xception", "mini-xception-wide", "mini-xception-xl", "resnet10-small", "resnet10-tiny", "vgg48")
    size = 32 if big else 48
    channels = 3 if big else 1
    model = create_model(name, 7, input_size=size, channels=channels)
    x, y = _batch(faces, size, channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(8):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert min(losses[-3:]) < losses[0] * 0.9, losses


def test_init_adapts_rgb_weights_to_gray_and_skips_the_head(tmp_path):
    torch.manual_seed(0)
    rgb = create_model("resnet18", 1000, input_size=48, channels=3)
    torch.save(rgb.state_dict(), tmp_path / "imagenet.pth")
    gray = create_model("resnet18", 7, input_size=48, channels=1)
    report = init_from(gray, tmp_path / "imagenet.pth")
    assert report["adapted"] == ["conv1.weight"]
    assert [s.split()[0] for s in report["skipped"]] == ["fc.weight", "fc.bias"]
    assert torch.allclose(gray.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(gray.layer3[0].conv2.weight, rgb.layer3[0].conv2.weight)
    # A gray image fed to the gray model gives the RGB model's features of the same gray image.
    x = torch.randn(1, 1, 48, 48)
    rgb.eval(), gray.eval()
    stem = lambda m, inp: m.bn1(m.conv1(inp))  # noqa: E731
    assert torch.allclose(stem(gray, x), stem(rgb, x.repeat(1, 3, 1, 1)), atol=1e-5)


def test_init_rejects_unrelated_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt: not a readable torch checkpoint"):
        init_from(create_model("mini-xception", 7), tmp_path / "junk.pt")
    torch.save({"x": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no parameter name matches"):
        init_from(create_model("mini-xception", 7), tmp_path / "other.pt")


def test_models_cli_lists_every_family():
    from typer.testing import CliRunner

    from emolens.apps.cli import app

    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in NAMES:
        assert name in result.output
    assert "0.05 M" in result.output and "48×48" in result.output and "224×224" in result.output
