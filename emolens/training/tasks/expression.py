"""Facial expression: classes over the union of the sources' emotions, soft targets (folder labels,
votes, teachers), a masked cross-entropy, and accuracy per source as the selection score."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from emolens.age import AGE_CLASSES
from emolens.data.sources import smooth_targets, union_classes
from emolens.errors import DatasetError
from emolens.training.tasks.base import Task, ValSet

if TYPE_CHECKING:  # torch is imported where the task trains (see base)
    import torch
    from torch import nn

    from emolens.data.sources import SourceData
    from emolens.training.config import TrainConfig


def balanced_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """n / (k · count_c), the scikit-learn "balanced" heuristic."""
    import torch

    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return torch.tensor(len(labels) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)


def validate(model: nn.Module, val_sets: list[ValSet], device: torch.device, amp_dtype: torch.dtype | None,
             select: str) -> dict[str, float]:
    """Per source: accuracy (and accuracy against the vote plurality where votes exist) with
    predictions restricted to the source's classes; ``acc`` is the selection metric and ``loss``
    the mean cross-entropy over every validation image."""
    import torch
    from torch import nn

    from emolens.training.engine import global_sums, predict_logits

    out: dict[str, float] = {}
    loss_sum = seen = 0.0
    for v in val_sets:
        logits, labels = predict_logits(model, v.loader, device, amp_dtype=amp_dtype)
        votes = labels[:, 1] if labels.ndim == 2 else None
        labels = labels[:, 0] if labels.ndim == 2 else labels
        z = torch.from_numpy(logits).masked_fill(~v.mask, float("-inf"))
        pred = z.argmax(1).numpy()
        sums = [float((pred == labels).sum()), float(len(labels)),
                float(nn.functional.cross_entropy(z, torch.from_numpy(labels), reduction="sum"))]
        if votes is not None:
            has = votes >= 0
            sums += [float((pred[has] == votes[has]).sum()), float(has.sum())]
        sums = global_sums(*sums, device=device)
        out[f"acc_{v.name}"] = sums[0] / max(sums[1], 1)
        if len(sums) > 3:
            out[f"votes_acc_{v.name}"] = sums[3] / max(sums[4], 1)
        loss_sum, seen = loss_sum + sums[2], seen + sums[1]
    out["loss"] = loss_sum / max(seen, 1)
    out["acc"] = float(np.mean([out[f"acc_{v.name}"] for v in val_sets])) if select == "mean" else out[f"acc_{select}"]
    return out


class ExpressionTask(Task):
    name = "expression"
    metric = "accuracy"
    initial_score = -1.0

    def classes(self, per_source: list[list[str]], paths: list[str]) -> list[str]:
        if any(c == list(AGE_CLASSES) for c in per_source):
            raise DatasetError(f"--data {', '.join(paths)}: age data (UTKFace layout) trains with --task age")
        return union_classes(per_source)

    def targets(self, source: SourceData, num_classes: int, cfg: TrainConfig) -> np.ndarray:
        return source.train_targets

    def finish_targets(self, targets: np.ndarray, cfg: TrainConfig) -> np.ndarray:
        return smooth_targets(targets, cfg.label_smoothing)

    def criterion(self, cfg: TrainConfig, classes: list[str], targets: np.ndarray, device: torch.device) -> nn.Module:
        """The masked soft-target cross-entropy, class-weighted by the targets' top classes with
        ``--class-weights balanced``."""
        import torch

        from emolens.training.losses import SoftTargetCrossEntropy, target_classes

        labelled = ~np.isnan(targets).all(axis=1)  # transfer-set faces have no label to count
        top = target_classes(torch.from_numpy(targets[labelled])).numpy()
        weight = balanced_weights(top, len(classes)).to(device) if cfg.class_weights == "balanced" else None
        return SoftTargetCrossEntropy(weight).to(device)

    def validate(self, model: nn.Module, val_sets: list[ValSet], device: torch.device, amp_dtype: torch.dtype | None,
                 criterion: nn.Module, cfg: TrainConfig) -> tuple[dict[str, float], float]:
        val = validate(model, val_sets, device, amp_dtype, cfg.select)
        return val, val["acc"]

    def score_text(self, score: float) -> str:
        return f"acc {score:.4f}"
