"""EfficientNet-B0 with torchvision's layer names; inputs of 64 px or less keep full resolution in the stem."""

from __future__ import annotations

import torch
from torch import nn

from emolens.models.layers import SMALL_INPUT, ConvBNAct
from emolens.models.registry import register_model

# expansion, kernel, first stride, in channels, out channels, repeats
_B0 = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
       (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(self.activation(self.fc1(self.avgpool(x)))))


class MBConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_ch * expand
        self.use_res_connect = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(in_ch, hidden, 1, activation=nn.SiLU))
        layers += [
            ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, activation=nn.SiLU),
            SqueezeExcitation(hidden, max(1, in_ch // 4)),
            ConvBNAct(hidden, out_ch, 1, activation=None),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.use_res_connect else self.block(x)


class EfficientNetB0(nn.Module):
    def __init__(self, num_classes: int, channels: int = 3, dropout: float = 0.2, small_input: bool = False) -> None:
        super().__init__()
        features: list[nn.Module] = [ConvBNAct(channels, 32, 3, 1 if small_input else 2, activation=nn.SiLU)]
        for expand, kernel, stride, in_ch, out_ch, repeats in _B0:
            features.append(nn.Sequential(*(
                MBConv(in_ch if i == 0 else out_ch, out_ch, kernel, stride if i == 0 else 1, expand) for i in range(repeats)
            )))
        features.append(ConvBNAct(320, 1280, 1, activation=nn.SiLU))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@register_model("efficientnet-b0", input_size=224, channels=3, description="EfficientNet-B0 (stride-1 stem at ≤64 px)")
def efficientnet_b0(num_classes: int, input_size: int, channels: int, **kwargs) -> nn.Module:
    """EfficientNet-B0; inputs of 64 px or less get a stride-1 stem."""
    return EfficientNetB0(num_classes, channels, small_input=input_size <= SMALL_INPUT, **kwargs)
