"""``emolens live``: recognition on a camera, a video file or a stream URL.

With a window: boxes, labels, probability bars and FPS on screen; ``q`` (or Esc) quits, ``s``
saves a snapshot. With ``window=False`` (headless) the annotated video and the timeline are
written to ``out_dir`` instead. A camera is read on its own thread and only the newest frame is
processed, so the loop never falls behind the camera; a file is processed frame by frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emolens.errors import ConfigError, InputError
from emolens.inference.annotate import draw_fps, save_image
from emolens.inference.capture import is_camera, is_realtime
from emolens.inference.recognizer import Recognizer
from emolens.inference.report import write_video_outputs
from emolens.inference.results import FaceResult, VideoResult
from emolens.inference.tracking import DEFAULT_SMOOTHING
from emolens.inference.video import analyze_video

WINDOW = "emolens live (q quits, s saves a snapshot)"


@dataclass
class LiveRun:
    """What a live session produced."""

    result: VideoResult
    outputs: dict[str, Path]
    wall_s: float

    @property
    def processed_fps(self) -> float:
        return self.result.processed / self.wall_s if self.wall_s else 0.0


def source_stem(source: str | int) -> str:
    """A file-name stem for snapshots of ``source``: ``camera0`` or the video file's stem."""
    return f"camera{source}" if is_camera(source) else Path(str(source)).stem or "stream"


class _CvWindow:
    """OpenCV's own window (opencv-python builds with a GUI)."""

    def __init__(self) -> None:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)

    def show(self, frame: np.ndarray) -> str:
        cv2.imshow(WINDOW, frame)
        key = cv2.waitKey(1) & 0xFF
        return "" if key == 255 else chr(key)

    def close(self) -> None:
        cv2.destroyAllWindows()


class _TkWindow:
    """A tkinter window (standard library) for the default headless OpenCV build, which has no GUI."""

    def __init__(self) -> None:
        import tkinter as tk

        self.root = tk.Tk()
        self.root.title(WINDOW)
        self.label = tk.Label(self.root)
        self.label.pack()
        self.keys: list[str] = []
        self.root.bind("<Key>", lambda event: self.keys.append(event.char))
        self.root.protocol("WM_DELETE_WINDOW", lambda: self.keys.append("q"))

    def show(self, frame: np.ndarray) -> str:
        from PIL import Image, ImageTk

        photo = ImageTk.PhotoImage(Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        self.label.configure(image=photo)
        self.label.image = photo  # tkinter keeps no reference of its own
        self.root.update()
        return self.keys.pop(0) if self.keys else ""

    def close(self) -> None:
        self.root.destroy()


def _open_window() -> _CvWindow | _TkWindow:
    try:
        return _CvWindow()
    except cv2.error:
        pass  # headless OpenCV: fall back to tkinter
    try:
        return _TkWindow()
    except Exception as e:  # no tkinter, or no display to open a window on
        raise InputError(f"cannot open a window ({e}): run with --no-window to write the annotated video instead") from e


def run_live(recognizer: Recognizer, source: str | int = 0, out_dir: str | Path | None = None, window: bool = True,
             detect_every: int = 1, smoothing: float = DEFAULT_SMOOTHING, max_frames: int | None = None,
             max_seconds: float | None = None, fast: bool = False) -> LiveRun:
    """Run the loop until the source ends, ``q`` is pressed, Ctrl-C (live sources) or a limit is hit.

    In a window a video file plays at its own frame rate (``fast=True``: as fast as frames are
    processed) and, when it ends, its last frame stays until the user quits. Headless runs
    (``window=False``) go flat out and need ``out_dir``: they write ``<stem>.mp4`` (annotated) and
    the timeline files of :func:`~emolens.inference.report.write_video_outputs` there.
    """
    if not window and out_dir is None:
        raise ConfigError("a headless run (no window) needs an output folder for the annotated video and timeline")
    stem = source_stem(source)
    out = Path(out_dir) if out_dir is not None else None
    viewer = _open_window() if window else None
    try:
        screen = WindowLoop(viewer, out or Path.cwd(), stem) if viewer else None
        start = time.perf_counter()
        result = analyze_video(recognizer, source, annotate_to=out / f"{stem}.mp4" if out else None,
                               detect_every=detect_every, smoothing=smoothing, max_frames=max_frames,
                               max_seconds=max_seconds, on_frame=screen, paced=window and not fast)
        wall = time.perf_counter() - start
        outputs = write_video_outputs(result, out, stem) if out else {}
        if out:
            outputs["video"] = out / f"{stem}.mp4"
        limited = (max_frames is not None and result.processed >= max_frames) or \
            (max_seconds is not None and result.duration_s >= max_seconds)
        if screen is not None and not screen.quit and not limited and not is_realtime(source):
            print("end of the video: its last frame stays until you press q (or close the window)")
            screen.hold()
    finally:
        if viewer:
            viewer.close()
    return LiveRun(result, outputs, wall)


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


class WindowLoop:
    """The window side of the loop: shows frames with the processing rate (never written to the
    annotated file), saves snapshots on ``s``, stops on ``q`` or Esc."""

    def __init__(self, viewer: _CvWindow | _TkWindow, snapshot_dir: Path, stem: str):
        self.viewer = viewer
        self.snapshot_dir = snapshot_dir
        self.stem = stem
        self.quit = False
        self.last: tuple[np.ndarray, int] | None = None
        self.meter = FpsMeter()

    def __call__(self, frame: np.ndarray, faces: list[FaceResult], index: int) -> bool:
        """Show one frame; False once the user quits."""
        if (rate := self.meter.tick()) is not None:
            draw_fps(frame, rate)
        self.last = (frame, index)
        self._key(self.viewer.show(frame), frame, index)
        return not self.quit

    def _key(self, key: str, frame: np.ndarray, index: int) -> None:
        if key == "s":
            path = save_image(frame, self.snapshot_dir / f"{self.stem}-snapshot-{index:06d}.jpg")
            print(f"snapshot saved: {path}")
        self.quit = self.quit or key in ("q", "\x1b")

    def hold(self, poll_s: float = 0.03) -> None:
        """Keep showing the last frame until the user quits (``s`` still saves it)."""
        if self.last is None:
            return
        frame, index = self.last
        while not self.quit:
            self._key(self.viewer.show(frame), frame, index)
            time.sleep(poll_s)
