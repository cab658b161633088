"""Checking what clients send: images are identified by decoding them, never by name or type."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from PIL import Image

#: Pillow formats recognised by their first bytes; a video upload starting like one is refused.
IMAGE_SIGNATURES = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF", "PPM"})


def looks_like_image(head: bytes) -> bool:
    """True when the first bytes of a file are the signature of an image format emolens reads."""
    Image.init()
    return any(accept is not None and accept(head)
               for fmt, (_, accept) in Image.OPEN.items() if fmt in IMAGE_SIGNATURES)


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
