"""Videos and cameras: per-frame recognition with tracking, timelines, summaries, plots, annotated video.

A video file is analysed frame by frame (none dropped). A camera or network stream is read by a
background thread that keeps only the newest frame, so a slow consumer drops frames instead of
falling behind. Detection may run every k-th frame; in between, the previous boxes are carried
and re-classified, and the tracker keeps the ids.
"""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager, nullcontext
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import cv2
import numpy as np

from emolens.errors import InputError
from emolens.figures import figure_bytes, new_figure, save_figure
from emolens.files import atomic_path, write_text
from emolens.images import check_pixels
from emolens.inference.annotate import annotate, draw_fps
from emolens.inference.detectors import Detection
from emolens.inference.recognizer import Recognizer
from emolens.inference.results import FaceResult, VideoResult
from emolens.inference.stream import StreamAnalyzer
from emolens.inference.tracking import DEFAULT_SMOOTHING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

T = TypeVar("T")
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})
FALLBACK_FPS = 30.0

Source = str | int | Path


def is_camera(source: Source) -> bool:
    """True for a camera index (``0`` or ``"0"``), False for files and URLs."""
    return isinstance(source, int) or (isinstance(source, str) and source.isdigit())


def is_realtime(source: Source) -> bool:
    """Cameras and network streams run in real time (frames are dropped); files do not."""
    return is_camera(source) or (isinstance(source, str) and "://" in source)


def _is_utf8(text: str) -> bool:
    """False for names holding undecodable bytes (``os.fsdecode`` surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextmanager
def opencv_path(path: str | Path) -> Iterator[str]:
    """``path`` as a str OpenCV can take: itself, or, when the name is not valid UTF-8 (which
    crashes OpenCV's Python binding), a symlink to it in a temporary folder while in the block."""
    text = str(path)
    if not _is_utf8(text):
        suffix = Path(text).suffix if Path(text).suffix.isascii() else ""
        with tempfile.TemporaryDirectory(prefix="emolens-") as tmp:
            link = os.path.join(tmp, f"file{suffix}")
            os.symlink(os.path.abspath(text), link)
            yield link
        return
    yield text


def open_capture(source: Source) -> cv2.VideoCapture:
    """Open a camera index, a video file or a stream URL; InputError when it cannot be read."""
    if is_camera(source):
        cap = cv2.VideoCapture(int(source))
        if not cap.isOpened():
            raise InputError(f"camera {source}: cannot be opened (no such camera, or it is in use)")
        return cap
    if is_realtime(source):
        if not _is_utf8(str(source)):
            raise InputError(f"{source!r}: not a usable stream URL")
        cap = cv2.VideoCapture(str(source))
    else:
        try:
            if not Path(source).is_file():
                raise InputError(f"{source}: no such video file")
        except OSError as e:  # a name too long, no permission on a parent folder
            raise InputError(f"{source}: cannot be read: {e.strerror or e}") from None
        with opencv_path(source) as name:
            cap = cv2.VideoCapture(name)
    if not cap.isOpened():
        raise InputError(f"{source}: not a readable video (expected a file such as .mp4/.avi or a stream URL)")
    return cap


def frame_count(path: str | Path) -> int | None:
    """Frames a video file declares in its header (None when unknown or unreadable)."""
    try:
        cap = open_capture(path)
    except InputError:
        return None
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        cap.release()
    return count if count > 0 else None


class LatestFrameReader:
    """Reads a live capture on a thread; :meth:`read` returns the newest frame, waiting for a new one."""

    def __init__(self, cap: cv2.VideoCapture):
        self.cap = cap
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._index = -1
        self._taken = -1
        self._done = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            ok, frame = self.cap.read()
            with self._cond:
                if not ok or self._done:
                    self._done = True
                    self._cond.notify_all()
                    return
                self._frame, self._index = frame, self._index + 1
                self._cond.notify_all()

    def read(self) -> tuple[int, np.ndarray] | None:
        """(frame number, BGR frame) of the newest unseen frame, or None when the stream ended."""
        with self._cond:
            self._cond.wait_for(lambda: self._done or self._index > self._taken)
            if self._index <= self._taken:
                return None
            self._taken = self._index
            return self._index, self._frame

    def close(self) -> None:
        with self._cond:
            self._done = True
        self._thread.join(timeout=2)


def iter_frames(cap: cv2.VideoCapture, realtime: bool, fps: float,
                paced: bool = False) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame number, time in seconds, BGR frame); live sources skip frames the consumer missed.

    ``paced``: a file's frames are delivered no faster than its frame rate (playback speed).
    """
    if not realtime:
        index = 0
        start = time.perf_counter()
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            if paced and (wait := start + index / fps - time.perf_counter()) > 0:
                time.sleep(wait)
            yield index, index / fps, frame
            index += 1
    reader = LatestFrameReader(cap)
    start = time.perf_counter()
    try:
        while (item := reader.read()) is not None:
            yield item[0], time.perf_counter() - start, item[1]
    finally:
        reader.close()


class Prefetch(Iterator[T]):
    """``items`` produced on a worker thread, up to ``depth`` ahead of the consumer. Exceptions
    reach the consumer; :meth:`close` stops the worker and closes ``items`` (a generator).

    :func:`analyze_video` decodes and detects the next frame this way while the calling thread
    classifies, draws and shows the current one, so the two halves use both cores (ONNX Runtime
    and OpenCV release the GIL).
    """

    _END = object()

    def __init__(self, items: Iterator[T], depth: int = 1):
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="emolens-prefetch")
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put((item, None)):
                    return
            self._put((self._END, None))
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._put((self._END, e))
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()

    def _put(self, entry: tuple[object, BaseException | None]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> T:
        if self._stop.is_set():
            raise StopIteration
        item, error = self._queue.get()
        if item is self._END:
            self._stop.set()
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the worker (it finishes the item it is on) and wait for it up to ``timeout_s``."""
        self._stop.set()
        self._thread.join(timeout_s)


def _detected(frames: Iterator[tuple[int, float, np.ndarray]], analyzer: StreamAnalyzer,
              ) -> Iterator[tuple[int, float, np.ndarray, np.ndarray, list[Detection] | None]]:
    """(frame number, time, BGR frame, RGB frame, its detections or None) per frame: the half of
    the per-frame work that runs ahead (:class:`Prefetch`)."""
    with closing(frames):
        for index, time_s, frame in frames:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            yield index, time_s, frame, rgb, analyzer.detect(rgb)


class VideoWriter:
    """An annotated-video file: H.264 in MP4 (browsers play it) through PyAV when it is installed
    (the ``[video]`` extra), else OpenCV's MPEG-4 Part 2 (``mp4v``), which OpenCV's wheels can write
    fast but browsers do not play. (OpenCV's wheels also write VP8/VP9 WebM, at 75-450 ms a
    640×480 frame here: too slow for live video.) Frames are encoded on a worker thread, a few
    behind :meth:`write`; an encoding error is raised by the next :meth:`write` or by :meth:`close`.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]):
        self.path = Path(path)
        self.codec = "h264" if _has_pyav() else "mp4v"
        width, height = size
        self._name = ExitStack()  # the usable file name stays valid until close (faststart reopens it)
        name = self._name.enter_context(opencv_path(self.path))
        if self.codec == "h264":
            import av

            self._out = av.open(name, "w", format="mp4", options={"movflags": "+faststart"})
            self._stream = self._out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                                options={"preset": "ultrafast", "crf": "23"})
            self._stream.width, self._stream.height = width + width % 2, height + height % 2
            self._stream.pix_fmt = "yuv420p"
        else:
            self._cv = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not self._cv.isOpened():
                self._name.close()
                raise OSError(f"cannot write video {self.path}")
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="emolens-video-writer")
        self._thread.start()

    def write(self, frame_bgr: np.ndarray) -> None:
        """Append one BGR frame (the size given at creation); the caller must not change it afterwards."""
        if self._error is not None:
            raise self._error
        self._queue.put(frame_bgr)

    def _run(self) -> None:
        while (frame := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._encode(frame)
                except BaseException as e:  # raised in the caller's thread by write() or close()
                    self._error = e

    def _encode(self, frame_bgr: np.ndarray) -> None:
        if self.codec == "mp4v":
            self._cv.write(frame_bgr)
            return
        import av

        h, w = frame_bgr.shape[:2]
        if (w, h) != (self._stream.width, self._stream.height):  # yuv420p needs even sizes
            frame_bgr = cv2.copyMakeBorder(frame_bgr, 0, self._stream.height - h, 0, self._stream.width - w,
                                           cv2.BORDER_REPLICATE)
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame_bgr, format="bgr24")):
            self._out.mux(packet)

    def close(self) -> None:
        """Encode what is queued, flush and close the file."""
        self._queue.put(None)
        self._thread.join()
        with self._name:
            if self._error is not None:
                raise self._error
            if self.codec == "mp4v":
                self._cv.release()
                return
            for packet in self._stream.encode():
                self._out.mux(packet)
            self._out.close()


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class FpsMeter:
    """Frames per second of the processing loop, exponentially smoothed."""

    def __init__(self, smoothing: float = 0.9):
        self.smoothing = smoothing
        self.fps: float | None = None
        self._last: float | None = None

    def tick(self) -> float | None:
        now = time.perf_counter()
        if self._last is not None and now > self._last:
            rate = 1.0 / (now - self._last)
            self.fps = rate if self.fps is None else self.smoothing * self.fps + (1 - self.smoothing) * rate
        self._last = now
        return self.fps


FrameCallback = Callable[[np.ndarray, list[FaceResult], int], bool]


def analyze_video(recognizer: Recognizer, source: Source, annotate_to: str | Path | None = None,
                  detect_every: int = 1, max_frames: int | None = None,
                  max_seconds: float | None = None, bars: bool = True, show_fps: bool = False,
                  on_frame: FrameCallback | None = None, max_pixels: int | None = None, paced: bool = False,
                  on_progress: Callable[[int], None] | None = None, *,
                  smoothing: float = DEFAULT_SMOOTHING) -> VideoResult:
    """Analyse a video file, camera index or stream URL.

    Frames go through a :class:`~emolens.inference.stream.StreamAnalyzer` (``detect_every``,
    ``smoothing``). ``annotate_to``: write the annotated video there (see :class:`VideoWriter`).
    ``on_frame(annotated_bgr, faces, frame_number)`` is called for every processed frame and may
    return False to stop (live window); ``show_fps`` draws the processing rate on those frames
    only, never in the file. ``paced``: a video file plays at its own frame rate instead of as
    fast as it can be processed. ``on_progress(1)`` is called after each processed frame.
    Frames over ``max_pixels`` (default: the recognizer's image limit) raise LimitError, from the
    container's header when it gives the size, before a frame is decoded. A source without a
    single readable frame raises InputError; a video without faces gives an empty timeline.
    """
    max_pixels = recognizer.max_pixels if max_pixels is None else max_pixels
    name = f"camera {source}" if is_camera(source) else str(source)
    cap = open_capture(source)
    realtime = is_realtime(source)
    try:
        declared = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if min(declared) > 0:
            check_pixels(*declared, f"{name} (frame size)", max_pixels)
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and 1.0 <= fps <= 240.0 else FALLBACK_FPS
        analyzer = StreamAnalyzer(recognizer, detect_every, smoothing)
        meter = FpsMeter()
        result: VideoResult | None = None
        writer: VideoWriter | None = None
        stream = Prefetch(_detected(iter_frames(cap, realtime, fps, paced), analyzer))
        with atomic_path(annotate_to) if annotate_to is not None else nullcontext(None) as tmp, closing(stream):
            try:
                for index, time_s, frame, rgb, detections in stream:
                    if result is None:
                        h, w = frame.shape[:2]
                        check_pixels(w, h, f"{name} (frame size)", max_pixels)
                        result = VideoResult(name, w, h, fps, recognizer.classes)
                        if tmp is not None:
                            writer = VideoWriter(tmp, fps, (w, h))
                    faces = analyzer.update(rgb, detections)
                    result.add_frame(index, time_s, faces)
                    if on_progress is not None:
                        on_progress(1)
                    if writer is not None or on_frame is not None:
                        shown = annotate(frame, faces, bars=bars)
                        if writer is not None:
                            writer.write(shown.copy() if on_frame is not None else shown)
                        if on_frame is not None:
                            if show_fps and (rate := meter.tick()) is not None:
                                draw_fps(shown, rate)
                            if on_frame(shown, faces, index) is False:
                                break
                    if (max_frames is not None and result.processed >= max_frames) or \
                            (max_seconds is not None and time_s >= max_seconds):
                        break
            except KeyboardInterrupt:
                if not realtime:
                    raise  # a live stream stops on Ctrl-C and keeps what it recorded
            finally:
                if writer is not None:
                    writer.close()
            if result is None:
                raise InputError(f"{name}: no frame could be read (empty or broken video)")
        return result
    finally:
        cap.release()


def timeline_figure(result: VideoResult, max_faces: int = 8) -> Figure:
    """One panel per face (the ``max_faces`` seen longest): each class's probability over time."""
    from emolens.inference.annotate import COLORS

    longest = sorted(result.summary(), key=lambda s: -s["frames"])[:max_faces]
    face_ids = sorted(s["face_id"] for s in longest) or [None]
    fig = new_figure(figsize=(9, 2.2 * len(face_ids) + 0.6), layout="constrained")
    axes = fig.subplots(len(face_ids), 1, squeeze=False)[:, 0]
    for ax, face_id in zip(axes, face_ids):
        rows = [r for r in result.timeline if r["face_id"] == face_id]
        t = [r["time_s"] for r in rows]
        for c in result.classes:
            b, g, r_ = COLORS.get(c, (128, 128, 128))
            ax.plot(t, [r[f"p_{c}"] for r in rows], label=c, color=(r_ / 255, g / 255, b / 255), lw=1.4)
        ax.set_ylim(0, 1)
        ax.set_xlim(0, max(result.duration_s, 1e-3))
        ax.set_ylabel("probability")
        ax.set_title(f"face #{face_id}" if rows else "no face found", fontsize=10)
    axes[-1].set_xlabel("time (s)")
    axes[0].legend(loc="upper right", ncol=min(4, len(result.classes)), fontsize=8)
    title = Path(result.source).name if not result.source.startswith("camera") else result.source
    fig.suptitle(title.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))  # undecodable bytes → �
    return fig


def timeline_png(result: VideoResult, max_faces: int = 8) -> bytes:
    """:func:`timeline_figure` as PNG bytes."""
    return figure_bytes(timeline_figure(result, max_faces), format="png", dpi=100)


def plot_timeline(result: VideoResult, path: str | Path, max_faces: int = 8) -> Path:
    """:func:`timeline_figure` written to ``path`` as PNG (atomically)."""
    return save_figure(timeline_figure(result, max_faces), path, format="png", dpi=100)


def rows_to_csv(rows: list[dict], columns: list[str] | None = None) -> str:
    """CSV text for flat dict rows (columns: the given ones, else those of all rows in first-seen order)."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def timeline_csv(result: VideoResult) -> str:
    """The timeline as CSV text (columns: :meth:`VideoResult.columns`)."""
    return rows_to_csv(result.timeline, result.columns())


def summary_csv(result: VideoResult) -> str:
    """The per-face summary as CSV text: frames, first/last second, dominant emotion, ``median_age``
    (with age estimation) and each class's share of frames."""
    summary_rows = [{"face_id": s["face_id"], "frames": s["frames"], "first_s": s["first_s"], "last_s": s["last_s"],
                     "dominant": s["dominant"], **{k: s[k] for k in ("median_age",) if k in s},
                     **{f"share_{c}": v for c, v in s["share"].items()}}
                    for s in result.summary()]
    age = ["median_age"] if any("median_age" in r for r in summary_rows) else []
    summary_cols = ["face_id", "frames", "first_s", "last_s", "dominant", *age, *(f"share_{c}" for c in result.classes)]
    return rows_to_csv(summary_rows, summary_cols)


def write_video_outputs(result: VideoResult, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write ``<stem>.timeline.csv``, ``<stem>.json`` (summary and timeline), ``<stem>.summary.csv``
    and ``<stem>.timeline.png`` into ``out_dir`` (each atomically)."""
    out = Path(out_dir)
    return {
        "timeline_csv": write_text(out / f"{stem}.timeline.csv", timeline_csv(result)),
        "json": write_text(out / f"{stem}.json", json.dumps(result.to_dict(), indent=1)),
        "summary_csv": write_text(out / f"{stem}.summary.csv", summary_csv(result)),
        "plot": plot_timeline(result, out / f"{stem}.timeline.png"),
    }
