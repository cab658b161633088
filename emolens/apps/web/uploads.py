"""Checking what clients send: images are identified by decoding them, never by name or type."""

from __future__ import annotations

import io
import shutil
import uuid
from pathlib import Path

import numpy as np
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from PIL import Image, ImageOps, UnidentifiedImageError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emolens.inference.errors import InputError
from emolens.inference.images import check_pixels, load_image

IMAGE_FORMATS = "JPEG, PNG, WebP, BMP, GIF or TIFF"


class BodyLimit:
    """ASGI middleware: 413 as soon as a request body passes ``max_bytes``.

    A larger ``Content-Length`` is refused before reading; otherwise bytes are counted as they
    stream in and reading stops at the limit, so an upload never grows past it in memory or on
    disk.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"upload too large: the limit is {self.max_bytes / 2**20:g} MB (--max-upload-mb)"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, detail)
            return message

        await self.app(scope, limited_receive, send)


def decode_image(data: bytes, max_pixels: int, name: str = "upload") -> tuple[np.ndarray, str]:
    """Decode uploaded bytes to RGB uint8 and return it with its format (e.g. ``"JPEG"``).

    Raises HTTP 400 for empty, non-image, truncated or corrupt data and 413 for images over
    ``max_pixels``; the size is read from the header, before any pixel is decoded.
    """
    if not data:
        raise HTTPException(400, f"{name}: empty upload; expected an image ({IMAGE_FORMATS})")
    try:
        image = Image.open(io.BytesIO(data))
        check_pixels(image.width, image.height, name, max_pixels)
    except UnidentifiedImageError:
        raise HTTPException(400, f"{name}: not an image; expected {IMAGE_FORMATS}") from None
    except (InputError, Image.DecompressionBombError) as exc:
        raise HTTPException(413, str(exc)) from None
    fmt = image.format or "image"
    try:
        image.load()
        image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise HTTPException(400, f"{name}: truncated or corrupt {fmt} image ({exc})") from None
    return load_image(image), fmt


def looks_like_image(head: bytes) -> bool:
    """True when the first bytes of a file already identify it as an image."""
    try:
        Image.open(io.BytesIO(head))
    except (UnidentifiedImageError, OSError):
        return False
    return True


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
