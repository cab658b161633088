"""Uploaded images and videos: checking what clients send (images are identified by decoding them,
never by name or type) and analysing it in the server's inference threads."""

from __future__ import annotations

import base64
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import cv2
from PIL import Image

from emolens.errors import InputError, LimitError
from emolens.inference.capture import VIDEO_SUFFIXES
from emolens.inference.report import summary_csv, timeline_csv, timeline_png
from emolens.inference.results import ImageResult
from emolens.inference.video import analyze_video

if TYPE_CHECKING:
    from emolens.apps.web.decoding import DecodePool
    from emolens.apps.web.server import Settings
    from emolens.inference.recognizer import Recognizer

#: Pillow formats recognised by their first bytes; a video upload starting like one is refused.
IMAGE_SIGNATURES = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM"})


def looks_like_image(head: bytes) -> bool:
    """True when the first bytes of a file are the signature of an image format emolens reads."""
    Image.init()
    return any(accept is not None and accept(head)
               for fmt, (_, accept) in Image.OPEN.items() if fmt in IMAGE_SIGNATURES)


def looks_like_video(head: bytes) -> bool:
    """True when the first bytes of a file are those of a video container (MP4/MOV, Matroska/WebM,
    AVI, MPEG, FLV, ASF)."""
    return (head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
            or head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3") or head[:3] == b"FLV"
            or head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"))


def keep_upload(directory: Path | None, data: bytes | Path, suffix: str) -> Path | None:
    """Copy an upload (bytes or a temp file) under ``directory`` with a generated name.

    Only used with ``--keep-uploads``; the client's file name never becomes a path.
    """
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{uuid.uuid4().hex}.{suffix.lower().lstrip('.')}"
    if isinstance(data, Path):
        shutil.copyfile(data, path)
    else:
        path.write_bytes(data)
    return path


def video_reply(recognizer: Recognizer, settings: Settings, upload: BinaryIO,
                name: str) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    """Analyze an uploaded video via a temp file (removed on return); returns the JSON and files."""
    head = upload.read(64 * 1024)
    upload.seek(0)
    if looks_like_image(head):
        raise InputError(f"{name}: this is an image; expected a video (use /api/v1/analyze for images)")
    with tempfile.TemporaryDirectory(prefix="emolens-web-") as tmp:
        path = Path(tmp) / "upload"
        with path.open("wb") as out:
            shutil.copyfileobj(upload, out)
        try:
            result = analyze_video(recognizer, path, detect_every=settings.detect_every, smoothing=settings.smoothing,
                                   max_seconds=settings.max_video_seconds, max_pixels=settings.max_pixels)
        except LimitError as exc:
            raise LimitError(str(exc).replace(str(path), name)) from None
        except InputError:
            raise InputError(f"{name}: not a readable video; expected MP4, AVI, MOV, MKV or WebM") from None
        suffix = Path(name).suffix.lower()
        keep_upload(settings.keep_uploads, path, suffix if suffix in VIDEO_SUFFIXES else "video")
    result.source = name
    files = {
        "timeline.png": ("image/png", timeline_png(result)),
        "timeline.csv": ("text/csv", timeline_csv(result).encode("utf-8", "backslashreplace")),
        "summary.csv": ("text/csv", summary_csv(result).encode("utf-8", "backslashreplace")),
    }
    return result.to_dict(), files


def image_reply(recognizer: Recognizer, decoder: DecodePool, settings: Settings, data: bytes, source: str,
                annotate: bool) -> dict[str, Any]:
    """Decode (in a child, within the time budget), check and analyze an uploaded image (optionally
    drawing the results on it); an unusable image raises an :class:`EmolensError` (400 or 413)."""
    if looks_like_video(data[:64]):
        raise InputError(f"{source}: this is a video; expected an image (use /api/v1/analyze-video for videos)")
    rgb, fmt = decoder.decode(data, settings.max_pixels, source)
    keep_upload(settings.keep_uploads, data, fmt)
    # decoded and checked once, by the decoder: straight to detection (analyze() would check it again)
    result = ImageResult(source, rgb.shape[1], rgb.shape[0], recognizer.classify(rgb, recognizer.detect(rgb)), rgb)
    reply = result.to_dict()
    if annotate:
        _, jpeg = cv2.imencode(".jpg", result.annotated(color="bgr"), [cv2.IMWRITE_JPEG_QUALITY, 85])
        reply["annotated_jpeg"] = base64.b64encode(jpeg.tobytes()).decode("ascii")
    return reply
