"""Small building blocks shared by several families."""

from __future__ import annotations

from torch import nn

#: Inputs this size or smaller (px) get a small-input stem (full resolution kept in the first layers).
SMALL_INPUT = 64


class ConvBNAct(nn.Sequential):
    """Conv → BatchNorm → activation, numbered 0/1/2 like torchvision's Conv2dNormActivation
    so ImageNet state dicts map onto it by name."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without dropping more than 10%."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new
