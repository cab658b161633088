"""MobileNetV2 with torchvision's layer names; inputs of 64 px or less keep full resolution in the stem."""

from __future__ import annotations

import torch
from torch import nn

from emolens.models.layers import SMALL_INPUT, ConvBNAct, make_divisible
from emolens.models.registry import register_model

# expansion t, channels c, repeats n, first stride s
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(in_ch, hidden, 1, activation=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int, channels: int = 3, width_mult: float = 1.0, dropout: float = 0.2, small_input: bool = False) -> None:
        super().__init__()
        in_ch = make_divisible(32 * width_mult)
        last = make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [ConvBNAct(channels, in_ch, 3, 1 if small_input else 2, activation=nn.ReLU6)]
        for t, c, n, s in _SETTINGS:
            out_ch = make_divisible(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
        features.append(ConvBNAct(in_ch, last, 1, activation=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(x)


@register_model("mobilenetv2", input_size=224, channels=3, description="MobileNetV2 (stride-1 stem at ≤64 px)")
def mobilenetv2(num_classes: int, input_size: int, channels: int, **kwargs) -> nn.Module:
    """MobileNetV2; inputs of 64 px or less get a stride-1 stem."""
    return MobileNetV2(num_classes, channels, small_input=input_size <= SMALL_INPUT, **kwargs)
