"""Test-time augmentation inside the network, so every runtime that loads the exported graph
(Python, the browser) serves the same averaged prediction."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from emolens.errors import ConfigError

GRAPH_TTA = ("none", "flip")


class FlipAverage(nn.Module):
    """``model``'s logits averaged over each face and its mirror image (one batch of 2N)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        logits = self.model(torch.cat((x, x.flip(-1))))
        return (logits[: x.shape[0]] + logits[x.shape[0] :]) / 2


def with_tta(model: nn.Module, tta: str) -> nn.Module:
    """``model`` wrapped for ``tta`` (``none``: the model itself; ``flip``: :class:`FlipAverage`)."""
    if tta not in GRAPH_TTA:
        raise ConfigError(f"tta must be one of {', '.join(GRAPH_TTA)}, got {tta!r}")
    return FlipAverage(model) if tta == "flip" else model
