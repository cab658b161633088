"""One work item analysed on a worker, and a source's parts merged on the driver.

Photos go through :meth:`Recognizer.analyze_batch` and videos through a
:class:`~emolens.inference.stream.StreamAnalyzer` into a :class:`VideoResult`, as ``emolens
analyze`` does; ``fps`` samples every k-th frame of a video (the others are skipped undecoded
where the container allows it), and a work item may cover only a range of frames.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from emolens.apps.batch.inputs import WorkItem
from emolens.errors import ConfigError, InputError
from emolens.images import check_pixels
from emolens.inference.capture import capture_fps, open_capture
from emolens.inference.recognizer import Recognizer
from emolens.inference.results import VideoResult
from emolens.inference.stream import StreamAnalyzer
from emolens.inference.tracking import DEFAULT_SMOOTHING, check_smoothing
from emolens.limits import MAX_PIXELS


@dataclass(frozen=True)
class BatchOptions:
    """How every source is analysed; a batch folder holds results of one set of options."""

    model: str = "default"
    detector: str = "default"
    fps: float | None = None  # sample this many frames per second of video (None: every frame)
    age: bool = False
    smoothing: float = DEFAULT_SMOOTHING
    detect_every: int = 1
    max_pixels: int = MAX_PIXELS

    def check(self) -> None:
        """ConfigError for an unusable option, before any work."""
        if self.fps is not None and self.fps <= 0:
            raise ConfigError(f"--fps must be positive, got {self.fps}")
        if self.detect_every < 1:
            raise ConfigError(f"--detect-every must be at least 1, got {self.detect_every}")
        check_smoothing(self.smoothing)

    def recognizer(self) -> Recognizer:
        return Recognizer(model=self.model, detector=self.detector, max_pixels=self.max_pixels,
                          attributes=("age",) if self.age else ())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ItemResult:
    """What a worker sends back for one work item: the timeline rows (``emolens analyze``'s columns)
    or the error that stopped it, and where and how it ran."""

    item: WorkItem
    width: int = 0
    height: int = 0
    fps: float = 0.0
    frames: int = 0  # frames of the source the item went through
    sampled: int = 0  # frames analysed
    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0
    node: str = ""
    peak_rss_mb: float = 0.0


def frame_step(fps: float, wanted: float | None) -> int:
    """Analyse every ``step``-th frame to get about ``wanted`` frames per second (1: all)."""
    return 1 if wanted is None else max(1, round(fps / wanted))


def sampled_frames(cap: cv2.VideoCapture, start: int, stop: int | None, step: int
                   ) -> Iterator[tuple[int, np.ndarray | None]]:
    """(frame number, BGR frame) for the frames of ``[start, stop)`` that are multiples of ``step``;
    (frame number, None) for the frames passed over, which are grabbed but not converted."""
    if start:
        cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    index = start
    while stop is None or index < stop:
        if index % step == 0:
            ok, frame = cap.read()
        else:
            ok, frame = cap.grab(), None
        if not ok:
            return
        yield index, frame
        index += 1


def analyze_video_range(recognizer: Recognizer, item: WorkItem, options: BatchOptions, out: ItemResult) -> None:
    """Fill ``out`` with the timeline of the item's frames (tracking starts afresh with the range)."""
    path = item.source.path
    cap = open_capture(path)
    try:
        declared = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if min(declared) > 0:
            check_pixels(*declared, f"{path} (frame size)", options.max_pixels)
        out.fps = capture_fps(cap)
        step = frame_step(out.fps, options.fps)
        analyzer = StreamAnalyzer(recognizer, options.detect_every, options.smoothing)
        video = VideoResult(path, *declared, out.fps, recognizer.classes)
        for index, frame in sampled_frames(cap, item.start, item.stop, step):
            out.frames += 1
            if frame is None:
                continue
            if video.processed == 0:
                check_pixels(frame.shape[1], frame.shape[0], f"{path} (frame size)", options.max_pixels)
                video.width, video.height = frame.shape[1], frame.shape[0]
            video.add_frame(index, index / out.fps, analyzer.process(frame))
    finally:
        cap.release()
    if video.processed == 0 and item.start == 0:
        raise InputError(f"{path}: no frame could be read (empty or broken video)")
    out.width, out.height, out.sampled, out.rows = video.width, video.height, video.processed, video.timeline


def analyze_item(recognizer: Recognizer, item: WorkItem, options: BatchOptions) -> ItemResult:
    """Analyse one work item; any failure is the result's ``error`` (one bad file never stops the run)."""
    out = ItemResult(item, node=socket.gethostname())
    started = time.perf_counter()
    try:
        if item.source.kind == "video":
            analyze_video_range(recognizer, item, options, out)
        else:
            image = recognizer.analyze_batch([item.source.path], sources=[item.source.path])[0]
            out.width, out.height, out.frames, out.sampled = image.width, image.height, 1, 1
            out.rows = [{"time_s": None, "frame": 0, **{k: v for k, v in r.items() if k != "source"}}
                        for r in image.to_rows()]
    except (InputError, OSError) as e:
        out.error = str(e)
    except Exception as e:  # noqa: BLE001  (a decoder or model failure on one file: recorded, the run goes on)
        out.error = f"{item.source.path}: {type(e).__name__}: {e}"
    out.elapsed_s = round(time.perf_counter() - started, 3)
    out.peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def merge(parts: list[ItemResult], classes: tuple[str, ...]) -> tuple[VideoResult, ItemResult]:
    """A source's parts (in frame order) as one timeline; face ids of later parts are renumbered
    after those of earlier ones (tracking restarts at each range), and the first error wins."""
    parts = sorted(parts, key=lambda p: p.item.part)
    first = parts[0]
    total = ItemResult(first.item, first.width, first.height, first.fps,
                       sum(p.frames for p in parts), sum(p.sampled for p in parts),
                       error=next((p.error for p in parts if p.error), None),
                       elapsed_s=round(sum(p.elapsed_s for p in parts), 3),
                       node=",".join(sorted({p.node for p in parts})), peak_rss_mb=max(p.peak_rss_mb for p in parts))
    video = VideoResult(first.item.source.path, first.width, first.height, first.fps, classes,
                        frames=total.frames, processed=total.sampled)
    ids: dict[tuple[int, Any], int] = {}
    for p in parts:
        for row in p.rows:
            if len(parts) > 1 and row["face_id"] is not None:
                row = {**row, "face_id": ids.setdefault((p.item.part, row["face_id"]), len(ids))}
            video.timeline.append(row)
    return video, total


def worker_threads(cpus: float) -> int:
    """ONNX Runtime and OpenCV threads for a worker granted ``cpus`` cores (at least 1)."""
    return max(1, int(cpus))


def pin_threads(threads: int) -> None:
    """Keep this process to ``threads`` compute threads (ONNX Runtime sessions made after this
    call, OpenCV), so workers sharing a machine do not oversubscribe its cores."""
    os.environ["EMOLENS_THREADS"] = str(threads)
    cv2.setNumThreads(threads)
