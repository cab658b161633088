"""Cross-entropy against soft targets in which NaN marks a class the sample's dataset does not
define: those logits are left out of the softmax, so each sample's loss covers only its classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def masked_logits(logits: Tensor, targets: Tensor) -> Tensor:
    """``logits`` with the classes a target leaves undefined (NaN) pushed to -inf."""
    return logits.masked_fill(torch.isnan(targets), float("-inf"))


def target_classes(targets: Tensor) -> Tensor:
    """The most probable class of each target (integer targets pass through)."""
    if not targets.is_floating_point():
        return targets
    return torch.nan_to_num(targets, nan=-1.0).argmax(dim=1)


class SoftTargetCrossEntropy(nn.Module):
    """Mean of −Σ t·log softmax(z) over each sample's defined classes, optionally weighted per
    sample by ``class_weight`` of its target's top class (normalised like ``CrossEntropyLoss``).
    Integer targets are treated as one-hot over every class."""

    def __init__(self, class_weight: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("class_weight", class_weight, persistent=False)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        if not targets.is_floating_point():
            return F.cross_entropy(logits, targets, weight=self.class_weight)
        undefined = torch.isnan(targets)
        logp = F.log_softmax(logits.masked_fill(undefined, float("-inf")), dim=1)
        per_sample = -(targets.masked_fill(undefined, 0.0) * logp.masked_fill(undefined, 0.0)).sum(dim=1)
        if self.class_weight is None:
            return per_sample.mean()
        w = self.class_weight[target_classes(targets)]
        return (w * per_sample).sum() / w.sum()


class AgeLoss(nn.Module):
    """Label-distribution loss for age over one-year bins: soft-target cross-entropy against the
    Gaussian targets plus ``l1_weight`` × |expected age − true age| (years), where the expected age
    is the softmax expectation over ``centers`` and the true age is the target's top bin."""

    def __init__(self, centers: Tensor, l1_weight: float = 0.1) -> None:
        super().__init__()
        self.cross_entropy = SoftTargetCrossEntropy()
        self.l1_weight = l1_weight
        self.register_buffer("centers", centers, persistent=False)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        expected = F.softmax(logits, dim=1) @ self.centers
        true = self.centers[target_classes(targets)]
        return self.cross_entropy(logits, targets) + self.l1_weight * (expected - true).abs().mean()
