"""Videos and cameras: a loop that yields each frame's faces, and the outputs that consume it.

:func:`iter_video_frames` reads a source (:mod:`~emolens.inference.capture`), runs every frame
through one :class:`~emolens.inference.stream.StreamAnalyzer` (detection every k-th frame, stable
ids, smoothing) and yields a :class:`VideoFrame` per frame, as ultralytics' ``predict(stream=True)``
does. :func:`analyze_video` consumes it into a :class:`~emolens.inference.results.VideoResult`
timeline, an annotated video (:mod:`~emolens.inference.encoding`) and per-frame callbacks; the
report files come from :mod:`~emolens.inference.report`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from emolens.errors import InputError
from emolens.files import atomic_path
from emolens.images import check_pixels
from emolens.inference.annotate import annotate
from emolens.inference.capture import Prefetch, Source, capture_fps, is_camera, is_realtime, iter_frames, open_capture
from emolens.inference.detectors import Detection
from emolens.inference.encoding import VideoWriter
from emolens.inference.recognizer import Recognizer
from emolens.inference.results import FaceResult, VideoResult
from emolens.inference.stream import StreamAnalyzer
from emolens.inference.tracking import DEFAULT_SMOOTHING


@dataclass
class VideoFrame:
    """One analysed frame: where it is in the source, the BGR image, and its faces (stable ids)."""

    source: str
    index: int  # frame number in the source (live sources skip the frames the consumer missed)
    time_s: float
    fps: float  # the source's frame rate
    image: np.ndarray = field(repr=False)  # BGR, as OpenCV reads it
    faces: list[FaceResult] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.shape[1], self.image.shape[0]

    def plot(self, bars: bool = True) -> np.ndarray:
        """A BGR copy of the frame with its faces drawn (:func:`~emolens.inference.annotate.annotate`)."""
        return annotate(self.image, self.faces, bars=bars)


def source_name(source: Source) -> str:
    """How messages and results name ``source``: ``camera 0``, or the file or URL."""
    return f"camera {source}" if is_camera(source) else str(source)


def _detected(frames: Iterator[tuple[int, float, np.ndarray]], analyzer: StreamAnalyzer,
              ) -> Iterator[tuple[int, float, np.ndarray, np.ndarray, list[Detection] | None]]:
    """(frame number, time, BGR frame, RGB frame, its detections or None) per frame: the half of
    the per-frame work that runs ahead (:class:`~emolens.inference.capture.Prefetch`)."""
    with closing(frames):
        for index, time_s, frame in frames:
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            yield index, time_s, frame, rgb, analyzer.detect(rgb)


def iter_video_frames(recognizer: Recognizer, source: Source, *, detect_every: int = 1,
                      smoothing: float = DEFAULT_SMOOTHING, max_pixels: int | None = None,
                      paced: bool = False) -> Iterator[VideoFrame]:
    """Each frame of a video file, camera index or stream URL, with its faces.

    The next frame is decoded and detected on a worker thread while the caller handles this one
    (ONNX Runtime and OpenCV release the GIL, so both cores work). ``paced``: a file plays at its
    own frame rate instead of as fast as it is consumed. Frames over ``max_pixels`` (default: the
    recognizer's image limit) raise LimitError, from the container's header when it gives the size,
    before a frame is decoded. A source without a single readable frame raises InputError. Close
    the generator (or exhaust it) to release the source.
    """
    max_pixels = recognizer.max_pixels if max_pixels is None else max_pixels
    name = source_name(source)
    cap = open_capture(source)
    try:
        declared = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if min(declared) > 0:
            check_pixels(*declared, f"{name} (frame size)", max_pixels)
        fps = capture_fps(cap)
        analyzer = StreamAnalyzer(recognizer, detect_every, smoothing)
        checked = False
        with closing(Prefetch(_detected(iter_frames(cap, is_realtime(source), fps, paced), analyzer))) as stream:
            for index, time_s, frame, rgb, detections in stream:
                if not checked:
                    check_pixels(frame.shape[1], frame.shape[0], f"{name} (frame size)", max_pixels)
                    checked = True
                yield VideoFrame(name, index, time_s, fps, frame, analyzer.update(rgb, detections))
        if not checked:
            raise InputError(f"{name}: no frame could be read (empty or broken video)")
    finally:
        cap.release()


#: ``on_frame(annotated_bgr, faces, frame_number)``: called for every frame; False stops the loop.
FrameCallback = Callable[[np.ndarray, list[FaceResult], int], bool]


def analyze_video(recognizer: Recognizer, source: Source, annotate_to: str | Path | None = None, *,
                  detect_every: int = 1, smoothing: float = DEFAULT_SMOOTHING, max_pixels: int | None = None,
                  paced: bool = False, max_frames: int | None = None, max_seconds: float | None = None,
                  on_frame: FrameCallback | None = None,
                  on_progress: Callable[[int], None] | None = None) -> VideoResult:
    """Analyse a video file, camera index or stream URL (:func:`iter_video_frames`) into a timeline.

    ``annotate_to``: also write the annotated video there (H.264 with the source's audio:
    :class:`~emolens.inference.encoding.VideoWriter`). ``on_frame`` gets every annotated frame
    (the live window; it may draw on it) and may return False to stop; ``on_progress(1)`` is called
    after each frame. The loop stops at ``max_frames`` analysed frames or at ``max_seconds`` of
    video; Ctrl-C stops a live source and keeps what it recorded. A video without faces gives an
    empty timeline.
    """
    frames = iter_video_frames(recognizer, source, detect_every=detect_every, smoothing=smoothing,
                               max_pixels=max_pixels, paced=paced)
    result: VideoResult | None = None
    writer: VideoWriter | None = None
    audio = None if is_realtime(source) else source
    with atomic_path(annotate_to) if annotate_to is not None else nullcontext(None) as tmp, closing(frames):
        try:
            for frame in frames:
                if result is None:
                    result = VideoResult(frame.source, *frame.size, frame.fps, recognizer.classes)
                    writer = VideoWriter(tmp, frame.fps, frame.size, audio_from=audio) if tmp is not None else None
                result.add_frame(frame.index, frame.time_s, frame.faces)
                if on_progress is not None:
                    on_progress(1)
                if not _consume(frame, writer, on_frame):
                    break
                if (max_frames is not None and result.processed >= max_frames) or \
                        (max_seconds is not None and frame.time_s >= max_seconds):
                    break
        except KeyboardInterrupt:
            if not is_realtime(source):
                raise  # a live stream stops on Ctrl-C and keeps what it recorded
        finally:
            if writer is not None:
                writer.close()
        if result is None:  # a live source interrupted before its first frame
            raise InputError(f"{source_name(source)}: no frame could be read")
    return result


def _consume(frame: VideoFrame, writer: VideoWriter | None, on_frame: FrameCallback | None) -> bool:
    """Hand the annotated frame to the video file and the callback; False when the callback stops."""
    if writer is None and on_frame is None:
        return True
    shown = frame.plot()
    if writer is not None:
        writer.write(shown.copy() if on_frame is not None else shown)  # the callback may draw on its copy
    return on_frame is None or on_frame(shown, frame.faces, frame.index) is not False
