"""Apparent age: one-year bins (:data:`emolens.age.AGE_CLASSES`), Gaussian label distributions, the
age loss (cross-entropy + L1 on the expected age), and minus the validation MAE as the selection score."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from emolens.age import AGE_CLASSES, bin_centers, gaussian_targets, predicted_age
from emolens.errors import ConfigError, DatasetError
from emolens.training.tasks.base import Task, ValSet

if TYPE_CHECKING:  # torch is imported where the task trains (see base)
    import torch
    from torch import nn

    from emolens.data.sources import SourceData
    from emolens.training.config import TrainConfig


def validate_age(model: nn.Module, val_sets: list[ValSet], device: torch.device, amp_dtype: torch.dtype | None,
                 criterion: nn.Module, sigma: float) -> dict[str, float]:
    """Age validation over every source: ``mae`` of the predicted age (the median, years; ages clipped to the
    bins), ``acc`` = CS(5) (share within 5 years) and ``loss`` (the training loss on Gaussian targets)."""
    import torch

    from emolens.training.engine import global_sums, predict_logits

    sums = [0.0, 0.0, 0.0, 0.0]  # abs error, within 5, loss, n
    for v in val_sets:
        logits, bins = predict_logits(model, v.loader, device, amp_dtype=amp_dtype)
        z = torch.from_numpy(logits).to(device)
        targets = torch.from_numpy(gaussian_targets(bins, z.shape[1], sigma)).to(device)
        err = np.abs(predicted_age(torch.softmax(z, 1).cpu().numpy(), AGE_CLASSES) - bins)
        batch = (float(err.sum()), float((err <= 5).sum()), float(criterion(z, targets)) * len(bins), float(len(bins)))
        sums = [a + b for a, b in zip(sums, batch)]
    abs_err, within, loss, n = global_sums(*sums, device=device)
    return {"acc": within / max(n, 1), "mae": abs_err / max(n, 1), "loss": loss / max(n, 1)}


class AgeTask(Task):
    name = "age"
    metric = "MAE"
    initial_score = -math.inf  # the score is minus the MAE

    def check_config(self, cfg: TrainConfig) -> None:
        # the L1 term reads each image's own age as the top bin of its target: nothing may move it
        if cfg.teacher and cfg.distill_weight > 0.5:
            raise ConfigError(f"--task age distils with --distill-weight ≤ 0.5 (got {cfg.distill_weight}): the L1 term "
                              "reads each image's own age as the top bin of its mixed target")
        if cfg.teacher_model:
            raise ConfigError("--teacher-model (online distillation) trains expression models only; for --task age, "
                              "save the teacher's outputs with `emolens teach` and pass them with --teacher")
        if cfg.mixup > 0:
            raise ConfigError("--task age trains without --mixup: the L1 term reads each image's own age as the top "
                              "bin of its target, which mixing two faces would move")

    def classes(self, per_source: list[list[str]], paths: list[str]) -> list[str]:
        if not all(c == list(AGE_CLASSES) for c in per_source):
            raise DatasetError(f"--data {', '.join(paths)}: --task age trains on age data only (UTKFace-style folders)")
        return list(AGE_CLASSES)

    def targets(self, source: SourceData, num_classes: int, cfg: TrainConfig) -> np.ndarray:
        """Gaussian label distributions around each image's age bin."""
        return gaussian_targets(source.train_targets.argmax(1), num_classes, cfg.age_sigma)

    def criterion(self, cfg: TrainConfig, classes: list[str], targets: np.ndarray, device: torch.device) -> nn.Module:
        import torch

        from emolens.training.losses import AgeLoss

        return AgeLoss(torch.from_numpy(bin_centers(classes)), cfg.age_l1).to(device)

    def validate(self, model: nn.Module, val_sets: list[ValSet], device: torch.device, amp_dtype: torch.dtype | None,
                 criterion: nn.Module, cfg: TrainConfig) -> tuple[dict[str, float], float]:
        val = validate_age(model, val_sets, device, amp_dtype, criterion, cfg.age_sigma)
        return val, -val["mae"]

    def score_text(self, score: float) -> str:
        return f"MAE {-score:.3f} years"
