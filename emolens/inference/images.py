"""Turn whatever the caller hands us (path, numpy array, PIL image) into a uint8 RGB array.

Grayscale, RGBA, palette and 16-bit images are converted; images larger than ``max_pixels``
are refused from their header, before any pixel is decoded (decompression bombs).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emolens.inference.errors import InputError

#: Default pixel limit for one image (50 megapixels); ``EMOLENS_MAX_PIXELS`` overrides it.
MAX_PIXELS = int(os.environ.get("EMOLENS_MAX_PIXELS", 50_000_000))
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"})

Color = Literal["rgb", "bgr"]
ImageInput = str | os.PathLike | np.ndarray | Image.Image


def describe(image: Any) -> str:
    """A short name for an input, used in results and error messages."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, np.ndarray):
        return f"<array {'x'.join(map(str, image.shape))} {image.dtype}>"
    if isinstance(image, Image.Image):
        return getattr(image, "filename", "") or f"<PIL {image.mode} {image.width}x{image.height}>"
    return f"<{type(image).__name__}>"


def check_pixels(width: int, height: int, name: str, max_pixels: int = MAX_PIXELS) -> None:
    if width * height > max_pixels:
        raise InputError(
            f"{name}: {width}x{height} = {width * height / 1e6:.1f} megapixels is over the limit of "
            f"{max_pixels / 1e6:.1f} megapixels (raise it with --max-pixels, or max_pixels= in Python)"
        )


def load_image(image: ImageInput, color: Color = "rgb", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return ``image`` as a contiguous uint8 H×W×3 RGB array.

    ``color`` says how a numpy array's channels are ordered ("rgb", the emolens convention, or
    "bgr" for OpenCV frames); paths and PIL images carry their own mode.
    """
    if color not in ("rgb", "bgr"):
        raise ValueError(f"color must be 'rgb' or 'bgr', got {color!r}")
    name = describe(image)
    if isinstance(image, (str, os.PathLike)):
        return _from_pil(_open(Path(image), max_pixels), name)
    if isinstance(image, Image.Image):
        check_pixels(image.width, image.height, name, max_pixels)
        return _from_pil(image, name)
    if isinstance(image, np.ndarray):
        return _from_array(image, color, name, max_pixels)
    raise InputError(f"{name}: expected a file path, a numpy array or a PIL image")


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_pixels says it in our words
            img = Image.open(path)  # reads the header only
        with img:
            check_pixels(img.width, img.height, str(path), max_pixels)
            img.load()
            return ImageOps.exif_transpose(img)  # a rotated copy, independent of the file
    except InputError:
        raise
    except Image.DecompressionBombError as e:
        raise InputError(f"{path}: refused as a decompression bomb ({e})") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise InputError(f"{path}: not a readable image ({e})") from e


def _from_pil(img: Image.Image, name: str) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        return _from_array(np.asarray(img), "rgb", name, None)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)  # transparent areas become white, not black
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img))


def _from_array(a: np.ndarray, color: Color, name: str, max_pixels: int | None) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise InputError(f"{name}: expected an H×W, H×W×3 or H×W×4 image array")
    if max_pixels is not None:
        check_pixels(a.shape[1], a.shape[0], name, max_pixels)
    if a.dtype != np.uint8:
        a = _to_uint8(a, name)
    if a.ndim == 2:
        return cv2.cvtColor(a, cv2.COLOR_GRAY2RGB)
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
