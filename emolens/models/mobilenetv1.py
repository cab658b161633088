"""MobileNet-v1 in the layout of Keras' ``MobileNet`` (the HSE face-recognition network's backbone).

Layer names follow the Keras/TF graph (``conv1``, ``conv_dw_1``, ``conv_pw_1`` … ``conv_pw_13``) so the
converter (``scripts/convert_faceres.py``) maps weights one to one, and TensorFlow's "SAME" padding is
reproduced exactly: a stride-2 layer on an even input pads one pixel right and bottom only. The
network takes emolens' normalised input (RGB in [-1, 1], see :mod:`emolens.preprocess`) and maps it
to what the pretrained weights expect (``input_norm``, recorded in the checkpoint's ``model_kwargs``),
so crops are made the same way for every model.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from emolens.models.registry import register_model
from emolens.preprocess import MEAN, STD

# (output channels, stride) of the 13 depthwise-separable blocks
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
           (512, 1), (1024, 2), (1024, 1))

#: Input conventions of pretrained weights: colour order, scale of the 0..255 pixels, per-channel
#: mean subtracted (in the colour order given). ``identity`` keeps emolens' [-1, 1] RGB.
INPUT_NORMS: dict[str, dict] = {
    "identity": {"bgr": False, "scale": 1.0 / (255 * STD), "mean": [255 * MEAN] * 3},
    "vggface2-bgr": {"bgr": True, "scale": 1.0, "mean": [103.939, 116.779, 123.68]},
}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow's "SAME" padding (left, right, top, bottom) of a square ``size`` input: the extra
    pixel of an uneven total goes right and bottom."""
    total = max(kernel - (stride if size % stride == 0 else size % stride), 0)
    return (total // 2, total - total // 2, total // 2, total - total // 2)


class ConvBNReLU6(nn.Sequential):
    """Static "SAME" pad → convolution (no bias) → BatchNorm → ReLU6, for a known input size."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, size: int, groups: int = 1) -> None:
        pad = same_padding(size, kernel, stride)
        super().__init__(OrderedDict(
            pad=nn.ZeroPad2d(pad) if any(pad) else nn.Identity(),
            conv=nn.Conv2d(in_ch, out_ch, kernel, stride, groups=groups, bias=False),
            bn=nn.BatchNorm2d(out_ch, eps=1e-3),
            act=nn.ReLU6(inplace=True),
        ))


class InputNorm(nn.Module):
    """emolens' normalised input → the pretrained weights' convention (gray inputs repeated to RGB)."""

    def __init__(self, norm: str) -> None:
        super().__init__()
        cfg = INPUT_NORMS[norm]
        # x_emolens = (p/255 - MEAN)/STD  ⇒  p = x·255·STD + 255·MEAN; then (p - mean)·scale per channel
        self.bgr = cfg["bgr"]
        mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("weight", torch.full((1, 3, 1, 1), 255 * STD * cfg["scale"]), persistent=False)
        self.register_buffer("bias", (255 * MEAN - mean) * cfg["scale"], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif self.bgr:
            x = x.flip(1)
        return x * self.weight + self.bias


class MobileNetV1(nn.Module):
    """MobileNet-v1 (width 1.0) with a dropout + linear classifier on the global-average-pooled
    1,024-d feature; ``features(x)`` returns that feature."""

    def __init__(self, num_classes: int, input_size: int, channels: int = 3, dropout: float = 0.2,
                 input_norm: str = "vggface2-bgr") -> None:
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {input_norm!r}")
        self.input_norm = InputNorm(input_norm)
        size = input_size
        layers: OrderedDict[str, nn.Module] = OrderedDict(conv1=ConvBNReLU6(3, 32, 3, 2, size))
        size = -(-size // 2)
        in_ch = 32
        for i, (out_ch, stride) in enumerate(_BLOCKS, 1):
            layers[f"conv_dw_{i}"] = ConvBNReLU6(in_ch, in_ch, 3, stride, size, groups=in_ch)
            size = -(-size // stride)
            layers[f"conv_pw_{i}"] = ConvBNReLU6(in_ch, out_ch, 1, 1, size)
            in_ch = out_ch
        self.backbone = nn.Sequential(layers)
        self.num_features = in_ch
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_ch, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.input_norm(x)).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register_model("mobilenetv1", input_size=96, channels=3,
                description="MobileNet-v1 in Keras' layout (TF 'SAME' padding); --pretrained vggface2: face-identity weights")
def mobilenetv1(num_classes: int, input_size: int, channels: int, **kwargs) -> nn.Module:
    """MobileNet-v1 at width 1.0 (3.2 M parameters in the backbone); gray inputs are repeated to RGB."""
    return MobileNetV1(num_classes, input_size, channels, **kwargs)

