"""What a training task is: its label space, training targets, loss, validation and the score that
picks the best checkpoint (ultralytics' task map, for emolens' trainer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch only where a task trains: TrainConfig (and the CLI) import this module without it
    import torch
    from torch import nn

    from emolens.data.loader import ArrayLoader
    from emolens.data.sources import SourceData
    from emolens.training.config import TrainConfig


@dataclass
class ValSet:
    """One source's validation split: its loader (labels, or N×2 labels and vote pluralities) and
    the classes it defines."""

    name: str
    loader: ArrayLoader
    mask: torch.Tensor


class Task:
    """A task of ``emolens train --task NAME``. Subclasses set :attr:`name`, :attr:`metric` and
    :attr:`initial_score` and implement every method; the trainer knows nothing else about them."""

    name: str = ""
    #: what the selection score measures, for messages ("accuracy", "MAE")
    metric: str = ""
    #: the score before the first epoch: any real score beats it (scores: higher is better)
    initial_score: float = -1.0

    def check_config(self, cfg: TrainConfig) -> None:
        """Raise :class:`~emolens.errors.ConfigError` for settings the task cannot train with."""

    def classes(self, per_source: list[list[str]], paths: list[str]) -> list[str]:
        """The run's label space from each source's classes (``paths`` name them in errors)."""
        raise NotImplementedError

    def targets(self, source: SourceData, num_classes: int, cfg: TrainConfig) -> np.ndarray:
        """One source's training targets (N × classes; NaN marks a class the source lacks)."""
        raise NotImplementedError

    def finish_targets(self, targets: np.ndarray, cfg: TrainConfig) -> np.ndarray:
        """Every source's targets, teachers mixed in, as the loss sees them."""
        return targets

    def criterion(self, cfg: TrainConfig, classes: list[str], targets: np.ndarray, device: torch.device) -> nn.Module:
        raise NotImplementedError

    def validate(self, model: nn.Module, val_sets: list[ValSet], device: torch.device, amp_dtype: torch.dtype | None,
                 criterion: nn.Module, cfg: TrainConfig) -> tuple[dict[str, float], float]:
        """The validation metrics (``loss`` among them) and the selection score (higher is better)."""
        raise NotImplementedError

    def score_text(self, score: float) -> str:
        """A selection score for messages."""
        raise NotImplementedError
