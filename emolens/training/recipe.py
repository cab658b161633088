"""The training recipe's factories: augmentation, optimiser and learning-rate schedule, each built
from a :class:`TrainConfig` (precision is :mod:`emolens.training.precision`; the loss is the task's,
:mod:`emolens.training.tasks`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from emolens.training.config import TrainConfig


def make_augment(kind: str, input_size: int) -> nn.Module | None:
    """``default``: rotation ±15°, zoom 0.8–1.2, shift ±10 %, h-flip 0.5; ``strong`` adds a
    random crop (pad by 1/12 of the size, crop back) and random erasing."""
    from emolens.data.augment import BatchAugment

    if kind == "none":
        return None
    if kind == "strong":
        return BatchAugment(rotation=15.0, zoom=(0.8, 1.2), shift=0.1, hflip=0.5, random_crop=max(1, input_size // 12), erasing=0.25)
    return BatchAugment(rotation=15.0, zoom=(0.8, 1.2), shift=0.1, hflip=0.5)


def make_mixup(alpha: float, num_classes: int) -> nn.Module | None:
    """Batch mixup with Beta(α, α) weights (None when α is 0)."""
    from emolens.data.augment import Mixup

    return Mixup(alpha, num_classes) if alpha > 0 else None


def make_optimizer(cfg: TrainConfig, params: Iterable[nn.Parameter] | list[dict]) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (Nesterov) with the config's learning rate and weight decay (parameter
    groups may set their own learning rate)."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
    """The LR schedule; ``onecycle`` steps per batch, the others once per epoch."""
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        )
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.min_lr)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                               total_steps=cfg.epochs * max(steps_per_epoch, 1))


def step_scheduler(cfg: TrainConfig, scheduler: Any, score: float) -> None:
    """The end-of-epoch step: plateau on the validation score, cosine once; onecycle steps per batch."""
    if cfg.scheduler == "plateau":
        scheduler.step(score)
    elif cfg.scheduler == "cosine":
        scheduler.step()


def extend_schedule(cfg: TrainConfig, scheduler: Any, log: Callable[[str], None]) -> None:
    """On resume with other ``--epochs``, a cosine schedule ends at the new last epoch (the
    recursive cosine update continues smoothly from the current lr to min_lr there)."""
    if cfg.scheduler == "cosine" and scheduler.T_max != cfg.epochs:
        log(f"cosine schedule: {scheduler.T_max} → {cfg.epochs} epochs from the current lr")
        scheduler.T_max = cfg.epochs
