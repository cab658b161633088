"""CLI commands of training and evaluation: ``models``, ``train``, ``evaluate``, ``export``.

torch is imported inside the command bodies, so ``import emolens.apps.cli`` works without it.
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
from emolens.training.config import TrainConfig

_D = TrainConfig(data="", out="")  # the recipe defaults, shown in --help


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=2)


def models_cmd(
    classes: int = typer.Option(7, "--classes", help="Number of classes the parameter counts assume."),
) -> None:
    """List the bundled trained models (for --model) and the architectures to train (for --arch)."""
    from rich.console import Console
    from rich.table import Table

    from emolens.inference.classifier import ATTRIBUTE_MODELS, DEFAULT_MODEL, WEIGHTS, EmotionClassifier, list_bundled_models

    console = Console()
    bundled = Table(title="trained models, bundled (--model NAME in analyze, live, serve, evaluate)")
    for col in ("name", "architecture", "input", "classes"):
        bundled.add_column(col)
    attributes = [n for n in ATTRIBUTE_MODELS if (WEIGHTS / f"{n}.onnx").is_file()]
    for name in [*list_bundled_models(), *attributes]:
        clf = EmotionClassifier.load(name)
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
    "optimizer", "weight_decay", "label_smoothing", "class_weights", "scheduler", "early_stopping", "clip_grad",
    "amp", "seed", "input_size", "channels", "margin", "contrast", "select", "teacher", "distill_weight",
    "teacher_members", "keep", "drop", "merge", "format", "augment", "init", "workers", "device", "cache_dir",
)
# The train options that are not config fields.
_TRAIN_EXTRA_OPTIONS: dict[str, tuple[Any, Any]] = {
    "arch": (Optional[str], typer.Option(None, "--arch", "-a", help=f"Architecture (default {_D.model}; see `emolens models`).")),
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
        given["model"] = arch
    given = {k: [str(x) for x in v] if isinstance(v, list) else str(v) if isinstance(v, Path) else v
             for k, v in given.items()}
    try:
        if resume is not None:
            cfg = RunDir(resume).resumed_config(given)
        else:
            if not data or out is None:
                raise _fail("--data and --out are required (or --resume RUN_DIR)")
            if not force and RunDir(out).holds_run():
                raise _fail(f"--out {out} already holds a run: continue it with --resume {out}, "
                            f"or start over with --force (its checkpoints are overwritten)")
            cfg = TrainConfig(**given)
        fit(cfg, resume=resume is not None)
    except KeyboardInterrupt:
        typer.echo(f"\ninterrupted; continue with: emolens train --resume {resume or out}", err=True)
        raise typer.Exit(code=130) from None
    except (ValueError, FileNotFoundError, KeyError, ArithmeticError) as e:
        raise _fail(str(e)) from e


def evaluate_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Trained model: run folder, .pt checkpoint, .onnx file or bundled model name (default, mixed8, fer2013, ...)."),
    data: Path = typer.Option(..., "--data", help="Dataset folder or file (any supported layout)."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder: metrics.json, confusion_matrix.png."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate (default: test, else val, else eval)."),
    format: str = typer.Option("auto", "--format", help="Dataset layout."),
    tta: str = typer.Option("none", "--tta", help="Test-time augmentation: none | flip | tencrop (gain is reported)."),
    detect: bool = typer.Option(False, "--detect", help="End to end: find faces in the full photos (no face = error)."),
    detector: str = typer.Option("default", "--detector", "-d", help="Face detector for --detect (names as in analyze)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Faces per forward pass."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoded-image cache."),
    device: str = typer.Option("cpu", "--device", help="Device for torch checkpoints (cpu | cuda)."),
    align: bool = typer.Option(False, "--align", help="With --detect: level each face by its eye landmarks before the crop."),
    votes: Optional[Path] = typer.Option(None, "--votes", help="Crowd-votes CSV (FER+ layout): also report accuracy against the vote plurality."),
) -> None:
    """Evaluate a model on a dataset split: accuracy, F1, per-class table, confusion matrix, ECE;
    an age model (e.g. --model age on a UTKFace-style folder): MAE, CS(5), per band and group, scatter plot."""
    from rich.console import Console
    from rich.table import Table

    from emolens.evaluation.evaluate import evaluate_model

    console = Console()
    try:
        report = evaluate_model(
            model, data, out, split=split, format=format, tta=tta, detect=detect, detector=detector,
            batch_size=batch_size, cache_dir=cache_dir, device=device, votes=votes, align=align, log=console.print,
        )
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise _fail(str(e)) from e
    if report.get("task") == "age":
        _print_age_report(console, report, data, out)
        return
    table = Table(title=f"{report['model_name']} on {data}, split {report['split']}, n={report['n']}")
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, row in report["per_class"].items():
        table.add_row(name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    console.print(table)
    line = (f"accuracy {report['accuracy']:.4f}  macro F1 {report['macro_f1']:.4f}  "
            f"weighted F1 {report['weighted_f1']:.4f}  ECE {report['ece']:.4f}")
    if "tta_gain" in report:
        line += f"  (TTA {tta}: {report['tta_gain']:+.4f} over {report['accuracy_without_tta']:.4f})"
    if detect:
        line += f"  no face found: {report['skipped']['no_face_found']}"
    if votes is not None:
        line += f"  votes accuracy {report['votes_accuracy']:.4f} (n={report['votes_n']})"
    if "temperature_fit" in report:
        fit = report["temperature_fit"]
        line += f"  (best temperature here {fit['temperature']:.2f}: ECE {fit['ece']:.4f})"
    console.print(line)
    console.print(f"report: {out / 'metrics.json'}, {out / 'confusion_matrix.png'}")


def _print_age_report(console, report: dict, data: Path, out: Path) -> None:
    from rich.table import Table

    table = Table(title=f"{report['model_name']} (age) on {data}, split {report['split']}, n={report['n']}")
    for col in ("group", "n", "MAE (years)", "CS(5)", "bias"):
        table.add_column(col, justify="left" if col == "group" else "right")
    rows = [("all", report), *((f"age {k}", v) for k, v in report["bands"].items()),
            *((f"{kind} {k}", v) for kind, groups in report.get("groups", {}).items() for k, v in groups.items())]
    for name, r in rows:
        table.add_row(name, str(r["n"]), *(("-",) * 3 if not r["n"] else
                                           (f"{r['mae']:.2f}", f"{r['cs5']:.3f}", f"{r['bias']:+.2f}")))
    console.print(table)
    console.print(f"report: {out / 'metrics.json'}, {out / 'age_scatter.png'}")


def export_cmd(
    checkpoint: Path = typer.Argument(..., help="Run folder (its best.pt) or .pt checkpoint."),
    out: Path = typer.Option(..., "--out", "-o", help="ONNX file to write."),
    int8: bool = typer.Option(False, "--int8", help="Also quantise to int8 (written as OUT with .int8.onnx)."),
    int8_mode: str = typer.Option("static", "--int8-mode", help="static (QDQ, calibrated on training faces) | dynamic."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    temperature: float = typer.Option(1.0, "--temperature", help="Softmax temperature stored in the metadata."),
    data: Optional[Path] = typer.Option(None, "--data", help="Real faces for calibration and the check (default: the run's data)."),
    check_split: str = typer.Option("val", "--check-split", help="Split whose faces the ONNX model is checked on."),
    samples: int = typer.Option(500, "--samples", help="Faces for the check and for calibration."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoded-image cache."),
) -> None:
    """Export a checkpoint to ONNX (optionally int8) and check it against PyTorch on real faces."""
    from emolens.models.export import export_checked

    try:
        report = export_checked(checkpoint, out, opset=opset, temperature=temperature, int8=int8_mode if int8 else None,
                                data=data, check_split=check_split, samples=samples, cache_dir=cache_dir)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise _fail(str(e)) from e
    fp32, *quantized = report.files
    typer.echo(f"wrote {fp32} ({fp32.stat().st_size / 1e6:.2f} MB): {report.meta['model_name']}, "
               f"classes {describe_classes(report.meta['classes'])}")
    for q in quantized:
        typer.echo(f"wrote {q} ({q.stat().st_size / 1e6:.2f} MB, int8 {int8_mode})")
    if report.no_check:
        typer.secho(f"no check on real faces: {report.no_check}", fg=typer.colors.YELLOW, err=True)
    for path, r in report.checks.items():
        typer.echo(f"{path.name} vs PyTorch on {r['n']} real faces ({check_split}): top-1 agreement "
                   f"{r['top1_agreement']:.4f}, max probability difference {r['max_prob_diff']:.2e}, "
                   f"accuracy {r['onnx_accuracy']:.4f} (PyTorch {r['torch_accuracy']:.4f})")


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

    try:
        save_teacher_outputs(
            models, [SourceSpec.parse(d) for d in data], out, tta=tta, device=device, batch_size=batch_size,
            cache_dir=cache_dir, log=typer.echo,
        )
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise _fail(str(e)) from e
    typer.echo(f"wrote {out} and {out.with_suffix('.json')}")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``emolens`` app."""
    app.command("models")(models_cmd)
    app.command("train")(train_cmd)
    app.command("teach")(teach_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("export")(export_cmd)
