"""``emolens evaluate``: a trained model on a dataset split (classification or age report)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def evaluate_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Trained model: run folder, .pt checkpoint, .onnx file or bundled model name (default, accurate, mixed8, ...)."),
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
    report = evaluate_model(
        model, data, out, split=split, format=format, tta=tta, detect=detect, detector=detector,
        batch_size=batch_size, cache_dir=cache_dir, device=device, votes=votes, align=align, log=console.print,
    )
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
        # the fit minimises log-loss, not ECE: its ECE can be the higher one
        line += (f"  (temperature {fit['temperature']:.2f} minimises log-loss on this split; "
                 f"ECE at it {fit['ece']:.4f})")
    console.print(line)
    if (note := training_note(model, report)) is not None:
        console.print(note)
    console.print(f"report: {out / 'metrics.json'}, {out / 'confusion_matrix.png'}")


def training_note(model: str, report: dict) -> str | None:
    """For a run folder: the validation accuracy training recorded for its best checkpoint, and why
    this evaluation's figure may differ (None when the run holds no history)."""
    import csv
    import json

    run = Path(model)
    try:
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        with (run / "history.csv").open(encoding="utf-8", newline="") as f:
            history = [r for r in csv.DictReader(f) if r.get("val_acc")]
    except (OSError, ValueError):
        return None
    if not history:
        return None
    best = max(history, key=lambda r: float(r["val_acc"]))
    precision = config.get("amp", "?")
    return (f"note: training recorded validation accuracy {float(best['val_acc']):.4f} at epoch {best['epoch']}, "
            f"measured during training on the run's validation data ({config.get('data', '?')}) with precision "
            f"{precision} and every class the run trained on; this evaluation runs the saved weights in fp32 on split "
            f"{report['split']} of this dataset over the classes it shares with the model, so the figures can differ "
            f"slightly")


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


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to the ``emolens`` app."""
    app.command("evaluate")(evaluate_cmd)
