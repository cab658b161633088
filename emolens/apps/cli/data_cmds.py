"""``emolens data ...``: dataset inspection (errors are reported by the CLI's error boundary)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from emolens.age import decade_counts, is_age_model
from emolens.data.check import CheckReport, check_dataset, plot_distribution
from emolens.errors import ConfigError

data_app = typer.Typer(help="Inspect datasets.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``emolens`` app."""
    app.add_typer(data_app, name="data")


@data_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="dataset folder, fer2013.csv or YOLO data.yaml")],
    format: Annotated[
        str, typer.Option("--format", "-f", help="auto, split-folders, fer2013-csv, yolo, class-folders, eval-folder")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="write a class-distribution bar chart PNG")] = None,
    workers: Annotated[int, typer.Option(help="reader threads")] = 2,
) -> None:
    """Per split and class counts, unreadable files, exact duplicates (also across splits), sizes and modes."""
    report = check_dataset(path, format=format, workers=workers)
    if plot is not None:
        plot_distribution(report, plot)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        console = Console(soft_wrap=True)  # file paths stay whole
        _print_report(report, console)
        if plot is not None:
            console.print(f"class distribution chart: {plot}", highlight=False)


@data_app.command("pack")
def pack(
    path: Annotated[Path, typer.Argument(help="dataset folder, fer2013.csv or YOLO data.yaml")],
    out: Annotated[Path, typer.Option("--out", "-o", help="the .npz file to write")],
    size: Annotated[int, typer.Option("--size", help="face size in pixels")] = 48,
    channels: Annotated[int, typer.Option("--channels", help="1 (gray) or 3 (RGB)")] = 1,
    margin: Annotated[float, typer.Option("--margin", help="face-box margin per side (box datasets)")] = 0.1,
    format: Annotated[str, typer.Option("--format", "-f", help="dataset layout (default auto)")] = "auto",
) -> None:
    """Cut and size every face once into one compressed .npz (keys kept) to train on another machine."""
    from emolens.data.pack import pack_dataset

    if out.suffix != ".npz":
        raise ConfigError(f"--out {out}: expected a .npz file name")
    counts = pack_dataset(path, out, size, channels, format=format, margin=margin)
    summary = ", ".join(f"{name} {n}" for name, n in counts.items())
    typer.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {summary} faces at {size}px×{channels}")


def _print_report(report: CheckReport, console: Console) -> None:
    console.print(f"[bold]{report.root}[/bold] ({report.format})", highlight=False)
    splits = list(report.splits)
    age = is_age_model(report.classes)  # an age dataset: the histogram by decade (one-year counts in --json)
    per_split = {s: decade_counts(report.splits[s].classes) if age else report.splits[s].classes for s in splits}
    counts = Table(title="images per age (years)" if age else "images per class")
    counts.add_column("age" if age else "class")
    for name in splits:
        counts.add_column(name, justify="right")
    for c in (dict.fromkeys(k for s in splits for k in per_split[s]) if age else report.classes):
        counts.add_row(c, *(str(per_split[s].get(c, 0)) for s in splits))
    counts.add_row("[bold]total", *(f"[bold]{report.splits[s].images}" for s in splits))
    console.print(counts)

    summary = Table(title="files")
    for col in ("split", "unreadable", "duplicate groups", "duplicate files", "sizes", "colour modes"):
        summary.add_column(col)
    for name, s in report.splits.items():
        summary.add_row(
            name,
            str(len(s.unreadable)),
            str(len(s.duplicate_groups)),
            str(s.duplicate_files),
            _top(s.sizes),
            _top(s.modes),
        )
    console.print(summary)

    total = report.duplicates_total
    console.print(
        f"exact duplicates over all splits: {total['groups']} groups, {total['extra_files']} extra copies",
        highlight=False,
    )
    cross = report.cross_split_duplicates
    involved = ", ".join(f"{name} {n}" for name, n in report.cross_split_files().items())
    style = "yellow" if cross else "green"
    console.print(
        f"[{style}]cross-split duplicates (leakage): {len(cross)} groups; files involved: {involved}", highlight=False
    )
    for g in cross[:5]:
        where = ", ".join(f"{n}×{s}" for s, n in Counter(g["splits"]).items())
        console.print(f"  {g['files'][0]} ({where}; classes {', '.join(sorted(set(g['classes'])))})", highlight=False)
    for name, s in report.splits.items():
        for u in s.unreadable:
            console.print(f"[red]unreadable[/red] ({name}) {u['file']}: {u['error']}", highlight=False)
    for w in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}", highlight=False)


def _top(counter: dict[str, int], n: int = 3) -> str:
    items = list(counter.items())
    text = ", ".join(f"{k}: {v}" for k, v in items[:n])
    return text + (f" (+{len(items) - n} more)" if len(items) > n else "")
