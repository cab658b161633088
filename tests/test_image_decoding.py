"""The one image decoder (emolens.images): bounded work, and an InputError naming the
input for anything unusable, whatever the caller passes (path, bytes, PIL image, array)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from fuzz_inputs import repeated_scans_jpeg
from PIL import Image

from emolens.errors import InputError, LimitError
from emolens.images import check_jpeg_scans, decode, jpeg_scan_limit, load_image


@pytest.fixture(scope="module")
def photo(media: Path) -> Path:
    return media / "pyfeat_multi_face.jpg"


def progressive(path: Path) -> bytes:
    buffer = io.BytesIO()
    Image.open(path).save(buffer, "JPEG", progressive=True, quality=90)
    return buffer.getvalue()


def test_repeated_scans_are_refused_in_milliseconds(tmp_path: Path) -> None:
    data = repeated_scans_jpeg(2000, 1500, repeats=1000)  # about 9 s to decode unchecked here
    path = tmp_path / "scans.jpg"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        start = time.perf_counter()
        with pytest.raises(InputError, match="scans") as info:
            load_image(source)
        assert time.perf_counter() - start < 0.5
        assert "over 100 scans" in str(info.value)
    assert str(path) in str(pytest.raises(InputError, decode, path).value)


def test_real_progressive_and_baseline_jpegs_decode(photo: Path) -> None:
    data = progressive(photo)
    check_jpeg_scans(data, 1000 * 667, "p.jpg")  # Pillow writes 10 scans
    reference = load_image(photo)
    error = float(np.abs(load_image(data).astype(int) - reference).mean())
    assert error < 2.0  # the same photo, re-encoded at quality 90
    assert decode(photo.read_bytes())[1] == "JPEG" and np.array_equal(decode(photo)[0], reference)


def test_scan_limit_shrinks_with_size() -> None:
    assert jpeg_scan_limit(1_000_000) == 100
    assert jpeg_scan_limit(12_000_000) == 33
    assert jpeg_scan_limit(50_000_000) == 16  # still above the ~10 scans encoders write


def test_markers_past_the_limit_are_refused() -> None:
    data = b"\xff\xd8" + b"\xff\xfe\x00\x02" * 5000 + b"\xff\xd9"  # 5000 empty comments
    with pytest.raises(InputError, match="JPEG markers"):
        check_jpeg_scans(data, 100, "c.jpg")


def test_pil_inputs_zero_size_lazy_truncated_and_exif(photo: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="0x0 pixels"):
        load_image(Image.new("RGB", (0, 0)))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo.read_bytes()[:20_000])
    lazy = Image.open(truncated)  # header only: decoding happens inside emolens
    with pytest.raises(InputError, match="truncated") as info:
        load_image(lazy)
    assert str(truncated) in str(info.value)

    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.open(photo).save(rotated, exif=exif)
    from_path, from_pil = load_image(rotated), load_image(Image.open(rotated))
    assert from_path.shape == from_pil.shape == (1000, 667, 3)
    assert np.array_equal(from_path, from_pil)


def test_paths_that_cannot_be_read(tmp_path: Path) -> None:
    long_name = tmp_path / ("a" * 300 + ".jpg")
    for path, reason in ((long_name, "name too long"), (tmp_path, "not a file"),
                         (tmp_path / "missing.jpg", "no such file"), (tmp_path / "nul\0.jpg", "cannot be read")):
        with pytest.raises(InputError, match=reason):
            load_image(path)


def test_pixel_limits_are_limit_errors(photo: Path) -> None:
    with pytest.raises(LimitError, match="over the limit"):
        decode(photo, max_pixels=100_000)
    with pytest.raises(LimitError):
        load_image(np.zeros((400, 400, 3), np.uint8), max_pixels=1000)
