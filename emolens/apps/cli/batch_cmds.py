"""``emolens batch``: an archive of photos and videos analysed on Ray into a Parquet dataset
(:mod:`emolens.apps.batch`; docs/batch.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from emolens.apps.cli.infer_cmds import AGE_HELP, DETECTOR_HELP, MODEL_HELP
from emolens.inference.tracking import DEFAULT_SMOOTHING


def register(app: typer.Typer) -> None:
    """Add this module's command to the ``emolens`` app."""
    app.command("batch")(batch)


def batch(
    inputs: list[str] = typer.Argument(..., help="folders (searched recursively), glob patterns, files, or manifests "
                                                 "(.txt: one path a line; .csv/.parquet: a 'path' column)"),
    out: Path = typer.Option(..., "--out", "-o", help="the dataset folder (a rerun into it resumes)"),
    fps: float | None = typer.Option(None, "--fps", help="analyse about this many frames per second of video (default: every frame)"),
    model: str = typer.Option("default", "--model", "-m", help=MODEL_HELP),
    detector: str = typer.Option("default", "--detector", "-d", help=DETECTOR_HELP),
    age: bool = typer.Option(False, "--age", help=AGE_HELP),
    workers: int | None = typer.Option(None, "--workers", "-w", min=1, help="worker processes (default: one per core "
                                                                            "of this machine, or of the cluster)"),
    address: str | None = typer.Option(None, "--address", help="a Ray cluster's head, host:port (default: Ray "
                                                               "embedded on this machine, on a loopback address)"),
    cpus_per_worker: int = typer.Option(1, "--cpus-per-worker", min=1, help="cores (and threads) per worker"),
    smoothing: float = typer.Option(DEFAULT_SMOOTHING, help="per-face smoothing of video probabilities (0 = off)"),
    detect_every: int = typer.Option(1, "--detect-every", min=1, help="detect faces every k-th analysed frame"),
) -> None:
    """Analyse a whole archive of photos and videos on Ray into a Parquet dataset under --out.

    Writes faces/ (one row per face per analysed frame), tracks/ and sources/ (one row per source,
    with its error if it failed), one Parquet file per source each, and a ledger: rerunning the
    same command skips finished sources. Failed sources are reported; the exit code is then 1.
    """
    from emolens.apps.batch import BatchOptions, run_batch
    from emolens.apps.cli.output import print_error

    options = BatchOptions(model=model, detector=detector, fps=fps, age=age, smoothing=smoothing,
                           detect_every=detect_every)
    report = run_batch(inputs, out, options, workers=workers, address=address, cpus_per_worker=cpus_per_worker)
    for _, error in report.errors:
        print_error(error)
    if address is None and report.workers and not report.isolated:
        typer.echo("note: this system refused a private network namespace, so Ray's ports listened on every "
                   "interface (token authentication on); docs/batch.md, 'Security'", err=True)
    typer.echo(f"{report.done} analysed, {report.failed} failed, {report.skipped} already done "
               f"({report.workers or 'no'} workers): {report.out}")
    if report.errors:
        raise typer.Exit(1)
