"""VGG-style CNNs: ``vgg48`` (the FER2013 VGGNet variant) and ``seed-cnn`` (a 4-block baseline)."""

from __future__ import annotations

import torch
from torch import nn

from emolens.models.registry import register_model

STAGES = (64, 128, 256, 512)


def conv_stages(in_ch: int, widths: tuple[int, ...], dropout: float = 0.0) -> nn.Sequential:
    """Stages of [Conv3×3 → BN → ReLU]×2 → MaxPool 2×2 (→ Dropout when ``dropout`` > 0)."""
    layers: list[nn.Module] = []
    for width in widths:
        for _ in range(2):
            layers += [nn.Conv2d(in_ch, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            in_ch = width
        layers.append(nn.MaxPool2d(2))
        if dropout:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class VGG48(nn.Module):
    """Four conv stages (64/128/256/512, two convs each, BN), then two hidden FC layers with dropout.

    The feature map is pooled to 3×3 (the size a 48 px input reaches), so other sizes work too.
    """

    def __init__(self, num_classes: int, channels: int = 1, hidden: int = 1024, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = conv_stages(channels, STAGES)
        self.avgpool = nn.AdaptiveAvgPool2d(3)
        self.fc = nn.Sequential(
            nn.Linear(STAGES[-1] * 9, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.fc(self.avgpool(self.features(x)).flatten(1)))


class SeedCNN(nn.Module):
    """4 blocks of [Conv3×3 → BN → ReLU]×2 (64/128/256/512), MaxPool 2×2 + Dropout 0.25 after each;
    global average pooling; Linear(512, 256) → ReLU → Dropout 0.5 → Linear(256, classes)."""

    def __init__(self, num_classes: int, channels: int = 3) -> None:
        super().__init__()
        self.features = conv_stages(channels, STAGES, dropout=0.25)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(STAGES[-1], 256), nn.ReLU(inplace=True), nn.Dropout(0.5))
        self.classifier = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.pool(self.features(x)).flatten(1)))


@register_model("vgg48", input_size=48, channels=1, description="VGG-style CNN for 48×48 faces (FER2013 VGGNet variant)")
def vgg48(num_classes: int, input_size: int, channels: int, **kwargs) -> nn.Module:
    """The 48×48 VGG-style network."""
    return VGG48(num_classes, channels, **kwargs)


@register_model("seed-cnn", input_size=224, channels=3, description="4-block VGG-style baseline CNN with global pooling")
def seed_cnn(num_classes: int, input_size: int, channels: int) -> nn.Module:
    """The 4-block VGG-style baseline with global pooling."""
    return SeedCNN(num_classes, channels)
