"""``emolens train``: the training loop around :mod:`engine` — data, model, optimiser, schedule,
checkpoints, resume, logs and DDP."""

from __future__ import annotations

import csv
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emolens.age import AGE_CLASSES, bin_centers, describe_classes, gaussian_targets
from emolens.data.loader import ArrayLoader
from emolens.preprocess import CropSpec
from emolens.data.sources import (
    SourceData, SourceSpec, load_source, mix_targets, smooth_targets, source_classes, union_classes,
)
from emolens.evaluation.plots import plot_curves
from emolens.files import atomic_write
from emolens.models import create_model, get_model_info
from emolens.models.checkpoint import BEST, LAST, init_from, load_checkpoint, save_checkpoint
from emolens.training import distributed
from emolens.training.config import TrainConfig
from emolens.training.engine import global_sums, predict_logits, train_one_epoch
from emolens.training.losses import AgeLoss, SoftTargetCrossEntropy, target_classes

CONFIG = "config.json"
HISTORY = "history.csv"
CURVES = "curves.png"
TENSORBOARD = "tb"

Log = Callable[[str], None]


def resolve_device(name: str) -> torch.device:
    """``auto`` → this process's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def resolve_amp(mode: str, device: torch.device) -> tuple[str, str]:
    """Pick the autocast precision; returns (fp16|bf16|off, why).

    ``auto``: fp16 with a GradScaler on CUDA; on CPUs bf16 only where oneDNN runs it natively
    (AVX512-BF16/AMX — measured 1.4–2.2× faster training here), fp32 elsewhere, where bf16 is
    emulated and slower.
    """
    if mode != "auto":
        return mode, "as requested"
    if device.type == "cuda":
        return "fp16", "CUDA: fp16 autocast with GradScaler"
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bf16", "CPU with native bf16 support: bf16 autocast"
    return "off", "CPU without native bf16: bf16 autocast would be slower, training in fp32"


AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "off": None}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_augment(kind: str, input_size: int) -> nn.Module | None:
    """``default``: rotation ±15°, zoom 0.8–1.2, shift ±10 %, h-flip 0.5; ``strong`` adds a
    random crop (pad by 1/12 of the size, crop back) and random erasing."""
    from emolens.data.augment import BatchAugment

    if kind == "none":
        return None
    if kind == "strong":
        return BatchAugment(rotation=15.0, zoom=(0.8, 1.2), shift=0.1, hflip=0.5, random_crop=max(1, input_size // 12), erasing=0.25)
    return BatchAugment(rotation=15.0, zoom=(0.8, 1.2), shift=0.1, hflip=0.5)


def balanced_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """n / (k · count_c), the scikit-learn "balanced" heuristic."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return torch.tensor(len(labels) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """The LR schedule; ``onecycle`` steps per batch, the others once per epoch."""
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr
        )
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs, eta_min=cfg.min_lr)
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.epochs * max(steps_per_epoch, 1))


def write_history(history: list[dict[str, float]], run_dir: Path) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)

    atomic_write(run_dir / HISTORY, write)


def _setup(cfg: TrainConfig) -> tuple[TrainConfig, torch.device, distributed.DistInfo, str]:
    """Device, process group, CPU threads and precision; returns the resolved config."""
    device = resolve_device(cfg.device)
    info = distributed.setup(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    torch.set_num_threads(cfg.workers or max(1, cpus // info.local_world_size))
    amp, amp_why = resolve_amp(cfg.amp, device)
    model_info = get_model_info(cfg.model)
    cfg = replace(
        cfg,
        device=str(device),
        amp=amp,
        input_size=cfg.input_size or model_info.input_size,
        channels=cfg.channels or model_info.channels,
        world_size=info.world_size,
    )
    return cfg, device, info, amp_why


@dataclass
class ValSet:
    """One source's validation split: its loader (labels, or N×2 labels and vote pluralities) and
    the classes it defines."""

    name: str
    loader: Any
    mask: torch.Tensor


def _sources(cfg: TrainConfig) -> list[SourceSpec]:
    """The run's sources; the run-wide --format/--keep/--drop/--merge fill what a source leaves open."""
    specs = [SourceSpec.parse(text) for text in cfg.data]
    specs = [
        replace(
            s, format=s.format if s.format != "auto" else cfg.format, keep=s.keep or cfg.keep,
            drop=s.drop or cfg.drop, merge=s.merge or cfg.merge,
        )
        for s in specs
    ]
    names = [s.name or Path(s.path).stem for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"two --data sources share a name ({', '.join(names)}); give each a name=...")
    return specs


def _teacher_targets(cfg: TrainConfig, classes: list[str], sources: list[SourceData], log: Log) -> list[np.ndarray]:
    """Each source's training targets mixed with the saved teacher outputs (``cfg.teacher``; where
    several files hold an image, their probabilities are averaged)."""
    from emolens.training.teach import load_teacher_outputs

    files = [load_teacher_outputs(path, classes, members=cfg.teacher_members) for path in cfg.teacher or []]
    mixed = []
    for src in sources:
        per_file = np.stack([f.lookup(src.name, src.train_keys) for f in files])
        found = ~np.isnan(per_file).all(axis=2)  # files × samples
        probs = np.full(per_file.shape[1:], np.nan, np.float32)
        any_found = found.any(axis=0)
        probs[any_found] = np.nansum(per_file, axis=0)[any_found] / found.sum(axis=0)[any_found, None]
        log(f"teacher outputs: {int(any_found.sum())} of {len(probs)} {src.name} training images matched "
            f"(distill weight {cfg.distill_weight})")
        mixed.append(mix_targets(src.train_targets, probs, cfg.distill_weight))
    return mixed


def _loaders(cfg: TrainConfig, crop: CropSpec, device: torch.device, info: distributed.DistInfo, log: Log):
    """Class list, the train loader over every source, one validation set per source, and the
    training targets. Rank 0 builds the decode caches first; the others wait and read them."""
    specs = _sources(cfg)
    per_source = [source_classes(s, cfg.seed) for s in specs]
    is_age = [c == list(AGE_CLASSES) for c in per_source]
    if any(is_age) != (cfg.task == "age") or any(is_age) != all(is_age):
        raise ValueError(f"--data {', '.join(s.path for s in specs)}: "
                         + ("--task age trains on age data only (UTKFace-style folders)" if cfg.task == "age"
                            else "age data (UTKFace layout) trains with --task age"))
    classes = list(AGE_CLASSES) if cfg.task == "age" else union_classes(per_source)
    if not info.is_main:
        distributed.barrier()
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
    sources = [load_source(s, classes, crop, seed=cfg.seed, cache_dir=cache_dir) for s in specs]
    if info.is_main:
        distributed.barrier()
    if cfg.task == "age":  # Gaussian label distributions around each sample's age bin
        targets = gaussian_targets(np.concatenate([s.train_targets for s in sources]).argmax(1), len(classes), cfg.age_sigma)
    else:
        targets = _teacher_targets(cfg, classes, sources, log) if cfg.teacher else [s.train_targets for s in sources]
        targets = smooth_targets(np.concatenate(targets), cfg.label_smoothing)
    common = dict(device=device, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    train_loader = ArrayLoader(
        np.concatenate([s.train_images for s in sources]), targets, cfg.batch_size, shuffle=True, drop_last=True,
        augment=make_augment(cfg.augment, cfg.input_size),
        mix=([len(s.train_targets) for s in sources], [s.weight for s in sources]) if len(sources) > 1 else None,
        **common,
    )
    val_sets = [
        ValSet(
            s.name,
            ArrayLoader(
                s.val_images, s.val_labels if s.val_vote_labels is None else np.stack([s.val_labels, s.val_vote_labels], 1),
                cfg.batch_size * 2, shuffle=False, **common,
            ),
            torch.from_numpy(s.mask),
        )
        for s in sources
    ]
    for s in sources:
        log(f"data: {s.name} ({describe_classes(s.classes)}): train {len(s.train_targets)} (weight {s.weight:g}), "
            f"{s.val_name} {len(s.val_labels)} images at {crop.size}px×{crop.channels}"
            + "".join(f"; {note}" for note in s.notes))
    if cfg.select != "mean" and cfg.select not in [v.name for v in val_sets]:
        raise ValueError(f"--select {cfg.select!r}: expected mean or a source name ({', '.join(v.name for v in val_sets)})")
    return classes, train_loader, val_sets, targets


def validate(model: nn.Module, val_sets: list[ValSet], device: torch.device, amp_dtype, select: str) -> dict[str, float]:
    """Per source: accuracy (and accuracy against the vote plurality where votes exist) with
    predictions restricted to the source's classes; ``acc`` is the selection metric and ``loss``
    the mean cross-entropy over every validation image."""
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


def validate_age(model: nn.Module, val_sets: list[ValSet], device: torch.device, amp_dtype, criterion: nn.Module,
                 sigma: float) -> dict[str, float]:
    """Age validation over every source: ``mae`` of the expected age (years, ages clipped to the
    bins), ``acc`` = CS(5) (share within 5 years) and ``loss`` (the training loss on Gaussian targets)."""
    sums = [0.0, 0.0, 0.0, 0.0]  # abs error, within 5, loss, n
    for v in val_sets:
        logits, bins = predict_logits(model, v.loader, device, amp_dtype=amp_dtype)
        z = torch.from_numpy(logits).to(device)
        targets = torch.from_numpy(gaussian_targets(bins, z.shape[1], sigma)).to(device)
        err = np.abs((torch.softmax(z, 1) @ criterion.centers).cpu().numpy() - bins)
        batch = (float(err.sum()), float((err <= 5).sum()), float(criterion(z, targets)) * len(bins), float(len(bins)))
        sums = [a + b for a, b in zip(sums, batch)]
    abs_err, within, loss, n = global_sums(*sums, device=device)
    return {"acc": within / max(n, 1), "mae": abs_err / max(n, 1), "loss": loss / max(n, 1)}


def fit(cfg: TrainConfig, *, resume: bool = False, log: Log = print) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) the run in ``cfg.out``; returns a summary dict."""
    run_dir = Path(cfg.out)
    cfg, device, info, amp_why = _setup(cfg)
    amp = cfg.amp
    if not info.is_main:
        log = lambda _msg: None  # noqa: E731  (only rank 0 talks)
    crop = CropSpec(size=cfg.input_size, channels=cfg.channels, margin=cfg.margin, contrast=cfg.contrast)
    classes, train_loader, val_sets, targets = _loaders(cfg, crop, device, info, log)

    seed_everything(cfg.seed + info.rank)
    model = create_model(cfg.model, len(classes), cfg.input_size, cfg.channels)
    if cfg.init and not resume:
        report = init_from(model, cfg.init)
        log(f"init from {cfg.init}: {len(report['loaded'])} tensors loaded, {len(report['adapted'])} adapted "
            f"(RGB↔gray), {len(report['skipped'])} skipped: {', '.join(report['skipped']) or '-'}, "
            f"{len(report['missing'])} not in the file")
    from emolens.training.precision import memory_format  # no channels_last for fp32 on CPU: oneDNN crashes
    model.to(device, memory_format=memory_format(device, amp))
    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    top = target_classes(torch.from_numpy(targets)).numpy()
    weight = balanced_weights(top, len(classes)).to(device) if cfg.class_weights == "balanced" else None
    if cfg.task == "age":
        criterion: nn.Module = AgeLoss(torch.from_numpy(bin_centers(classes)), cfg.age_l1).to(device)
    else:
        criterion = SoftTargetCrossEntropy(weight).to(device)
    optimizer = make_optimizer(cfg, model.parameters())
    scheduler = make_scheduler(cfg, optimizer, len(train_loader))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    amp_dtype = AMP_DTYPES[amp]

    start_epoch, best_acc, best_epoch, history = 0, -math.inf if cfg.task == "age" else -1.0, -1, []
    if resume and not (run_dir / LAST).is_file():
        log(f"{run_dir}: no epoch finished before the stop; starting from epoch 0")
        resume = False
    if resume:
        ckpt = load_checkpoint(run_dir / LAST, map_location=device)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        if cfg.scheduler == "cosine" and scheduler.T_max != cfg.epochs:
            # (the recursive cosine update continues smoothly from the current lr to min_lr at the new end)
            log(f"cosine schedule: {scheduler.T_max} → {cfg.epochs} epochs from the current lr")
            scheduler.T_max = cfg.epochs
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, best_acc, best_epoch = ckpt["epoch"] + 1, ckpt["best_val_acc"], ckpt["best_epoch"]
        history = [row for row in ckpt["history"] if row["epoch"] < start_epoch]
        if info.is_main:
            set_rng_state(ckpt["rng"])
        else:
            seed_everything(cfg.seed + info.rank + 1000 * start_epoch)
        log(f"resuming {run_dir} at epoch {start_epoch} (best val {_score_text(cfg.task, best_acc)} at epoch {best_epoch})")

    params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg.model} ({params / 1e6:.2f} M params) on {device}"
        f"{f' × {info.world_size} processes' if info.enabled else ''}, "
        f"{torch.get_num_threads()} CPU threads, precision {amp} ({amp_why})")

    writer = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / CONFIG)
        writer = SummaryWriter(str(run_dir / TENSORBOARD), purge_step=start_epoch)

    meta = {
        "task": cfg.task,
        "model_name": cfg.model,
        "model_kwargs": {},
        "classes": classes,
        "crop": crop.to_dict(),
        "config": cfg.to_dict(),
    }
    stop_reason = "epochs done"
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        if best_epoch >= 0 and cfg.early_stopping and epoch - best_epoch > cfg.early_stopping:
            stop_reason = f"early stopping: no better val {'MAE' if cfg.task == 'age' else 'accuracy'} for {cfg.early_stopping} epochs"
            break
        t0 = time.perf_counter()
        train_loader.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        train = train_one_epoch(
            train_model, train_loader, criterion, optimizer, device, epoch=epoch, amp_dtype=amp_dtype,
            scaler=scaler, clip_grad=cfg.clip_grad,
            batch_scheduler=scheduler if cfg.scheduler == "onecycle" else None, progress=True,
        )
        if cfg.task == "age":
            val = validate_age(model, val_sets, device, amp_dtype, criterion, cfg.age_sigma)
        else:
            val = validate(model, val_sets, device, amp_dtype, cfg.select)
        score = -val["mae"] if cfg.task == "age" else val["acc"]  # higher is better; saved as best_val_acc
        if cfg.scheduler == "plateau":
            scheduler.step(score)
        elif cfg.scheduler == "cosine":
            scheduler.step()
        if not all(math.isfinite(v) for v in (train["loss"], val["loss"])):
            raise FloatingPointError(f"epoch {epoch}: loss is not finite (train {train['loss']}, val {val['loss']})")
        improved = score > best_acc
        if improved:
            best_acc, best_epoch = score, epoch
        row = {
            "epoch": epoch, "lr": lr,
            "train_loss": round(train["loss"], 5), "train_acc": round(train["acc"], 5),
            "val_loss": round(val["loss"], 5), "val_acc": round(val["acc"], 5),
            **{f"val_{k}": round(v, 5) for k, v in val.items() if k not in ("acc", "loss")},
            "epoch_s": round(time.perf_counter() - t0, 2), "train_images_per_s": round(train["images_per_s"], 1),
        }
        history.append(row)
        if info.is_main:
            state = {
                **meta, "model": model.state_dict(), "epoch": epoch, "best_val_acc": best_acc, "best_epoch": best_epoch,
                "val_acc": val["acc"], "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": rng_state(), "history": history,
            }
            # Logs and best.pt before last.pt: a kill in between re-runs this epoch on resume, which
            # purges and rewrites its scalars and, the run being deterministic, best.pt too.
            for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
                writer.add_scalar(key.replace("_", "/", 1) if key != "lr" else "lr", row[key], epoch)
            writer.flush()
            if improved:
                save_checkpoint(state, run_dir / BEST)
            save_checkpoint(state, run_dir / LAST)
            write_history(history, run_dir)
            plot_curves(history, run_dir / CURVES)
        per_source = " ".join(f"{k} {v:.4f}" for k, v in val.items() if k not in ("acc", "loss"))
        log(f"epoch {epoch}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}{' *' if improved else ''} ({per_source}) | "
            f"lr {lr:.2e} | {row['epoch_s']:.1f}s, {row['train_images_per_s']:.0f} img/s")
    if writer is not None:
        writer.close()
    distributed.barrier()
    distributed.teardown()
    ran = [r for r in history if r["epoch"] >= start_epoch]
    summary = {
        "run_dir": str(run_dir), "best_val_acc": best_acc, "best_epoch": best_epoch, "last_epoch": epoch,
        "stop_reason": stop_reason,
        "mean_epoch_s": float(np.mean([r["epoch_s"] for r in ran])) if ran else 0.0,
        "mean_train_images_per_s": float(np.mean([r["train_images_per_s"] for r in ran])) if ran else 0.0,
    }
    log(f"done ({stop_reason}): best val {_score_text(cfg.task, best_acc)} at epoch {best_epoch}; checkpoints in {run_dir}")
    return summary


def _score_text(task: str, score: float) -> str:
    return f"MAE {-score:.3f} years" if task == "age" else f"acc {score:.4f}"
