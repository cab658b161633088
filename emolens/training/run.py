"""A training run as an object: the run folder's layout and everything written to or read from it.

```
RUN_DIR/
  config.json   the fully resolved TrainConfig (``--resume`` starts from it)
  last.pt       every epoch: weights, meta, optimiser/scheduler/scaler/RNG states, history
  best.pt       the same at the best validation score
  history.csv   one row per epoch
  curves.png    loss and accuracy curves
  tb/           TensorBoard scalars
```
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from emolens.errors import ConfigError
from emolens.evaluation.plots import plot_curves
from emolens.files import atomic_write
from emolens.models.checkpoint import BEST, LAST, load_checkpoint, save_checkpoint
from emolens.training.config import TrainConfig

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

CONFIG = "config.json"
HISTORY = "history.csv"
CURVES = "curves.png"
TENSORBOARD = "tb"
SCALARS = {"train_loss": "train/loss", "train_acc": "train/acc", "val_loss": "val/loss", "val_acc": "val/acc", "lr": "lr"}


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The global generators' states, as saved in a checkpoint."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved (CUDA streams only where CUDA is available)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def on_this_machine(saved: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """A saved run config with its device re-chosen when it was CUDA and this machine has none,
    and its precision re-chosen when the device kind changes (a CUDA run resumed on a CPU)."""
    device = str(given.get("device", saved["device"]))
    if "device" not in given and device.startswith("cuda") and not torch.cuda.is_available():
        device = "auto"
    kind = "cuda" if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else "cpu"
    if kind != str(saved["device"]).split(":")[0] and "amp" not in given:
        return {**saved, "device": device, "amp": "auto"}
    return {**saved, "device": device}


@dataclass
class TrainState:
    """What a checkpoint restores besides the run's progress: model, optimiser, scheduler, scaler,
    and the weights' moving average when the run keeps one (``--ema``)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    ema: AveragedModel | None = None

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are validated, saved as a checkpoint's ``model`` and exported."""
        return self.model if self.ema is None else self.ema.module

    def model_states(self) -> dict[str, Any]:
        """A checkpoint's weights: ``model`` (the evaluated ones); with an average, also the trained
        weights (``trained_model``) and the number of averaged steps."""
        if self.ema is None:
            return {"model": self.model.state_dict()}
        return {"model": self.ema.module.state_dict(), "trained_model": self.model.state_dict(),
                "ema_steps": int(self.ema.n_averaged)}

    def load(self, ckpt: dict[str, Any]) -> None:
        """Load the states of a checkpoint."""
        self.model.load_state_dict(ckpt.get("trained_model", ckpt["model"]))
        if self.ema is not None:
            self.ema.module.load_state_dict(ckpt["model"])
            self.ema.n_averaged.fill_(ckpt.get("ema_steps", 0))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])


def moving_average(model: nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of ``model``'s weights and buffers (BatchNorm statistics),
    updated after each optimiser step; None when ``decay`` is 0."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


@dataclass
class Progress:
    """Where a run stands: the next epoch, the best score (higher is better; saved as
    ``best_val_acc``) and its epoch, and one history row per finished epoch."""

    next_epoch: int = 0
    best_score: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, float]] = field(default_factory=list)

    def record(self, epoch: int, score: float, row: dict[str, float]) -> bool:
        """Add a finished epoch; True when its score is a new best."""
        improved = score > self.best_score
        if improved:
            self.best_score, self.best_epoch = score, epoch
        self.history.append(row)
        self.next_epoch = epoch + 1
        return improved

    def stalled(self, epoch: int, patience: int) -> bool:
        """Early stopping: more than ``patience`` epochs (0 = never) since the best one."""
        return self.best_epoch >= 0 and bool(patience) and epoch - self.best_epoch > patience


def write_history(history: list[dict[str, float]], path: Path) -> None:
    """history.csv: one row per epoch, the columns of the first row."""
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)

    atomic_write(path, write)


class RunDir:
    """One training run's folder: its file names, config, checkpoints, resume state, history,
    curves and TensorBoard writer. Only the main process writes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.config_json = self.path / CONFIG
        self.last_pt = self.path / LAST
        self.best_pt = self.path / BEST
        self.history_csv = self.path / HISTORY
        self.curves_png = self.path / CURVES
        self.tensorboard = self.path / TENSORBOARD
        self._writer: SummaryWriter | None = None

    def holds_run(self) -> bool:
        """True when a run was started here (a config or any checkpoint)."""
        return self.config_json.is_file() or any(self.path.glob("*.pt"))

    def resumed_config(self, given: dict[str, Any]) -> TrainConfig:
        """The saved config, fitted to this machine, with the ``given`` settings on top."""
        if not self.config_json.is_file():
            raise ConfigError(f"--resume {self.path}: no {CONFIG} there (not a run folder)")
        saved = on_this_machine(TrainConfig.load(self.config_json).to_dict(), given)
        return TrainConfig.from_dict({**saved, **given, "out": str(self.path)})

    def restore(self, state: TrainState, device: torch.device, rank: int, seed: int) -> Progress | None:
        """Load ``last.pt`` into ``state``; None when no epoch finished. Rank 0 continues its saved
        RNG streams; the other ranks reseed from the seed, their rank and the epoch."""
        if not self.last_pt.is_file():
            return None
        ckpt = load_checkpoint(self.last_pt, map_location=device)
        state.load(ckpt)
        start = ckpt["epoch"] + 1
        if rank == 0:
            set_rng_state(ckpt["rng"])
        else:
            seed_everything(seed + rank + 1000 * start)
        return Progress(start, ckpt["best_val_acc"], ckpt["best_epoch"], [r for r in ckpt["history"] if r["epoch"] < start])

    def open(self, cfg: TrainConfig, first_epoch: int) -> None:
        """Create the folder, save the resolved config and open TensorBoard, dropping the scalars
        of epochs from ``first_epoch`` on (a resumed run writes them again)."""
        from torch.utils.tensorboard import SummaryWriter

        self.path.mkdir(parents=True, exist_ok=True)
        cfg.save(self.config_json)
        self._writer = SummaryWriter(str(self.tensorboard), purge_step=first_epoch)

    def save_epoch(self, meta: dict[str, Any], state: TrainState, progress: Progress, val_acc: float) -> None:
        """Write the epoch just recorded in ``progress`` (after :meth:`open`): scalars, best.pt when it
        is the best, last.pt, history.csv, curves.png. Scalars and best.pt come before last.pt: a
        kill in between re-runs this epoch on resume, which purges and rewrites its scalars and,
        the run being deterministic, best.pt too."""
        row, epoch = progress.history[-1], progress.next_epoch - 1
        ckpt = {
            **meta, **state.model_states(), "epoch": epoch, "best_val_acc": progress.best_score,
            "best_epoch": progress.best_epoch, "val_acc": val_acc, "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(), "scaler": state.scaler.state_dict(), "rng": rng_state(),
            "history": progress.history,
        }
        for key, tag in SCALARS.items():
            self._writer.add_scalar(tag, row[key], epoch)
        self._writer.flush()
        if progress.best_epoch == epoch:
            save_checkpoint(ckpt, self.best_pt)
        save_checkpoint(ckpt, self.last_pt)
        write_history(progress.history, self.history_csv)
        plot_curves(progress.history, self.curves_png)

    def close(self) -> None:
        """Close the TensorBoard writer, if this process opened one."""
        if self._writer is not None:
            self._writer.close()
