"""The steps of ``emolens analyze``: which files, images a chunk at a time, each video, what is
printed, and the :class:`Report` that collects results and failures and writes the JSON and CSV.

An input that cannot be analysed is one ``error:`` line and is skipped; the others keep their
results (exit 1 at the end).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from emolens.inference.recognizer import Recognizer
    from emolens.inference.results import ImageResult, VideoResult

IMAGES_IN_MEMORY = 8  # decoded photos held at once (a 24 MP photo is 72 MB); faces still batch across them


@dataclass
class Report:
    """What ``analyze`` collects across its inputs: JSON entries, CSV rows, and the failures (each
    printed as one ``error:`` line when it happens)."""

    console: Console
    entries: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)

    def fail(self, source: str, message: str) -> None:
        from emolens.apps.cli.output import print_error

        self.errors.append({"source": source, "error": message})
        print_error(message)

    def add_image(self, result: ImageResult) -> None:
        self.entries.append({"kind": "image", **result.to_dict()})
        self.rows += [{"kind": "image", "frame": 0, "time_s": None, **r} for r in result.to_rows()]

    def add_video(self, result: VideoResult) -> None:
        self.entries.append(result.to_dict())
        self.rows += [{"kind": "video", "source": result.source, **r} for r in result.timeline]

    def finish(self, json_out: Path | None, csv_out: Path | None, classes: tuple[str, ...]) -> None:
        """Write the JSON and CSV, print the count; exit 1 when an input failed, 2 when the results
        cannot be written."""
        from emolens.apps.cli.output import print_error
        from emolens.files import write_text
        from emolens.inference.report import rows_to_csv
        from emolens.inference.results import FaceResult

        try:
            if json_out:
                write_text(json_out, json.dumps({"results": self.entries, "errors": self.errors}, indent=1))
            if csv_out:
                age = any("age" in r for r in self.rows)
                write_text(csv_out, rows_to_csv(self.rows, ["source", "kind", "frame", "time_s",
                                                            *FaceResult.columns(classes, age)]))
        except OSError as e:  # a full disk, a read-only folder: said as the results not written
            print_error(f"cannot write the results: {e}")
            raise typer.Exit(2) from None
        self.console.print(f"{len(self.entries)} analysed, {len(self.errors)} failed")
        if self.errors:
            raise typer.Exit(1)


def input_files(inputs: list[Path], report: Report) -> list[Path]:
    """The image and video files to analyse, each once; unreadable inputs go to ``report``. Exit 1
    when there is nothing to analyse (with a warning when no input failed to say why)."""
    from emolens.images import IMAGE_SUFFIXES
    from emolens.inference.capture import VIDEO_SUFFIXES

    found, errors = _expand(inputs, IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    for e in errors:
        report.fail(e["source"], e["error"])
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(_identity(path), path)  # the first mention of each file
    files = list(unique.values())
    if not files:
        if not errors:  # a missing input was already said; nothing else to add
            report.console.print(
                f"[yellow]warning[/]: nothing to analyse: no image or video file in {', '.join(map(str, inputs))} "
                f"(looked for {', '.join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))})")
        raise typer.Exit(1)
    return files


def _identity(path: Path) -> Path:
    """One name per file, however it was reached (relative, through a folder, a symlink)."""
    try:
        return path.resolve()
    except OSError:  # a symlink loop: it fails later with its own message
        return path


def analyze_image_files(recognizer: Recognizer, images: list[Path], batch_size: int, annotate_dir: Path | None,
                         stems: set[str], report: Report) -> None:
    """Analyse ``images`` a few at a time (faces batched across them): a table each, the annotated
    copy with --annotate, a hint when faceless images look like face crops."""
    from emolens.errors import InputError
    from emolens.inference.detectors import probably_face_crop
    from emolens.progress import progress

    crops = 0  # images without a face that look like face crops
    with progress("images", len(images)) as advance:
        for start in range(0, len(images), IMAGES_IN_MEMORY):
            batch = analyze_images(recognizer, images[start:start + IMAGES_IN_MEMORY], batch_size)
            advance(len(batch))
            for path, outcome in batch:
                if isinstance(outcome, InputError):
                    report.fail(str(path), str(outcome))
                    continue
                report.add_image(outcome)
                _print_image(report.console, outcome)
                crops += not outcome.faces and probably_face_crop(recognizer.detector, outcome.image)
                if annotate_dir:
                    _save_annotated(outcome, annotate_dir / f"{unique_stem(path.stem, stems)}.jpg", report)
                outcome.image = None  # only this chunk's images are ever held
    if crops:
        report.console.print(
            f"[yellow]hint[/]: {crops} image(s) without a detected face look like face crops (the face fills the "
            f"image); if they are, analyse them with --detector none (each image is one face)")


def _save_annotated(result: ImageResult, path: Path, report: Report) -> None:
    from emolens.inference.annotate import save_image

    try:
        save_image(result.annotated(color="bgr"), path)
    except OSError as e:
        report.fail(result.source, f"{result.source}: annotated image not written: {e}")


def _expand(inputs: list[Path], suffixes: frozenset[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files to analyse (folders searched recursively for known suffixes) and inputs that cannot be
    read (missing, no permission, a name too long)."""
    files: list[Path] = []
    errors: list[dict[str, str]] = []

    def unreadable(e: OSError) -> None:
        errors.append({"source": str(e.filename), "error": f"{e.filename}: cannot be read: {e.strerror or e}"})

    for p in inputs:
        try:
            is_dir, is_file = p.is_dir(), p.is_file()
        except OSError as e:
            unreadable(e)
            continue
        if is_dir:
            found = [Path(root) / name for root, dirs, names in os.walk(p, onerror=unreadable)
                     for name in names if Path(name).suffix.lower() in suffixes]
            files += sorted(found)
        elif is_file:
            files.append(p)
        else:
            errors.append({"source": str(p), "error": f"{p}: no such file or folder"})
    return files, errors


def analyze_images(recognizer: Any, paths: list[Path], batch_size: int) -> list[tuple[Path, Any]]:
    """(path, ImageResult or InputError) per image, each file decoded once (the result keeps its
    image); faces of all readable images are classified together."""
    from emolens.errors import InputError
    from emolens.images import load_image

    loaded, outcomes = [], {}
    for p in paths:
        try:
            loaded.append((p, load_image(p, max_pixels=recognizer.max_pixels)))
        except InputError as e:
            outcomes[p] = e
    try:
        results = recognizer.analyze_batch([a for _, a in loaded], batch_size=batch_size,
                                           sources=[str(p) for p, _ in loaded])
    except Exception:  # noqa: BLE001  (one image the pipeline fails on must not cost the others their results)
        results = [_analyze_one(recognizer, p, a) for p, a in loaded]
    outcomes.update({p: r for (p, _), r in zip(loaded, results)})
    return [(p, outcomes[p]) for p in paths]


def _analyze_one(recognizer: Any, path: Path, image: Any) -> Any:
    """``recognizer.analyze`` of one decoded image; an unexpected failure (a bug) prints its
    traceback and becomes an InputError naming the file, so the other inputs keep their results."""
    import traceback

    from emolens.errors import InputError

    try:
        return recognizer.analyze_batch([image], sources=[str(path)])[0]
    except InputError as e:
        return e
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return InputError(f"{path}: could not be analysed ({type(e).__name__}: {e}); this is a bug in emolens, "
                          f"please report it with the file")


def unique_stem(stem: str, used: set[str]) -> str:
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name


def analyze_video_file(recognizer: Recognizer, path: Path, stem: str, annotate_dir: Path | None,
                        artifact_dir: Path | None, detect_every: int, smoothing: float, report: Report) -> None:
    """Analyse one video: its summary table, the report files and (with --annotate) the annotated
    video, each listed; a video that fails is reported and the others still run."""
    from emolens.apps.cli.output import error_message
    from emolens.errors import InputError
    from emolens.images import describe
    from emolens.inference.capture import frame_count
    from emolens.inference.report import write_video_outputs
    from emolens.inference.video import analyze_video
    from emolens.progress import progress

    annotated = annotate_dir / f"{stem}.mp4" if annotate_dir else None
    try:
        with progress(path.name, frame_count(path)) as advance:
            video = analyze_video(recognizer, path, annotate_to=annotated, detect_every=detect_every,
                                  smoothing=smoothing, on_progress=advance)
        outputs = write_video_outputs(video, artifact_dir, stem) if artifact_dir is not None else {}
    except (InputError, OSError) as e:  # this video fails; the others are still analysed
        report.fail(describe(path), error_message(e))
        return
    console = report.console
    console.print(f"[bold]{path}[/]: {video.width}x{video.height}, {video.frames} frames, {video.duration_s:.1f} s")
    print_summary(console, video)
    for kind, p in {**outputs, **({"video": annotated} if annotated else {})}.items():
        console.print(f"  {kind}: {p}")
    report.add_video(video)


def _print_image(console: Console, result: ImageResult) -> None:
    from rich.table import Table

    table = Table(title=f"{result.source} ({result.width}x{result.height}): {len(result.faces)} face(s)",
                  title_justify="left")
    age = any(f.age is not None for f in result.faces)
    for col in ("#", "box x1,y1,x2,y2", "det.", "emotion", "conf.", "next", *(("age",) if age else ())):
        table.add_column(col)
    for f in result.faces:
        ranked = sorted(f.probabilities.items(), key=lambda kv: -kv[1])
        table.add_row(str(f.face_id), ",".join(map(str, f.box)), f"{f.score:.2f}", f.emotion, f"{f.confidence:.0%}",
                      ", ".join(f"{k} {v:.0%}" for k, v in ranked[1:3]), *((f"{f.age:.0f}",) if age else ()))
    console.print(table)


def print_summary(console: Console, video: VideoResult) -> None:
    from rich.table import Table

    summary = video.summary()
    if not summary:
        console.print("  no face found")
        return
    age = any("median_age" in s for s in summary)
    table = Table("face", "frames", "from-to (s)", "dominant", "share of time", *(("median age",) if age else ()))
    for s in summary:
        shares = sorted(s["share"].items(), key=lambda kv: -kv[1])
        table.add_row(str(s["face_id"]), str(s["frames"]), f"{s['first_s']:.1f}-{s['last_s']:.1f}", s["dominant"],
                      ", ".join(f"{k} {v:.0%}" for k, v in shares if v > 0),
                      *((f"{s['median_age']:.0f}" if "median_age" in s else "-",) if age else ()))
    console.print(table)
