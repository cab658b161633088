"""mini-Xception (Arriaga et al., 2017): a tiny real-time CNN for 48×48 grayscale faces.

Depthwise-separable residual modules with BatchNorm; ~60 k parameters at the default width.
"""

from __future__ import annotations

import torch
from torch import nn

from emolens.models.registry import register_model


class SeparableConv(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv2d(in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
        )


class XceptionModule(nn.Module):
    """Two separable convs and a strided max-pool, plus a strided 1×1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=2, bias=False), nn.BatchNorm2d(out_ch))
        self.body = nn.Sequential(
            SeparableConv(in_ch, out_ch),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            SeparableConv(out_ch, out_ch),
            nn.BatchNorm2d(out_ch),
            nn.MaxPool2d(3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class MiniXception(nn.Module):
    def __init__(self, num_classes: int, channels: int = 1, widths: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.2) -> None:
        super().__init__()
        stem = 8
        self.stem = nn.Sequential(
            nn.Conv2d(channels, stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem, stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        )
        ins = (stem, *widths[:-1])
        self.blocks = nn.Sequential(*(XceptionModule(i, o) for i, o in zip(ins, widths)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.blocks(self.stem(x))).flatten(1)
        return self.classifier(self.dropout(x))


@register_model(
    "mini-xception",
    input_size=48,
    channels=1,
    description="mini-Xception: depthwise-separable residual CNN, real-time on CPU",
)
def mini_xception(num_classes: int, input_size: int, channels: int, **kwargs) -> nn.Module:
    """mini-Xception (fully convolutional with global pooling: any input size works)."""
    return MiniXception(num_classes, channels, **kwargs)


@register_model(
    "mini-xception-wide",
    input_size=48,
    channels=1,
    description="mini-Xception at twice the width: more accuracy, still real-time on CPU",
)
def mini_xception_wide(num_classes: int, input_size: int, channels: int, **kwargs) -> nn.Module:
    """mini-Xception at twice the width (32/64/128/256 channels)."""
    kwargs.setdefault("widths", (32, 64, 128, 256))
    return MiniXception(num_classes, channels, **kwargs)


@register_model(
    "mini-xception-xl",
    input_size=48,
    channels=1,
    description="mini-Xception at three times the width: about 1.3x the CPU time of -wide",
)
def mini_xception_xl(num_classes: int, input_size: int, channels: int, **kwargs) -> nn.Module:
    """mini-Xception at three times the width (48/96/192/384 channels)."""
    kwargs.setdefault("widths", (48, 96, 192, 384))
    return MiniXception(num_classes, channels, **kwargs)
