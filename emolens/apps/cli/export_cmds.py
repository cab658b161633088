"""``emolens export``: a checkpoint to ONNX (optionally int8), checked against PyTorch on real faces."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emolens.age import describe_classes


def export_cmd(
    checkpoint: Path = typer.Argument(..., help="Run folder (its best.pt) or .pt checkpoint."),
    out: Path = typer.Option(..., "--out", "-o", help="ONNX file to write."),
    int8: bool = typer.Option(False, "--int8", help="Also quantise to int8 (written as OUT with .int8.onnx)."),
    int8_mode: str = typer.Option("static", "--int8-mode", help="static (QDQ, calibrated on training faces) | dynamic."),
    fp16_weights: bool = typer.Option(False, "--fp16-weights", help="Store the weights as float16 (half the file; "
                                      "computation stays float32)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    temperature: float = typer.Option(1.0, "--temperature", help="Softmax temperature stored in the metadata."),
    tta: str = typer.Option("none", "--tta", help="none | flip (the graph averages the logits of each face and its "
                            "mirror image: twice the work per face)."),
    data: Optional[Path] = typer.Option(None, "--data", help="Real faces for calibration and the check (default: the run's data)."),
    check_split: str = typer.Option("val", "--check-split", help="Split whose faces the ONNX model is checked on."),
    samples: int = typer.Option(500, "--samples", help="Faces for the check and for calibration."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Decoded-image cache."),
) -> None:
    """Export a checkpoint to ONNX (optionally int8) and check it against PyTorch on real faces."""
    from emolens.models.export import export_checked

    report = export_checked(checkpoint, out, opset=opset, temperature=temperature, tta=tta, int8=int8_mode if int8 else None,
                            data=data, check_split=check_split, samples=samples, cache_dir=cache_dir,
                            fp16_weights=fp16_weights)
    fp32, *quantized = report.files
    typer.echo(f"wrote {fp32} ({fp32.stat().st_size / 1e6:.2f} MB{', float16 weights' if fp16_weights else ''}): "
               f"{report.meta['model_name']}, "
               f"classes {describe_classes(report.meta['classes'])}")
    for q in quantized:
        typer.echo(f"wrote {q} ({q.stat().st_size / 1e6:.2f} MB, int8 {int8_mode})")
    if report.no_check:
        typer.secho(f"no check on real faces: {report.no_check}", fg=typer.colors.YELLOW, err=True)
    for path, r in report.checks.items():
        typer.echo(f"{path.name} vs PyTorch on {r['n']} real faces ({check_split}): top-1 agreement "
                   f"{r['top1_agreement']:.4f}, max probability difference {r['max_prob_diff']:.2e}, "
                   f"accuracy {r['onnx_accuracy']:.4f} (PyTorch {r['torch_accuracy']:.4f})")


def register(app: typer.Typer) -> None:
    """Add ``export`` to the ``emolens`` app."""
    app.command("export")(export_cmd)
