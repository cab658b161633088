"""Where video frames come from: cameras, video files and stream URLs.

A video file is read frame by frame (none dropped). A camera or network stream is read by a
background thread that keeps only the newest frame, so a slow consumer drops frames instead of
falling behind. :class:`Prefetch` runs a frame source a step ahead on a worker thread.
"""

from __future__ import annotations

import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from emolens.errors import InputError

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

    :func:`~emolens.inference.video.iter_video_frames` decodes and detects the next frame this way while the calling thread
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


def capture_fps(cap: cv2.VideoCapture) -> float:
    """The frame rate a capture declares, or :data:`FALLBACK_FPS` when it declares none usable."""
    fps = cap.get(cv2.CAP_PROP_FPS)
    return fps if fps and 1.0 <= fps <= 240.0 else FALLBACK_FPS
