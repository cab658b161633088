"""Seeded generators of malformed images and videos for the fuzz tests (no tests here).

Every case is ``(name, data)``: a file name (some not valid UTF-8) and its bytes, derived from
the real photos and videos of ``../shared/media`` or made from scratch.
"""

from __future__ import annotations

import io
import random
import re
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = (("JPEG", ".jpg"), ("PNG", ".png"), ("GIF", ".gif"), ("WEBP", ".webp"), ("BMP", ".bmp"), ("TIFF", ".tif"))
ODD_MODES = ("1", "L", "LA", "P", "I;16", "I", "F", "CMYK", "YCbCr", "RGBA")


def seed_images(media: Path, width: int = 320) -> list[tuple[str, bytes]]:
    """The media photos, downscaled to ``width`` px, in every format emolens reads."""
    out = []
    for photo in sorted(media.glob("*.jpg")):
        image = Image.open(photo).convert("RGB")
        image = image.resize((width, round(image.height * width / image.width)))
        for fmt, suffix in FORMATS:
            buffer = io.BytesIO()
            image.save(buffer, fmt, **({"progressive": True} if fmt == "JPEG" else {}))
            out.append((f"{photo.stem}{suffix}", buffer.getvalue()))
    return out


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height over a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def repeated_scans_jpeg(width: int = 2000, height: int = 1500, repeats: int = 1000) -> bytes:
    """A progressive JPEG made by Pillow whose last (refinement) scan is repeated ``repeats`` times:
    a few kB more, seconds more to decode without a scan limit."""
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (128, 128, 128)).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    last_scan = [m.start() for m in re.finditer(b"\xff\xda", data)][-1]
    end = data.rindex(b"\xff\xd9")
    return data[:end] + data[last_scan:end] * repeats + data[end:]


def junk_scans_jpegs(repeats: int = 1000) -> dict[str, bytes]:
    """:func:`repeated_scans_jpeg` with bytes libjpeg skips between segments (with a warning) and
    decodes on: a junk byte after APP0 (issue 26: it hid every scan from the old guard), a stuffed
    zero, fill bytes, a junk run before a scan."""
    data = repeated_scans_jpeg(repeats=repeats)
    app0 = data.index(b"\xff\xe0")
    after_app0 = app0 + 2 + int.from_bytes(data[app0 + 2:app0 + 4], "big")
    first_scan = data.index(b"\xff\xda")
    return {"junk-after-app0.jpg": data[:after_app0] + b"\x00" + data[after_app0:],
            "stuffed-zero.jpg": data[:after_app0] + b"\xff\x00" + data[after_app0:],
            "fill-bytes.jpg": data[:after_app0] + b"\xff" * 7 + data[after_app0:],
            "junk-before-scan.jpg": data[:first_scan] + bytes(range(1, 200)) + data[first_scan:]}


def thin_pngs() -> dict[str, bytes]:
    """Real PNGs one or two pixels thin (issue 26: once YuNet had seen a larger image, they made it
    return infinite boxes)."""
    rng = np.random.default_rng(26)
    out = {}
    for width, height in ((1000, 1), (20000, 2), (2, 20000), (1, 1), (5000, 3)):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
        out[f"thin-{width}x{height}.png"] = buffer.getvalue()
    return out


def odd_mode_images(seed: int) -> list[tuple[str, bytes]]:
    """Small valid images in unusual modes (1-bit, 16-bit, float, CMYK, ...)."""
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    out = []
    for mode in ODD_MODES:
        image = rgb.convert(mode) if mode not in ("I;16",) else Image.fromarray(
            rng.integers(0, 65535, (40, 50), dtype=np.uint16))
        fmt, suffix = ("TIFF", ".tif") if mode in ("I;16", "I", "F", "CMYK", "YCbCr", "LA") else ("PNG", ".png")
        if mode == "YCbCr":
            fmt, suffix = "JPEG", ".jpg"
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        out.append((f"mode-{mode.replace(';', '')}{suffix}", buffer.getvalue()))
    return out


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One malformed variant of ``data`` and what was done to it."""
    kind = rng.choice(("truncate", "bitflip", "splat", "zero-tail", "duplicate"))
    b = bytearray(data)
    if kind == "truncate":
        return kind, bytes(b[:rng.randrange(0, len(b))])
    if kind == "bitflip":
        for _ in range(rng.randint(1, 24)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        return kind, bytes(b)
    if kind == "splat":
        start = rng.randrange(len(b))
        span = rng.randint(1, 64)
        b[start:start + span] = rng.randbytes(span)
        return kind, bytes(b)
    if kind == "zero-tail":
        start = rng.randrange(len(b))
        return kind, bytes(b[:start]) + bytes(len(b) - start)
    start = rng.randrange(len(b))
    return kind, bytes(b[:start]) + bytes(b[start - rng.randint(0, min(start, 512)):])


def malformed_images(media: Path, count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``count`` seeded cases: mutated real photos in every format, random bytes, empty files,
    huge headers, odd modes, repeated JPEG scans (also behind junk bytes), thin images, non-UTF-8 names."""
    rng = random.Random(seed)
    seeds = seed_images(media)
    fixed = [("empty.jpg", b""), ("huge.png", png_with_size(100_000, 100_000)),
             ("wide.png", png_with_size(2**31 - 1, 1)), ("zero.png", png_with_size(0, 0)),
             ("scans.jpg", repeated_scans_jpeg()), ("text.jpg", b"not an image\n" * 20),
             (b"bad-\xff\xfe-name.jpg".decode("utf-8", "surrogateescape"), seeds[0][1]),
             *odd_mode_images(seed), *junk_scans_jpegs().items(), *thin_pngs().items()]
    cases = list(fixed)
    while len(cases) < count:
        roll = rng.random()
        if roll < 0.08:
            cases.append((f"random-{len(cases)}.jpg", rng.randbytes(rng.randint(1, 4096))))
        elif roll < 0.12:
            prefix = rng.choice((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"BM", b"II*\x00", b"RIFF"))
            cases.append((f"header-{len(cases)}.img", prefix + rng.randbytes(rng.randint(0, 256))))
        else:
            name, data = rng.choice(seeds)
            kind, mutated = mutate(data, rng)
            cases.append((f"{kind}-{len(cases)}-{name}", mutated))
    return cases[:count]


def malformed_videos(media: Path, count: int, seed: int = 0) -> list[tuple[str, bytes]]:
    """``count`` seeded cases from the real videos: truncated, bit-flipped, spliced; plus empty
    and random files."""
    rng = random.Random(seed)
    videos = [(p.name, p.read_bytes()) for p in sorted(media.glob("*.mp4"))]
    cases = [("empty.mp4", b""), ("random.avi", rng.randbytes(20_000))]
    while len(cases) < count:
        name, data = rng.choice(videos)
        kind, mutated = mutate(data, rng)
        cases.append((f"{kind}-{len(cases)}-{name}", mutated))
    return cases[:count]
