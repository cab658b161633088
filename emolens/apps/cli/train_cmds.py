"""CLI commands of training and evaluation: ``models``, ``train``, ``evaluate``, ``export``.

torch is imported inside the command bodies, so ``import emolens.apps.cli`` works without it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from emolens.training.config import TrainConfig

_D = TrainConfig(data="", out="")  # the recipe defaults, shown in --help


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def models_cmd(
    classes: int = typer.Option(7, "--classes", help="Number of classes the parameter counts assume."),
) -> None:
    """List the registered architectures with parameter counts and default input."""
    from rich.console import Console
    from rich.table import Table

    from emolens.models import list_models

    table = Table(title="emolens models")
    for col in ("name", "params", "input", "colour", "description"):
        table.add_column(col, justify="right" if col == "params" else "left")
    for info in list_models():
        table.add_row(
            info.name,
            f"{info.num_params(classes) / 1e6:.2f} M",
            f"{info.input_size}×{info.input_size}",
            "gray" if info.channels == 1 else "RGB",
            info.description,
        )
    Console().print(table)


def train_cmd(
    data: Optional[Path] = typer.Option(None, "--data", help="Dataset folder or file (any supported layout)."),
    model: Optional[str] = typer.Option(None, "--model", help=f"Registered model name (default {_D.model}; see `emolens models`)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run folder: checkpoints, config.json, history.csv, curves.png, tb/."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the run in this folder from its last epoch."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help=f"Epochs (default {_D.epochs})."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help=f"Batch size per process (default {_D.batch_size})."),
    lr: Optional[float] = typer.Option(None, "--lr", help=f"Learning rate (default {_D.lr})."),
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="adam | adamw | sgd (Nesterov, momentum 0.9); default adam."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help=f"Weight decay (default {_D.weight_decay})."),
    label_smoothing: Optional[float] = typer.Option(None, "--label-smoothing", help=f"Label smoothing (default {_D.label_smoothing})."),
    class_weights: Optional[str] = typer.Option(None, "--class-weights", help="none | balanced (default none)."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", help="plateau (×0.1 after 5 epochs without better val acc, min 1e-6) | cosine | onecycle; default plateau."
    ),
    early_stopping: Optional[int] = typer.Option(None, "--early-stopping", help=f"Stop after N epochs without better val acc; 0 = off (default {_D.early_stopping})."),
    clip_grad: Optional[float] = typer.Option(None, "--clip-grad", help=f"Max gradient norm; 0 = off (default {_D.clip_grad})."),
    amp: Optional[str] = typer.Option(None, "--amp", help="auto (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32) | off | fp16 | bf16."),
    seed: Optional[int] = typer.Option(None, "--seed", help=f"Random seed (default {_D.seed})."),
    input_size: Optional[int] = typer.Option(None, "--input-size", help="Input size in pixels (default: the model's)."),
    channels: Optional[int] = typer.Option(None, "--channels", help="1 (gray) or 3 (RGB) (default: the model's)."),
    margin: Optional[float] = typer.Option(None, "--margin", help=f"Face-box margin per side of the crop spec (default {_D.margin})."),
    keep: Optional[str] = typer.Option(None, "--keep", help="Only these classes, e.g. anger,happy,neutral."),
    drop: Optional[str] = typer.Option(None, "--drop", help="Every class but these, e.g. contempt."),
    merge: Optional[str] = typer.Option(None, "--merge", help="Merge classes, e.g. 'anger=anger+disgust'."),
    format: Optional[str] = typer.Option(None, "--format", help="Dataset layout (default auto)."),
    augment: Optional[str] = typer.Option(
        None, "--augment", help="default (rotation ±15°, zoom 0.8–1.2, shift ±10%, h-flip) | strong (+ random crop, erasing) | none."
    ),
    init: Optional[Path] = typer.Option(None, "--init", help="Start from local weights (state dict or checkpoint); mismatched heads are skipped."),
    workers: Optional[int] = typer.Option(None, "--workers", help="CPU threads per process; 0 = all cores shared by local processes."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N (default auto)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoded-image cache (default $EMOLENS_CACHE or ~/.cache/emolens)."),
) -> None:
    """Train a model with the specified recipe (DDP when started by torchrun)."""
    from emolens.training.train import CONFIG, fit

    given = {k: v for k, v in locals().items() if v is not None and k not in ("resume", "CONFIG", "fit")}
    given = {k: str(v) if isinstance(v, Path) else v for k, v in given.items()}
    try:
        if resume is not None:
            config_path = resume / CONFIG
            if not config_path.is_file():
                raise _fail(f"--resume {resume}: no {CONFIG} there (not a run folder)")
            cfg = TrainConfig.from_dict({**TrainConfig.load(config_path).to_dict(), **given, "out": str(resume)})
        else:
            if data is None or out is None:
                raise _fail("--data and --out are required (or --resume RUN_DIR)")
            cfg = TrainConfig(**given)
        fit(cfg, resume=resume is not None)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise _fail(str(e)) from e


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``emolens`` app."""
    app.command("models")(models_cmd)
    app.command("train")(train_cmd)
