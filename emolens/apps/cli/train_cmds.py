"""CLI commands of training: ``models``, ``train``, ``teach`` and ``recalibrate``.

torch is imported inside the command bodies, so ``import emolens.apps.cli`` works without it.
Errors are reported by the CLI's one error boundary (``emolens.apps.cli``): a command raises.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from types import UnionType
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import typer

from emolens.age import describe_classes
from emolens.errors import ConfigError
from emolens.training.config import TrainConfig

DEFAULTS = TrainConfig(data="", out="")  # the recipe defaults, shown in --help


def models_cmd(
    classes: int = typer.Option(7, "--classes", help="Number of classes the parameter counts assume."),
) -> None:
    """List the bundled trained models (for --model) and the architectures to train (for --arch)."""
    from rich.console import Console
    from rich.table import Table

    from emolens.inference.classifier import (
        ATTRIBUTE_MODELS,
        DEFAULT_MODEL,
        WEIGHTS,
        OnnxPredictor,
        list_bundled_models,
        resolve_model,
    )

    console = Console()
    bundled = Table(title="trained models, bundled (--model NAME in analyze, live, serve, evaluate)")
    for col in ("name", "architecture", "input", "classes"):
        bundled.add_column(col, no_wrap=col == "name")  # "accurate-int8 (default)" on one line
    attributes = [n for n in ATTRIBUTE_MODELS if (WEIGHTS / f"{n}.onnx").is_file()]
    for name in [*list_bundled_models(), *attributes]:
        clf = OnnxPredictor(resolve_model(name))
        spec = clf.crop
        note = " (default)" if name == DEFAULT_MODEL else f" (--{name} in analyze, live, serve)" if name in attributes else ""
        bundled.add_row(name + note, clf.model_name, f"{spec.size}×{spec.size} {'gray' if spec.channels == 1 else 'RGB'}",
                        describe_classes(clf.classes))
    console.print(bundled)
    try:
        from emolens.models import list_models
    except ModuleNotFoundError as e:
        console.print(f"architectures (train --arch) need the [train] extra ({e.name} is not installed): "
                      f"pip install 'emolens[train]'", markup=False)
        return
    table = Table(title="architectures (train --arch NAME)")
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
    console.print(table)


# Where the options that are not config fields go among the config's options in --help, and the
# order of the config's options there (a config field with CLI metadata that is not named here
# comes after these). Flags, types, help and defaults come from TrainConfig's field metadata.
_TRAIN_HELP_ORDER = (
    "data", "task", "age_sigma", "age_l1", "arch", "model", "out", "resume", "force", "epochs", "batch_size", "lr",
    "optimizer", "weight_decay", "label_smoothing", "ema", "precise_bn", "class_weights", "scheduler", "early_stopping", "clip_grad",
    "amp", "seed", "input_size", "channels", "margin", "contrast", "select", "teacher", "distill_weight",
    "teacher_members", "teacher_model", "teacher_model_weight", "keep", "drop", "merge", "format", "augment", "init", "pretrained", "head_epochs", "backbone_lr", "freeze_bn", "workers", "device", "cache_dir",
)
# The train options that are not config fields.
_TRAIN_EXTRA_OPTIONS: dict[str, tuple[Any, Any]] = {
    "arch": (Optional[str], typer.Option(None, "--arch", "-a", help=f"Architecture (default {DEFAULTS.arch}; see `emolens models`).")),
    "model": (Optional[str], typer.Option(None, "--model", hidden=True, help="Deprecated spelling of --arch.")),
    "resume": (Optional[Path], typer.Option(None, "--resume", help="Continue the run in this folder from its last epoch.")),
    "force": (bool, typer.Option(
        False, "--force", help="Start a new run in an --out folder that already holds one (its checkpoints are overwritten).")),
}


def _config_options() -> dict[str, tuple[Any, Any]]:
    """A typer option (annotation, ``typer.Option``) per TrainConfig field with ``cli`` metadata.

    Every option defaults to None so that only the options given override a resumed run's config."""
    hints = get_type_hints(TrainConfig)
    options = {}
    for f in fields(TrainConfig):
        meta = f.metadata.get("cli")
        if meta is None:
            continue
        hint = hints[f.name]
        args = [a for a in get_args(hint) if a is not type(None)] if get_origin(hint) in (Union, UnionType) else [hint]
        (base,) = args
        is_list = get_origin(base) is list
        item = get_args(base)[0] if is_list else base
        if meta["path"]:
            item = Path
        annotation = Optional[list[item]] if is_list else Optional[item]
        default = f.default if f.default is not MISSING else None
        names = [meta["flag"] or "--" + f.name.replace("_", "-"), *([meta["short"]] if meta["short"] else [])]
        options[f.name] = (annotation, typer.Option(None, *names, help=meta["help"].format(default=default)))
    return options


def _with_train_options(func: Callable[..., None]) -> Callable[..., None]:
    """Give ``func(**options)`` the train command's parameters, for typer (it reads ``inspect.signature``)."""
    options = {**_config_options(), **_TRAIN_EXTRA_OPTIONS}
    rank = {name: i for i, name in enumerate(_TRAIN_HELP_ORDER)}
    names = sorted(options, key=lambda n: rank.get(n, len(rank)))
    func.__signature__ = inspect.Signature(
        [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=options[n][1], annotation=options[n][0])
         for n in names],
        return_annotation=None,
    )
    func.__annotations__ = {**{n: options[n][0] for n in names}, "return": None}
    return func


@_with_train_options
def train_cmd(**options: Any) -> None:
    """Train a model with the specified recipe on one or more datasets (DDP when started by torchrun)."""
    given = {k: v for k, v in options.items() if v is not None and k not in _TRAIN_EXTRA_OPTIONS}
    arch, model, resume, force = (options.get(k) for k in ("arch", "model", "resume", "force"))
    data, out = options.get("data"), options.get("out")
    from emolens.training.run import RunDir
    from emolens.training.train import fit

    if model is not None:
        typer.secho("note: train --model is deprecated; it is --arch now (--model names trained models elsewhere)",
                    fg=typer.colors.YELLOW, err=True)
        arch = arch or model
    if arch is not None:
        given["arch"] = arch
    given = {k: [str(x) for x in v] if isinstance(v, list) else str(v) if isinstance(v, Path) else v
             for k, v in given.items()}
    try:
        if resume is not None:
            cfg = RunDir(resume).resumed_config(given)
        else:
            if not data or out is None:
                raise ConfigError("--data and --out are required (or --resume RUN_DIR)")
            if not force and RunDir(out).holds_run():
                raise FileExistsError(f"--out {out} already holds a run: continue it with --resume {out}, "
                                      f"or start over with --force (its checkpoints are overwritten)")
            cfg = TrainConfig(**given)
        fit(cfg, resume=resume is not None)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"continue with: emolens train --resume {resume or out}") from None


def teach_cmd(
    models: list[str] = typer.Argument(..., help="Teacher run folders, .pt checkpoints or .onnx models."),
    data: list[str] = typer.Option(..., "--data", help="Datasets to label (same syntax as train --data); repeatable."),
    out: Path = typer.Option(..., "--out", help="Teacher-outputs .npz to write (a .json report beside it)."),
    tta: str = typer.Option("tencrop", "--tta", help="none | flip | tencrop views averaged per image."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
    batch_size: int = typer.Option(512, "--batch-size", help="Faces per forward pass."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoded-image cache."),
) -> None:
    """Save teachers' class probabilities for every train/val image, for `train --teacher`."""
    from emolens.data.sources import SourceSpec
    from emolens.training.teach import save_teacher_outputs

    save_teacher_outputs(
        models, [SourceSpec.parse(d) for d in data], out, tta=tta, device=device, batch_size=batch_size,
        cache_dir=cache_dir, log=typer.echo,
    )
    typer.echo(f"wrote {out} and {out.with_suffix('.json')}")


def recalibrate_cmd(
    checkpoint: Path = typer.Argument(..., help="Run folder (its best.pt) or .pt checkpoint."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint (.pt) to write."),
    data: Optional[list[str]] = typer.Option(None, "--data", "-d", help="Training data (same syntax as train "
                                             "--data); repeatable (default: the run's own sources)."),
    images: int = typer.Option(4096, "--images", help="Training images the statistics are computed on."),
    seed: int = typer.Option(0, "--seed", help="Seed of the image subset."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoded-image cache."),
) -> None:
    """Recompute a checkpoint's BatchNorm statistics on clean training images (precise BN, as train --precise-bn)."""
    from emolens.training.recalibrate import recalibrate_checkpoint

    if out.suffix != ".pt":
        raise ConfigError(f"--out {out}: expected a .pt file")
    recalibrate_checkpoint(checkpoint, out, data=data, images=images, seed=seed, cache_dir=cache_dir, log=typer.echo)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``emolens`` app."""
    app.command("models")(models_cmd)
    app.command("train")(train_cmd)
    app.command("teach")(teach_cmd)
    app.command("recalibrate")(recalibrate_cmd)
