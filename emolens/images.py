"""Turn whatever the caller hands us (path, encoded bytes, numpy array, PIL image) into a uint8 RGB array.

This is the one place where encoded images are decoded: API, CLI, web server, dataset readers
and ``evaluate --detect`` alike, so training and serving see the same pixels (EXIF rotation
applied, transparency on white, 16-bit scaled by 1/257, the same pixel limit).
Grayscale, RGBA, palette and 16-bit images are converted. Decoding work is bounded before any
pixel is decoded: images larger than ``max_pixels`` are refused from their header
(decompression bombs), and so are JPEGs with more scans than their size justifies (a progressive
JPEG whose refinement scan is repeated thousands of times takes seconds to decode per megapixel).
Every failure is an :class:`InputError` naming the input.
"""

from __future__ import annotations

import io
import mmap
import os
import re
import stat
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import IO, Any, Literal

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emolens.errors import ConfigError, InputError, LimitError
from emolens.limits import MAX_PIXELS

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"})
IMAGE_FORMATS = "JPEG, PNG, WebP, BMP, GIF or TIFF"
#: JPEG scans accepted: ``JPEG_SCAN_PIXELS // pixels`` (16 passes over a 25-MP image), clamped
#: to [JPEG_MIN_SCANS, JPEG_MAX_SCANS]. Encoders write 1 (baseline) to about 10 (progressive).
JPEG_SCAN_PIXELS = 400_000_000
JPEG_MIN_SCANS = 16
JPEG_MAX_SCANS = 100
JPEG_MAX_MARKERS = 4096  # real files have a few dozen segments
_ENTROPY_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # the marker after a scan's entropy-coded data
_MARKER = re.compile(rb"\xff[^\x00\xff]")  # the next marker, past junk, stuffed zeros and fill bytes

#: Changes whenever decoding gives different pixels for the same file; dataset caches are keyed by it.
DECODER_VERSION = 1

Color = Literal["rgb", "bgr"]
ImageInput = str | os.PathLike | bytes | np.ndarray | Image.Image


def describe(image: Any) -> str:
    """A short name for an input, used in results and error messages."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, bytes):
        return f"<{len(image)} bytes>"
    if isinstance(image, np.ndarray):
        return f"<array {'x'.join(map(str, image.shape))} {image.dtype}>"
    if isinstance(image, Image.Image):
        return getattr(image, "filename", "") or f"<PIL {image.mode} {image.width}x{image.height}>"
    return f"<{type(image).__name__}>"


def check_pixels(width: int, height: int, name: str, max_pixels: int = MAX_PIXELS) -> None:
    """InputError for an image without pixels, LimitError for one over ``max_pixels``."""
    if width <= 0 or height <= 0:
        raise InputError(f"{name}: the image is {width}x{height} pixels; expected at least 1x1")
    if width * height > max_pixels:
        raise LimitError(
            f"{name}: {width}x{height} = {width * height / 1e6:.1f} megapixels is over the limit of "
            f"{max_pixels / 1e6:.1f} megapixels (raise it with --max-pixels, or max_pixels= in Python)"
        )


def jpeg_scan_limit(pixels: int) -> int:
    """How many scans a JPEG of ``pixels`` pixels may have (see ``JPEG_SCAN_PIXELS``)."""
    return max(JPEG_MIN_SCANS, min(JPEG_MAX_SCANS, JPEG_SCAN_PIXELS // max(pixels, 1)))


def check_jpeg_scans(data: bytes | mmap.mmap, pixels: int, name: str) -> None:
    """InputError when JPEG ``data`` has more scans than :func:`jpeg_scan_limit` allows.

    Walks the markers as libjpeg reads them: bytes between segments that are not a marker (junk,
    ``FF 00``) and fill bytes are skipped, as libjpeg skips them with a warning and decodes on;
    segments are stepped over by their lengths, and each scan's entropy-coded data with one regex
    search, so the check costs microseconds per segment whatever the file size.
    """
    limit = jpeg_scan_limit(pixels)
    pos, scans, markers = 2, 0, 0
    while (found := _MARKER.search(data, pos)) is not None:
        markers += 1
        if markers > JPEG_MAX_MARKERS:
            raise InputError(f"{name}: refused: over {JPEG_MAX_MARKERS} JPEG markers; expected a few dozen")
        marker, pos = found[0][1], found.end()
        if marker == 0xD9:  # end of image
            return
        if 0xD0 <= marker <= 0xD7 or marker in (0x01, 0xD8):  # markers without a length
            continue
        pos += max(2, int.from_bytes(data[pos:pos + 2], "big"))
        if marker == 0xDA:
            scans += 1
            if scans > limit:
                raise InputError(
                    f"{name}: refused: a JPEG of {pixels / 1e6:.1f} megapixels with over {limit} scans "
                    f"(encoders write at most about 10; repeated scans make decoding take seconds)"
                )
            entropy_end = _ENTROPY_END.search(data, pos)
            if entropy_end is None:
                return
            pos = entropy_end.start()


def load_image(image: ImageInput, color: Color = "rgb", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return ``image`` as a contiguous uint8 H×W×3 RGB array.

    ``image``: a path or encoded bytes (decoded by :func:`decode`), a PIL image (EXIF rotation
    applied) or a numpy array whose channels are ordered as ``color`` says ("rgb", the emolens
    convention, or "bgr" for OpenCV frames).
    """
    if color not in ("rgb", "bgr"):
        raise ConfigError(f"color must be 'rgb' or 'bgr', got {color!r}")
    name = describe(image)
    if isinstance(image, (str, os.PathLike, bytes)):
        return decode(image, max_pixels, name)[0]
    if isinstance(image, Image.Image):
        check_pixels(image.width, image.height, name, max_pixels)
        with _decoding(name, image.format or "image"):
            return _from_pil(ImageOps.exif_transpose(image), name)
    if isinstance(image, np.ndarray):
        return _from_array(image, color, name, max_pixels)
    raise InputError(f"{name}: expected a file path, encoded image bytes, a numpy array or a PIL image")


def decode(source: str | os.PathLike | bytes, max_pixels: int = MAX_PIXELS, name: str | None = None,
           *, keep_gray: bool = False) -> tuple[np.ndarray, str]:
    """Decode an image file or encoded bytes to RGB uint8 (EXIF rotation applied); with
    ``keep_gray`` a grayscale image stays gray, H×W×1 (dataset readers: no 3× copy of gray faces).

    Returns the array and the format (``"JPEG"``, ``"PNG"``, ...). Raises :class:`LimitError`
    over ``max_pixels`` and :class:`InputError` for anything else unusable: missing, empty,
    not an image, truncated or corrupt, too many JPEG scans.
    """
    name = name or describe(source)
    if isinstance(source, bytes):
        return _decode(io.BytesIO(source), len(source), max_pixels, name, keep_gray, source)
    try:
        info = os.stat(source)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{name}: not a file; expected an image file")
        with open(source, "rb") as f:
            return _decode(f, info.st_size, max_pixels, name, keep_gray)
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except (OSError, ValueError) as e:  # no permission, a name too long, a NUL byte, an I/O error
        raise InputError(f"{name}: cannot be read: {getattr(e, 'strerror', None) or e}") from None


def _decode(f: IO[bytes], size: int, max_pixels: int, name: str, keep_gray: bool, data: bytes | None = None
            ) -> tuple[np.ndarray, str]:
    """Decode the open image file ``f`` (or BytesIO over ``data``, read without copying it)."""
    if size == 0:
        raise InputError(f"{name}: not a readable image: it is empty (0 bytes)")
    with _decoding(name, "image"), warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_pixels below says it in our words
        image = Image.open(f)  # reads the header only
    fmt = image.format or "image"
    with image, _decoding(name, fmt):
        check_pixels(image.width, image.height, name, max_pixels)
        if fmt in ("JPEG", "MPO"):
            with nullcontext(data) if data is not None else mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as raw:
                check_jpeg_scans(raw, image.width * image.height, name)
        image.load()
        return _from_pil(ImageOps.exif_transpose(image), name, keep_gray), fmt


@contextmanager
def _decoding(name: str, fmt: str) -> Iterator[None]:
    """Turn whatever a decoder raises into an InputError naming the input."""
    try:
        yield
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{name}: not a readable image; expected {IMAGE_FORMATS}") from None
    except Image.DecompressionBombError as e:
        raise LimitError(f"{name}: refused as a decompression bomb ({e})") from None
    except Exception as e:  # noqa: BLE001  (Pillow raises OSError, ValueError, SyntaxError, struct.error, ...)
        raise InputError(f"{name}: not a readable image: truncated or corrupt {fmt} data ({e})") from None


def _from_pil(img: Image.Image, name: str, keep_gray: bool = False) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return _from_array(np.asarray(img), "rgb", name, None, keep_gray)
    gray = keep_gray and img.mode in ("L", "LA", "1")
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)  # transparent areas become white, not black
    if gray:
        return np.ascontiguousarray(np.asarray(img.convert("L"))[:, :, None])
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img))


def _from_array(a: np.ndarray, color: Color, name: str, max_pixels: int | None, keep_gray: bool = False) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise InputError(f"{name}: expected an H×W, H×W×3 or H×W×4 image array")
    if max_pixels is not None:
        check_pixels(a.shape[1], a.shape[0], name, max_pixels)
    if a.dtype != np.uint8:
        a = _to_uint8(a, name)
    if a.ndim == 2:
        return np.ascontiguousarray(a[:, :, None]) if keep_gray else cv2.cvtColor(a, cv2.COLOR_GRAY2RGB)
    if a.shape[2] == 4:
        return cv2.cvtColor(a, cv2.COLOR_BGRA2RGB if color == "bgr" else cv2.COLOR_RGBA2RGB)
    if color == "bgr":
        return cv2.cvtColor(a, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(a)


def _to_uint8(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype == np.uint16 or (a.dtype.kind in "iu" and a.max(initial=0) > 255):
        return (np.clip(a, 0, 65535) // 257).astype(np.uint8)
    if a.dtype.kind in "iu" or a.dtype == bool:
        return np.clip(a, 0, 255).astype(np.uint8)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise InputError(f"{name}: the float image holds NaN or infinite values")
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0  # [0, 1] floats or [0, 255] floats
        return np.clip(a * scale + 0.5, 0, 255).astype(np.uint8)
    raise InputError(f"{name}: unsupported pixel type {a.dtype}; expected uint8, uint16 or float")
