"""A bounded, seeded fuzz pass (tests/fuzz_inputs.py): a few hundred malformed images and a few
malformed videos through the Python API, ``emolens analyze`` and the REST and WebSocket
endpoints. Accepted outcomes only: a result or an InputError; HTTP 200, 400 or 413 with a reason;
a CLI that reports each bad file on one line and finishes. Never another exception, a 5xx, a
hang or a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest
from fuzz_inputs import malformed_images, malformed_videos

from emolens.errors import InputError
from emolens.inference.recognizer import Recognizer
from emolens.inference.video import analyze_video

REPO = Path(__file__).resolve().parents[1]
SEED = 10
IMAGES = 300
VIDEOS = 8
SLOWEST_S = 2.0  # per input; a hang or a decoding stall fails the test


@pytest.fixture(scope="module")
def images(media: Path) -> list[tuple[str, bytes]]:
    return malformed_images(media, IMAGES, seed=SEED)


@pytest.fixture(scope="module")
def videos(media: Path) -> list[tuple[str, bytes]]:
    return malformed_videos(media, VIDEOS, seed=SEED)


@pytest.fixture(scope="module")
def rec() -> Recognizer:
    return Recognizer()


def timed(call, *args) -> tuple[object, float]:
    """(result or InputError, seconds); any other exception propagates and fails the test."""
    start = time.perf_counter()
    try:
        outcome = call(*args)
    except InputError as e:
        outcome = e
    return outcome, time.perf_counter() - start


@contextmanager
def pil_warnings_expected() -> Iterator[list[warnings.WarningMessage]]:
    """Pillow warns about damaged metadata (corrupt EXIF, tags past the end of the file) in images it
    still decodes: expected from malformed images, so caught here; any other warning is an error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    others = [w for w in caught if not (issubclass(w.category, UserWarning) and w.filename.endswith(
        os.path.join("PIL", "TiffImagePlugin.py")))]
    assert not others, [f"{w.category.__name__}: {w.message} ({w.filename})" for w in others]


def multipart(name: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    """A one-file form as a client sends it, file name bytes as they are (maybe not UTF-8)."""
    boundary = b"emolens-fuzz-7f3a9c2e51"
    head = (b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="' + os.fsencode(name)
            + b'"\r\nContent-Type: application/octet-stream\r\n\r\n')
    return head + data + b"\r\n--" + boundary + b"--\r\n", {"content-type": f"multipart/form-data; boundary={boundary.decode()}"}


def test_api(rec: Recognizer, images: list[tuple[str, bytes]], tmp_path: Path) -> None:
    outcomes = Counter()
    with pil_warnings_expected() as caught:
        for i, (name, data) in enumerate(images):
            path = tmp_path / f"{i}-{name}"
            path.write_bytes(data)
            for source in (data, path):
                outcome, seconds = timed(rec.analyze, source)
                assert seconds < SLOWEST_S, (name, seconds)
                if isinstance(outcome, InputError):
                    assert "\n" not in str(outcome) and (source is data or str(path) in str(outcome)), str(outcome)
                outcomes[type(outcome).__name__] += 1
    assert outcomes["ImageResult"] > 50 and outcomes["InputError"] > 50, outcomes
    assert caught, "the fuzz pass no longer reaches Pillow's metadata warnings"


def test_api_videos(rec: Recognizer, videos: list[tuple[str, bytes]], tmp_path: Path) -> None:
    for i, (name, data) in enumerate(videos):
        path = tmp_path / f"{i}-{name}"
        path.write_bytes(data)
        outcome, _ = timed(partial(analyze_video, rec, path, max_frames=15))
        assert not isinstance(outcome, InputError) or str(path) in str(outcome)


def test_rest_and_websocket(rec: Recognizer, images: list[tuple[str, bytes]],
                            videos: list[tuple[str, bytes]]) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from emolens.apps.web.server import Settings, create_app

    statuses = Counter()
    with TestClient(create_app(rec, Settings(max_pixels=24_000_000)), base_url="http://127.0.0.1:8000") as client:
        for name, data in images:
            start = time.perf_counter()
            body, headers = multipart(name, data)
            response = client.post("/api/v1/analyze", content=body, headers=headers)
            assert time.perf_counter() - start < SLOWEST_S, name
            assert response.status_code in (200, 400, 413), (name, response.status_code, response.text[:300])
            if response.status_code != 200:
                assert response.json()["detail"], name
            statuses[response.status_code] += 1
        for name, data in videos[:4]:
            body, headers = multipart(name, data)
            response = client.post("/api/v1/analyze-video", content=body, headers=headers)
            assert response.status_code in (200, 400, 413), (name, response.status_code, response.text[:300])
        with client.websocket_connect("ws://127.0.0.1:8000/api/v1/stream") as ws:
            for name, data in images[::3]:
                if data:  # an empty binary message is a text-less frame the page never sends
                    ws.send_bytes(data)
                    reply = ws.receive_json()
                    assert "faces" in reply or reply["error"], (name, reply)
            ws.send_bytes(next(d for n, d in images if n.startswith("bad-")))  # a real photo
            assert ws.receive_json()["faces"]  # still connected after every bad frame
    assert statuses[200] > 50 and statuses[400] > 50, statuses


def test_cli(images: list[tuple[str, bytes]], videos: list[tuple[str, bytes]], tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    picked = images[:60] + videos[:3]
    for i, (name, data) in enumerate(picked):
        suffix = Path(name).suffix if Path(name).suffix in (".jpg", ".png", ".gif", ".webp", ".bmp", ".tif", ".mp4") \
            else ".jpg"
        (folder / f"{i:03d}-{Path(name).stem}{suffix}").write_bytes(data)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8:strict"}
    cli = [sys.executable, "-c", "from emolens.apps.cli import main; main()", "analyze"]
    proc = subprocess.run([*cli, folder, "--json", tmp_path / "r.json", "--csv", tmp_path / "r.csv"], cwd=REPO,
                          capture_output=True, text=True, errors="replace", timeout=120, env=env)
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["results"]) + len(report["errors"]) == len(picked)
    assert all(e["error"] and "\n" not in e["error"] for e in report["errors"])
    for i in (0, 4, 5):  # single bad files: exit 1 and the reason, no traceback
        single = subprocess.run([*cli, str(next(folder.glob(f"{i:03d}-*")))], cwd=REPO, capture_output=True,
                                text=True, errors="replace", timeout=60, env=env)
        assert single.returncode in (0, 1) and "Traceback" not in single.stderr, single.stderr[-2000:]
