"""ResNets with torchvision's layer names (ImageNet weights map onto ResNet-18 by name), adapted to
small faces: inputs of 64 px or less get a 3×3 stem and no initial max-pool.

``resnet10-small`` and ``resnet10-tiny`` are CPU students: one block per stage at half and a quarter
of ResNet-18's width, stride-2 stem. Built of dense 3×3 convolutions, they run as fast in ONNX
Runtime as mini-Xception networks of a sixth of their parameters and train 2-3× faster in PyTorch."""

from __future__ import annotations

import torch
from torch import nn

from emolens.models.layers import SMALL_INPUT
from emolens.models.registry import register_model


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
            if stride != 1 or in_ch != out_ch
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class ResNet(nn.Module):
    """Four stages of basic blocks (``widths``, ``blocks`` per stage); the small-input stem is a 3×3
    conv of stride ``small_stride``."""

    def __init__(
        self,
        num_classes: int,
        channels: int = 3,
        small_input: bool = False,
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
        blocks: tuple[int, int, int, int] = (2, 2, 2, 2),
        small_stride: int = 1,
    ) -> None:
        super().__init__()
        in_ch = widths[0]
        if small_input:
            self.conv1 = nn.Conv2d(channels, in_ch, 3, small_stride, 1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(channels, in_ch, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.relu = nn.ReLU(inplace=True)
        for i, (width, count) in enumerate(zip(widths, blocks), 1):
            stride = 1 if i == 1 else 2
            stage = [BasicBlock(in_ch, width, stride)] + [BasicBlock(width, width) for _ in range(count - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*stage))
            in_ch = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@register_model("resnet18", input_size=224, channels=3, description="ResNet-18 (3×3 stem, no max-pool at ≤64 px)")
def resnet18(num_classes: int, input_size: int, channels: int) -> nn.Module:
    """ResNet-18; inputs of 64 px or less get a 3×3 stride-1 stem without max-pooling."""
    return ResNet(num_classes, channels, small_input=input_size <= SMALL_INPUT)


def _resnet10(num_classes: int, input_size: int, channels: int, width: int) -> nn.Module:
    widths = (width, 2 * width, 4 * width, 8 * width)
    return ResNet(
        num_classes, channels, small_input=input_size <= SMALL_INPUT, widths=widths, blocks=(1, 1, 1, 1), small_stride=2
    )


@register_model(
    "resnet10-small",
    input_size=48,
    channels=1,
    description="ResNet-10 at half width (32-256), stride-2 stem: a CPU student as fast as mini-xception-wide",
)
def resnet10_small(num_classes: int, input_size: int, channels: int) -> nn.Module:
    """One basic block per stage, widths 32/64/128/256, a 3×3 stride-2 stem at ≤64 px (1.2 M parameters)."""
    return _resnet10(num_classes, input_size, channels, 32)


@register_model(
    "resnet10-tiny",
    input_size=48,
    channels=1,
    description="ResNet-10 at quarter width (16-128), stride-2 stem: a CPU student faster than mini-xception",
)
def resnet10_tiny(num_classes: int, input_size: int, channels: int) -> nn.Module:
    """One basic block per stage, widths 16/32/64/128, a 3×3 stride-2 stem at ≤64 px (0.31 M parameters)."""
    return _resnet10(num_classes, input_size, channels, 16)
