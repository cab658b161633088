"""``emolens train``: the training loop around :mod:`engine` — data, model, the epochs and DDP.
The recipe's factories are :mod:`recipe` and :mod:`precision`; the run folder is :class:`RunDir`."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emolens.age import describe_classes
from emolens.data.loader import ArrayLoader
from emolens.data.sources import (
    SourceData,
    SourceSpec,
    load_source,
    mix_targets,
    parse_holdout,
    source_classes,
)
from emolens.errors import ConfigError
from emolens.evaluation.predictors import load_predictor
from emolens.models import create_model, get_model_info
from emolens.models.checkpoint import init_from
from emolens.models.pretrained import load_pretrained, pretrained_config
from emolens.models.registry import freeze_backbone, param_groups
from emolens.preprocess import CropSpec
from emolens.training import distributed
from emolens.training.config import TrainConfig
from emolens.training.distill import OnlineTeacher
from emolens.training.engine import recompute_batchnorm, train_one_epoch
from emolens.training.precision import AMP_DTYPES, memory_format, resolve_amp
from emolens.training.recipe import (
    extend_schedule,
    make_augment,
    make_mixup,
    make_optimizer,
    make_scheduler,
    step_scheduler,
)
from emolens.training.run import Progress, RunDir, TrainState, moving_average, seed_everything
from emolens.training.tasks import ValSet, get_task

Log = Callable[[str], None]


def resolve_device(name: str) -> torch.device:
    """``auto`` → this process's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{distributed.from_environment().local_rank}"  # this process's GPU under torchrun
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def _setup(cfg: TrainConfig) -> tuple[TrainConfig, torch.device, distributed.DistInfo, str]:
    """Device, process group, CPU threads and precision; returns the resolved config."""
    device = resolve_device(cfg.device)
    info = distributed.setup(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest convolution once
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    # A single process honours OMP_NUM_THREADS (e.g. a background run beside the tests); under
    # torchrun, which sets it to 1 by itself, each process takes its share of the cores.
    omp = os.environ.get("OMP_NUM_THREADS", "")
    own = int(omp) if omp.isdigit() and int(omp) > 0 and info.local_world_size == 1 else 0
    torch.set_num_threads(cfg.workers or own or max(1, cpus // info.local_world_size))
    amp, amp_why = resolve_amp(cfg.amp, device)
    model_info = get_model_info(cfg.arch)
    cfg = replace(
        cfg,
        device=str(device),
        amp=amp,
        input_size=cfg.input_size or model_info.input_size,
        channels=cfg.channels or model_info.channels,
        world_size=info.world_size,
    )
    return cfg, device, info, amp_why


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
        raise ConfigError(f"two --data sources share a name ({', '.join(names)}); give each a name=...")
    return specs


def _teacher_targets(cfg: TrainConfig, classes: list[str], sources: list[SourceData], targets: list[np.ndarray],
                     log: Log) -> list[np.ndarray]:
    """Each source's training ``targets`` mixed with the saved teacher outputs (``cfg.teacher``;
    where several files hold an image, their probabilities are averaged; a renamed source falls back
    to its dataset's own name)."""
    from emolens.training.teach import load_teacher_outputs, mean_of_members

    files = [load_teacher_outputs(path, classes, members=cfg.teacher_members) for path in cfg.teacher or []]
    mixed = []
    for src, own in zip(sources, targets, strict=True):
        if not src.labelled:  # a transfer set's targets come from the online teacher
            mixed.append(own)
            continue
        probs = mean_of_members(np.stack([f.lookup((src.name, src.dataset_name), src.train_keys) for f in files]))
        log(f"teacher outputs: {int((~np.isnan(probs[:, 0])).sum())} of {len(probs)} {src.name} training images matched "
            f"(distill weight {cfg.distill_weight})")
        mixed.append(mix_targets(own, probs, cfg.distill_weight))
    return mixed


def _online_teacher(cfg: TrainConfig, specs: list[SourceSpec], classes: list[str], crop: CropSpec,
                    log: Log) -> OnlineTeacher | None:
    """The ``--teacher-model`` that labels each augmented batch, if any (transfer sets need one)."""
    unlabeled = [s.path for s in specs if s.unlabeled]
    if not cfg.teacher_model:
        if unlabeled:
            raise ConfigError(f"--data {', '.join(unlabeled)}: an unlabeled source needs --teacher-model, "
                              "whose outputs are its faces' targets")
        return None
    if len(unlabeled) == len(specs):
        raise ConfigError("every --data source is unlabeled: at least one needs labels to validate on")
    teacher = OnlineTeacher(load_predictor(cfg.teacher_model), classes,
                            cfg.distill_weight if cfg.teacher_model_weight is None else cfg.teacher_model_weight, crop)
    log(f"online teacher {cfg.teacher_model}: {teacher.describe()}")
    return teacher


def _loaders(cfg: TrainConfig, crop: CropSpec, device: torch.device, info: distributed.DistInfo, log: Log):
    """Class list, the train loader over every source, one validation set per labelled source, the
    training targets and the online teacher (or None). Rank 0 builds the decode caches first; the
    others wait and read them."""
    specs = _sources(cfg)
    # Splits emolens makes itself (class-folders, utkface) are load_dataset's fixed ones, whatever
    # --seed: every run, teacher and `evaluate` must see the same validation images.
    task = get_task(cfg.task)
    classes = task.classes([c for s in specs if (c := source_classes(s))], [s.path for s in specs])
    teacher = _online_teacher(cfg, specs, classes, crop, log)
    view = teacher.train_view() if teacher else None
    view = view if view != crop else None  # a teacher at the student's spec labels the student's own batch
    if not info.is_main:
        distributed.barrier()
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
    holdout = parse_holdout(cfg.holdout)
    sources = [load_source(s, classes, crop, cache_dir=cache_dir, holdout=holdout, train_crop=view) for s in specs]
    if info.is_main:
        distributed.barrier()
    own = [task.targets(s, len(classes), cfg) for s in sources]
    targets = task.finish_targets(np.concatenate(_teacher_targets(cfg, classes, sources, own, log) if cfg.teacher else own), cfg)
    common = dict(device=device, seed=cfg.seed, rank=info.rank, world_size=info.world_size)
    images = np.concatenate([s.train_images for s in sources])
    # With a teacher's larger view, batches pair it with the student's own crop of each face.
    views = np.concatenate([s.train_view for s in sources]) if view else None
    train_loader = ArrayLoader(
        images if views is None else views, targets, cfg.batch_size, shuffle=True, drop_last=True,
        augment=make_augment(cfg.augment, (view or crop).size), mixup=make_mixup(cfg.mixup, len(classes)),
        paired=None if views is None else images,
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
        if s.labelled
    ]
    bn_loader = precise_bn_loader(images, cfg.precise_bn, cfg.batch_size * 2, **common) if cfg.precise_bn else None
    for s in sources:
        log(f"data: {s.name} ({describe_classes(s.classes) if s.labelled else 'unlabeled'}): train {len(s.train_targets)} "
            f"(weight {s.weight:g}){f', {s.val_name} {len(s.val_labels)}' if s.labelled else ''} images at "
            f"{crop.size}px×{crop.channels}" + (f" (and at {view.size}px×{view.channels} for the teacher)" if view else "")
            + "".join(f"; {note}" for note in s.notes))
    if cfg.select != "mean" and cfg.select not in [v.name for v in val_sets]:
        raise ConfigError(f"--select {cfg.select!r}: expected mean or a source name ({', '.join(v.name for v in val_sets)})")
    return classes, train_loader, val_sets, targets, bn_loader, teacher


def precise_bn_loader(images: np.ndarray, count: int, batch_size: int, **loader_args: Any) -> ArrayLoader:
    """What precise BatchNorm averages over: a fixed random subset of ``count`` training images
    (drawn with ``loader_args["seed"]``), never augmented, in order."""
    subset = np.sort(np.random.default_rng(loader_args.get("seed", 0)).permutation(len(images))[:count])
    return ArrayLoader(images[subset], np.zeros(len(subset), np.int64), batch_size, shuffle=False, **loader_args)


def _model(cfg: TrainConfig, num_classes: int, device: torch.device, info: distributed.DistInfo,
           resuming: bool, log: Log) -> tuple[nn.Module, nn.Module]:
    """The model on ``device``, started from the pretrained and ``--init`` weights unless
    ``resuming``, and the module that trains it (the model itself, or its DDP wrapper)."""
    init = None if resuming else cfg.init
    model = create_model(cfg.arch, num_classes, cfg.input_size, cfg.channels)
    if cfg.pretrained and not resuming:
        report = load_pretrained(model, cfg.pretrained)
        log(f"pretrained {cfg.pretrained}: {len(report['loaded'])} tensors loaded; "
            f"initialised here: {', '.join(k for k in report['untouched'] if not k.endswith('num_batches_tracked'))}")
    if init:
        report = init_from(model, init)
        log(f"init from {init}: {len(report['loaded'])} tensors loaded, {len(report['adapted'])} adapted "
            f"(RGB↔gray), {len(report['skipped'])} skipped: {', '.join(report['skipped']) or '-'}, "
            f"{len(report['missing'])} not in the file")
    model.to(device, memory_format=memory_format(device, cfg.amp))  # see precision: no channels_last for fp32 on CPU
    if not info.enabled:
        return model, model
    return model, nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=cfg.head_epochs > 0,  # a frozen backbone gets no gradients in the warm-up
    )


def _resume(run: RunDir, state: TrainState, cfg: TrainConfig, rank: int, device: torch.device, log: Log) -> Progress:
    """The run's progress restored from its last.pt into ``state``; from epoch 0 when none was written."""
    progress = run.restore(state, device, rank, cfg.seed)
    if progress is None:
        log(f"{run.path}: no epoch finished before the stop; starting from epoch 0")
        return Progress(best_score=get_task(cfg.task).initial_score)
    extend_schedule(cfg, state.scheduler, log)
    log(f"resuming {run.path} at epoch {progress.next_epoch} "
        f"(best val {get_task(cfg.task).score_text(progress.best_score)} at epoch {progress.best_epoch})")
    return progress


def _history_row(epoch: int, lr: float, train: dict[str, float], val: dict[str, float], seconds: float) -> dict[str, float]:
    """One epoch's row of history.csv (and of the checkpoints' history); FloatingPointError when a
    loss is not finite."""
    if not all(math.isfinite(v) for v in (train["loss"], val["loss"])):
        raise FloatingPointError(f"epoch {epoch}: loss is not finite (train {train['loss']}, val {val['loss']})")
    return {
        "epoch": epoch, "lr": lr,
        "train_loss": round(train["loss"], 5), "train_acc": round(train["acc"], 5),
        "val_loss": round(val["loss"], 5), "val_acc": round(val["acc"], 5),
        **{f"val_{k}": round(v, 5) for k, v in val.items() if k not in ("acc", "loss")},
        "epoch_s": round(seconds, 2), "train_images_per_s": round(train["images_per_s"], 1),
    }


def _epoch_line(row: dict[str, float], val: dict[str, float], improved: bool) -> str:
    per_source = " ".join(f"{k} {v:.4f}" for k, v in val.items() if k not in ("acc", "loss"))
    return (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} | "
            f"val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}{' *' if improved else ''} ({per_source}) | "
            f"lr {row['lr']:.2e} | {row['epoch_s']:.1f}s, {row['train_images_per_s']:.0f} img/s")


def fit(cfg: TrainConfig, *, resume: bool = False, log: Log = print) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) the run in ``cfg.out``; returns a summary dict."""
    run = RunDir(cfg.out)
    cfg, device, info, amp_why = _setup(cfg)
    if resume and amp_why == "as requested":  # config.json holds the precision the run resolved at its start
        amp_why = "as the run has trained, recorded in its config.json"
    if not info.is_main:
        log = lambda _msg: None  # noqa: E731  (only rank 0 talks)
    crop = CropSpec(size=cfg.input_size, channels=cfg.channels, margin=cfg.margin, contrast=cfg.contrast)
    classes, train_loader, val_sets, targets, bn_loader, teacher = _loaders(cfg, crop, device, info, log)
    seed_everything(cfg.seed + info.rank)
    restarting = resume and run.last_pt.is_file()  # a run stopped in its first epoch starts again from --init
    model, train_model = _model(cfg, len(classes), device, info, restarting, log)
    task = get_task(cfg.task)
    criterion = task.criterion(cfg, classes, targets, device)
    optimizer = make_optimizer(cfg, param_groups(model, cfg.lr, cfg.backbone_lr))
    state = TrainState(model, optimizer, make_scheduler(cfg, optimizer, len(train_loader)),
                       torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16"), moving_average(model, cfg.ema))
    progress = _resume(run, state, cfg, info.rank, device, log) if resume else Progress(best_score=task.initial_score)
    params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg.arch} ({params / 1e6:.2f} M params) on {device}"
        f"{f' × {info.world_size} processes' if info.enabled else ''}, "
        f"{torch.get_num_threads()} CPU threads, precision {cfg.amp} ({amp_why})"
        f"{f', weights averaged (EMA decay {cfg.ema})' if cfg.ema else ''}"
        f"{f', BatchNorm statistics recomputed on {bn_loader.n} training images before validation' if bn_loader else ''}")
    if info.is_main:
        run.open(cfg, progress.next_epoch)
    meta = {"task": cfg.task, "model_name": cfg.arch, "model_kwargs": {}, "classes": classes, "crop": crop.to_dict(),
            "config": cfg.to_dict(), **({"pretrained": pretrained_config(cfg.pretrained)} if cfg.pretrained else {})}
    start, stop_reason = progress.next_epoch, "epochs done"
    epoch = start - 1
    for epoch in range(start, cfg.epochs):
        if progress.stalled(epoch, cfg.early_stopping):
            stop_reason = f"early stopping: no better val {task.metric} for {cfg.early_stopping} epochs"
            break
        t0 = time.perf_counter()
        train_loader.set_epoch(epoch)
        freeze_backbone(model, epoch < cfg.head_epochs)
        lr = optimizer.param_groups[-1]["lr"]  # the head's (the last group)
        train = train_one_epoch(
            train_model, train_loader, criterion, optimizer, device, epoch=epoch, amp_dtype=AMP_DTYPES[cfg.amp],
            scaler=state.scaler, clip_grad=cfg.clip_grad,
            batch_scheduler=state.scheduler if cfg.scheduler == "onecycle" else None, progress=True, ema=state.ema,
            freeze_bn=cfg.freeze_bn, teacher=teacher,
        )
        if bn_loader is not None:
            recompute_batchnorm(state.evaluated, bn_loader, device)
        val, score = task.validate(state.evaluated, val_sets, device, AMP_DTYPES[cfg.amp], criterion, cfg)
        step_scheduler(cfg, state.scheduler, score)
        improved = progress.record(epoch, score, _history_row(epoch, lr, train, val, time.perf_counter() - t0))
        if info.is_main:
            run.save_epoch(meta, state, progress, val["acc"])
        log(_epoch_line(progress.history[-1], val, improved))
    run.close()
    distributed.barrier()
    distributed.teardown()
    log(f"done ({stop_reason}): best val {task.score_text(progress.best_score)} at epoch {progress.best_epoch}; "
        f"checkpoints in {run.path}")
    return _summary(run, progress, start, epoch, stop_reason)


def _summary(run: RunDir, progress: Progress, start: int, last_epoch: int, stop_reason: str) -> dict[str, Any]:
    ran = [r for r in progress.history if r["epoch"] >= start]
    return {
        "run_dir": str(run.path), "best_val_acc": progress.best_score, "best_epoch": progress.best_epoch,
        "last_epoch": last_epoch, "stop_reason": stop_reason,
        "mean_epoch_s": float(np.mean([r["epoch_s"] for r in ran])) if ran else 0.0,
        "mean_train_images_per_s": float(np.mean([r["train_images_per_s"] for r in ran])) if ran else 0.0,
    }

