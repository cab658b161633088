"""``emolens analyze`` (images, folders, videos) and ``emolens live`` (camera, file, stream URL).

A bad option, model or output path raises and the CLI's error boundary reports it (exit 2); an
input that cannot be analysed is reported as one ``error:`` line and skipped (exit 1 at the end).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from emolens.apps.cli.analyze_steps import (
    Report,
    analyze_image_files,
    analyze_video_file,
    input_files,
    print_summary,
    unique_stem,
)
from emolens.errors import ConfigError
from emolens.inference.detectors import DEFAULT_DETECTOR, DEFAULT_STREAM_DETECTOR, list_detectors
from emolens.inference.tracking import DEFAULT_SMOOTHING
from emolens.limits import MAX_PIXELS

if TYPE_CHECKING:
    from emolens.inference.recognizer import Recognizer

MODEL_HELP = ("trained model: a bundled name (default → accurate-int8; `emolens models` lists them), an exported "
              ".onnx file, or a run folder holding one")
DETECTOR_HELP = (f"face detector: default (photos {DEFAULT_DETECTOR}, video {DEFAULT_STREAM_DETECTOR}), "
                 f"{', '.join(list_detectors())} (none: each image is one face), yunet-N (YuNet at N px), "
                 f"or a fallback chain such as blazeface,yunet")
AGE_HELP = ("also estimate each face's apparent age (bundled age model, UTKFace-trained; see emolens/weights/age.md "
            "for its error and what it must not be used for); JSON and CSV gain an age column")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the ``emolens`` app."""
    app.command("analyze")(analyze)
    app.command("live")(live)


def analyze(
    inputs: list[Path] = typer.Argument(..., help="images, video files, or folders of them (searched recursively)"),
    json_out: Path | None = typer.Option(None, "--json", help="write all results to this JSON file"),
    csv_out: Path | None = typer.Option(None, "--csv", help="one row per face (per frame for videos) to this CSV"),
    annotate_dir: Path | None = typer.Option(None, "--annotate", help="folder for annotated images and videos"),
    model: str = typer.Option("default", "--model", "-m", help=MODEL_HELP),
    detector: str = typer.Option("default", "--detector", "-d", help=DETECTOR_HELP),
    smoothing: float = typer.Option(DEFAULT_SMOOTHING, help="per-face smoothing of video probabilities (0 = off)"),
    detect_every: int = typer.Option(1, "--detect-every", min=1, help="videos: detect faces every k-th frame"),
    max_pixels: int = typer.Option(MAX_PIXELS, "--max-pixels", help="refuse images larger than this many pixels (default: EMOLENS_MAX_PIXELS or 50 million)"),
    batch_size: int = typer.Option(64, min=1, help="faces classified per batch"),
    age: bool = typer.Option(False, "--age", help=AGE_HELP),
) -> None:
    """Find faces and their emotions in images and videos.

    Each image prints a table; --annotate DIR saves it with boxes, labels and probability bars.
    Each video also writes <stem>.timeline.csv, <stem>.json (per-face summary + timeline),
    <stem>.summary.csv and <stem>.timeline.png (and the annotated <stem>.mp4 with --annotate) into
    the --annotate folder, else the folder of --json, else of --csv. Unreadable inputs are reported
    and skipped; the exit code is then 1. A file given twice (also through its folder) is analysed once.
    """
    from rich.console import Console

    from emolens.inference.capture import VIDEO_SUFFIXES

    console = Console()
    _check_outputs(json_out, csv_out, annotate_dir)
    recognizer = _recognizer(model, detector, smoothing, max_pixels, age)
    report = Report(console)
    files = input_files(inputs, report)
    artifact_dir = annotate_dir or (json_out.parent if json_out else None) or (csv_out.parent if csv_out else None)
    stems: set[str] = set()
    analyze_image_files(recognizer, [f for f in files if f.suffix.lower() not in VIDEO_SUFFIXES], batch_size,
                         annotate_dir, stems, report)
    for path in (f for f in files if f.suffix.lower() in VIDEO_SUFFIXES):
        analyze_video_file(recognizer, path, unique_stem(path.stem, stems), annotate_dir, artifact_dir, detect_every,
                            smoothing, report)
    report.finish(json_out, csv_out, recognizer.classes)


def live(
    source: str = typer.Option("0", "--source", "-s", help="camera index, video file or stream URL"),
    no_window: bool = typer.Option(False, "--no-window", help="headless: write annotated video and timeline to --out"),
    out: Path | None = typer.Option(None, "--out", "-o", help="output folder (annotated video, timeline, snapshots)"),
    model: str = typer.Option("default", "--model", "-m", help=MODEL_HELP),
    detector: str = typer.Option("default", "--detector", "-d", help=DETECTOR_HELP),
    smoothing: float = typer.Option(DEFAULT_SMOOTHING, help="per-face smoothing of probabilities (0 = off)"),
    detect_every: int = typer.Option(1, "--detect-every", min=1, help="detect faces every k-th processed frame"),
    max_seconds: float | None = typer.Option(None, help="stop after this many seconds of video"),
    max_frames: int | None = typer.Option(None, help="stop after this many processed frames"),
    fast: bool = typer.Option(False, "--fast", help="window: play a video file as fast as it is processed"),
    age: bool = typer.Option(False, "--age", help=AGE_HELP),
) -> None:
    """Live recognition in a window (q quits, s saves a snapshot), or headless with --no-window.

    A camera never falls behind: frames that arrive while one is processed are dropped. A file
    is processed frame by frame; in the window it plays at its own frame rate (--fast: flat out)
    and its last frame stays until you quit. Headless runs go flat out and default --out to
    ./emolens-live.
    """
    from rich.console import Console

    from emolens.apps.live import run_live

    console = Console()
    recognizer = _recognizer(model, detector, smoothing, MAX_PIXELS, age)
    if no_window and out is None:
        out = Path("emolens-live")
    run = run_live(recognizer, source, out_dir=out, window=not no_window, detect_every=detect_every,
                   smoothing=smoothing, max_frames=max_frames, max_seconds=max_seconds, fast=fast)
    frames = len({r["frame"] for r in run.result.timeline})
    console.print(f"{run.result.source}: {run.result.processed} of {run.result.frames} frames analysed, "
                  f"{frames} with faces, {len(run.result.summary())} face(s), "
                  f"{run.processed_fps:.1f} frames/s processed")
    print_summary(console, run.result)
    for kind, path in run.outputs.items():
        console.print(f"  {kind}: {path}")


def _recognizer(model: str, detector: str, smoothing: float, max_pixels: int, age: bool = False) -> Recognizer:
    """The ``Recognizer`` for these options, ``smoothing`` checked too: a bad choice raises before any work."""
    from emolens.inference.recognizer import Recognizer
    from emolens.inference.tracking import check_smoothing

    check_smoothing(smoothing)
    return Recognizer(model=model, detector=detector, max_pixels=max_pixels, attributes=("age",) if age else ())


def _check_outputs(json_out: Path | None, csv_out: Path | None, annotate_dir: Path | None) -> None:
    """Raise ``ValueError`` before any work when an output path cannot be what it is asked to be."""
    problems = [f"{flag} {p}: is a folder; expected a file path" for flag, p in (("--json", json_out), ("--csv", csv_out))
                if p is not None and p.is_dir()]
    if annotate_dir is not None and annotate_dir.exists() and not annotate_dir.is_dir():
        problems.append(f"--annotate {annotate_dir}: is a file; expected a folder")
    if problems:
        raise ConfigError("; ".join(problems))


