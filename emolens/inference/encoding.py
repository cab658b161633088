"""Writing annotated video: H.264 in MP4 through PyAV, the source's audio track copied along."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from emolens.inference.capture import opencv_path

#: Audio codecs an MP4 file can hold as they are (copied without re-encoding); another codec
#: (e.g. WebM's Vorbis) leaves the annotated video silent.
MP4_AUDIO = frozenset({"aac", "mp3", "mp3float", "ac3", "eac3", "alac", "opus", "flac"})


def has_pyav() -> bool:
    """Whether PyAV (the ``[video]`` extra) is installed."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class _AudioCopy:
    """The first audio track of a source file, copied packet by packet into an output container up
    to a given time (so a video cut short by a frame limit keeps only the matching sound)."""

    def __init__(self, out: Any, source: str):
        import av

        self._input = av.open(source)
        try:
            stream = self._input.streams.audio[0] if self._input.streams.audio else None
            if stream is None or stream.codec_context.name not in MP4_AUDIO:
                raise LookupError("no audio track an MP4 file can hold")
            self._stream = out.add_stream_from_template(stream)
        except BaseException:
            self._input.close()
            raise
        self._packets: Iterator[Any] = self._input.demux(stream)
        self._pending: Any = None

    def mux_until(self, out: Any, time_s: float | None) -> None:
        """Mux the packets that start before ``time_s`` (all remaining ones for None)."""
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            if packet.dts is None or packet.pts is None:  # the demuxer's flush packet
                continue
            if time_s is not None and packet.pts * packet.time_base >= time_s:
                self._pending = packet
                return
            packet.stream = self._stream
            out.mux(packet)

    def close(self) -> None:
        self._input.close()


class VideoWriter:
    """An annotated-video file: H.264 in MP4 (browsers play it) through PyAV when it is installed
    (the ``[video]`` extra), else OpenCV's MPEG-4 Part 2 (``mp4v``), which OpenCV's wheels can write
    fast but browsers do not play. (OpenCV's wheels also write VP8/VP9 WebM, at 75-450 ms a
    640×480 frame here: too slow for live video.) Frames are encoded on a worker thread, a few
    behind :meth:`write`; an encoding error is raised by the next :meth:`write` or by :meth:`close`.

    ``audio_from``: a video file whose audio track (AAC, MP3, ...: :data:`MP4_AUDIO`) is copied
    into the output, as long as the frames written last (H.264 output only; a source without
    usable audio gives a silent video).
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], audio_from: str | Path | None = None):
        self.path = Path(path)
        self.codec = "h264" if has_pyav() else "mp4v"
        self.fps = fps
        self.frames = 0
        self._audio: _AudioCopy | None = None
        width, height = size
        self._names = ExitStack()  # the usable file names stay valid until close (faststart reopens the file)
        name = self._names.enter_context(opencv_path(self.path))
        if self.codec == "h264":
            self._open_h264(name, fps, width, height, audio_from)
        else:
            self._cv = cv2.VideoWriter(name, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
            if not self._cv.isOpened():
                self._names.close()
                raise OSError(f"cannot write video {self.path}")
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=4)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="emolens-video-writer")
        self._thread.start()

    def _open_h264(self, name: str, fps: float, width: int, height: int, audio_from: str | Path | None) -> None:
        import av

        self._out = av.open(name, "w", format="mp4", options={"movflags": "+faststart"})
        self._stream = self._out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001),
                                            options={"preset": "ultrafast", "crf": "23"})
        self._stream.width, self._stream.height = width + width % 2, height + height % 2
        self._stream.pix_fmt = "yuv420p"
        if audio_from is not None:
            try:
                self._audio = _AudioCopy(self._out, self._names.enter_context(opencv_path(audio_from)))
            except (LookupError, av.FFmpegError, OSError):
                self._audio = None  # no usable audio track: the annotated video is silent

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
        self.frames += 1
        if self._audio is not None:
            self._audio.mux_until(self._out, self.frames / self.fps)

    def close(self) -> None:
        """Encode what is queued, flush and close the file."""
        self._queue.put(None)
        self._thread.join()
        with self._names:
            if self._error is not None:
                raise self._error
            if self.codec == "mp4v":
                self._cv.release()
                return
            try:
                for packet in self._stream.encode():
                    self._out.mux(packet)
                if self._audio is not None:
                    self._audio.mux_until(self._out, self.frames / self.fps)
            finally:
                if self._audio is not None:
                    self._audio.close()
                self._out.close()
