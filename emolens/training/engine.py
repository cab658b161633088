"""One training epoch and one prediction pass (torchvision-references style).

``train_one_epoch`` reduces its sums over processes when torch.distributed is initialised (so
every rank returns the global numbers); ``global_sums`` does the same for callers' own sums.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import update_bn

from emolens.progress import Tracked, interactive
from emolens.training.losses import masked_logits, target_classes

if TYPE_CHECKING:
    from torch.optim.swa_utils import AveragedModel

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> torch.autocast:
    """Mixed-precision context for ``device`` (a no-op when ``amp_dtype`` is None)."""
    return torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None)


def global_sums(*values: float, device: torch.device) -> list[float]:
    """``values`` summed over all processes of a distributed run (as they are in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _progress(iterable, desc: str, enabled: bool) -> Tracked:
    """A progress bar on rank 0 when stderr is a terminal (nothing in log files)."""
    return Tracked(iterable, desc, enabled=enabled and _is_main() and interactive())


def _is_main() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _optimizer_step(model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler | None, clip_grad: float) -> None:
    """Backward pass, optional gradient clipping and the optimiser step (through the fp16 loss scaler when on)."""
    scaled = scaler is not None and scaler.is_enabled()
    optimizer.zero_grad(set_to_none=True)
    if scaled:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    if clip_grad > 0:
        nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    if scaled:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    epoch: int = 0,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    clip_grad: float = 0.0,
    batch_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    progress: bool = True,
    ema: AveragedModel | None = None,
    freeze_bn: bool = False,
    teacher: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> dict[str, float]:
    """Train for one pass over ``loader``; returns loss, acc, images and images_per_s. ``ema``: a
    moving average of the weights, updated after every optimiser step; ``freeze_bn``: BatchNorm
    layers normalise with their running statistics and leave them unchanged; ``teacher``: turns
    each augmented batch and its targets into the student's view and distilled targets
    (:class:`emolens.training.distill.OnlineTeacher`)."""
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, BATCHNORMS):
                m.eval()
    # Running sums stay on the device: reading them every step would make the CPU wait for the
    # GPU and stop it queueing the next batches (only the terminal progress bar reads them).
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss × n, correct
    seen = 0
    start = time.perf_counter()
    bar = _progress(loader, f"epoch {epoch} train", progress)
    for x, y in bar:
        y = y.to(device, non_blocking=True)
        x = tuple(v.to(device, non_blocking=True) for v in x) if isinstance(x, tuple) else x.to(device, non_blocking=True)
        if teacher is not None:  # x may be (the teacher's view, the student's view)
            x, y = teacher(x, y)
        with autocast(device, amp_dtype):
            logits = model(x)
            loss = criterion(logits.float(), y)
        _optimizer_step(model, loss, optimizer, scaler, clip_grad)
        if batch_scheduler is not None:
            batch_scheduler.step()
        if ema is not None:
            ema.update_parameters(model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model)
        n = len(y)
        pred = (masked_logits(logits, y) if y.is_floating_point() else logits).detach().argmax(1)
        sums += torch.stack((loss.detach().double() * n, (pred == target_classes(y)).sum().double()))
        seen += n
        if bar.shown:
            loss_sum, correct = sums.tolist()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    loss_sum, correct = sums.tolist()
    elapsed = time.perf_counter() - start
    loss_sum, correct, seen = global_sums(loss_sum, correct, seen, device=device)
    seen = max(seen, 1)
    return {"loss": loss_sum / seen, "acc": correct / seen, "images": seen, "images_per_s": seen / max(elapsed, 1e-9)}


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    progress: bool = False,
    desc: str = "predict",
) -> tuple[np.ndarray, np.ndarray]:
    """float32 logits (N×classes) and int64 labels for every batch of this process's loader."""
    model.eval()
    outs, labels = [], []
    for x, y in _progress(loader, desc, progress):
        with autocast(device, amp_dtype):
            outs.append(model(x.to(device)).float().cpu())
        labels.append(y.cpu())
    if not outs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return torch.cat(outs).numpy(), torch.cat(labels).numpy()


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> None:
    """Precise BatchNorm (Wu & Johnson, 2021): every BatchNorm's running mean and variance
    recomputed as plain averages over ``loader`` (training images without augmentation), so that
    validation and the export use statistics of the current weights on clean faces instead of a
    momentum average over the last augmented batches. Averaged over processes in distributed runs."""
    update_bn(((x.to(device),) for x, _ in loader), model)
    if dist.is_available() and dist.is_initialized():
        for m in model.modules():
            if isinstance(m, BATCHNORMS) and m.running_mean is not None:
                for t in (m.running_mean, m.running_var):
                    dist.all_reduce(t)
                    t /= dist.get_world_size()
