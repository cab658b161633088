"""The web server under hostile input: corrupt uploads and frames, slow clients, floods of work,
DNS rebinding, cross-site POSTs; checked through TestClient and a real uvicorn server."""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from fuzz_inputs import repeated_scans_jpeg  # noqa: E402
from PIL import Image  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402
from websockets.sync.client import connect  # noqa: E402
from webtools import free_port, running_server  # noqa: E402

from emolens.apps.web.server import Settings, create_app, server_config  # noqa: E402

LOCAL = "http://127.0.0.1:8000"
STREAM = "ws://127.0.0.1:8000/api/v1/stream"


@pytest.fixture(scope="module")
def recognizer():
    from emolens.inference.recognizer import Recognizer

    return Recognizer()


@pytest.fixture(scope="module")
def client(recognizer) -> Iterator[TestClient]:
    with TestClient(create_app(recognizer, Settings(max_pixels=4_000_000)), base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="module")
def photo(media: Path) -> bytes:
    return (media / "face_recognition_obama_and_biden.jpg").read_bytes()


@contextmanager
def real_server(app, settings: Settings) -> Iterator[str]:
    """``emolens serve``'s uvicorn config around ``app`` on a free port; yields host:port."""
    port = free_port()
    with running_server(server_config(app, settings, "127.0.0.1", port, log_level="warning")):
        yield f"127.0.0.1:{port}"


def post(client: TestClient, data: bytes, name: str = "x.jpg", path: str = "/api/v1/analyze", **kw):
    return client.post(path, files={"file": (name, data, "application/octet-stream")}, **kw)


def encoded(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


# --- corrupt images: always 4xx with a reason, on the stream an error reply ---------------------

def corrupt_images(photo: bytes) -> dict[str, bytes]:
    """Files that made the old server answer 500: Pillow raised OSError/ValueError/SyntaxError."""
    png = encoded("PNG")
    gif = encoded("GIF")
    tiff = encoded("TIFF")
    bmp = encoded("BMP")
    bad_crc = png[:29] + bytes([png[29] ^ 0xFF]) + png[30:]  # IHDR's CRC
    return {
        "truncated.jpg": photo[: len(photo) // 3],
        "eoi-only.jpg": b"\xff\xd8\xff\xd9",
        "jpeg-header-junk.jpg": photo[:600] + bytes(2000),
        "bad-crc.png": bad_crc,
        "truncated.png": png[:60],
        "truncated.gif": gif[:40],
        "tiff-bad-offsets.tif": tiff[:8] + b"\xff\xff\xff\x7f" + tiff[12:],
        "truncated.tif": tiff[:30],
        "bmp-bad-header.bmp": bmp[:14] + b"\x00" * 40 + bmp[54:],
        "truncated.webp": encoded("WEBP")[:30],
        "zero-size.png": b"\x89PNG\r\n\x1a\n" + png[8:16] + b"\0" * 8 + png[24:],
        "scans.jpg": repeated_scans_jpeg(),
    }


def test_every_corrupt_upload_gets_a_4xx_with_a_reason(client: TestClient, photo: bytes) -> None:
    for name, data in corrupt_images(photo).items():
        response = post(client, data, name=name)
        assert response.status_code in (400, 413), (name, response.status_code, response.text)
        assert name in response.json()["detail"], (name, response.json())


def test_a_bad_frame_gets_an_error_and_the_stream_stays_open(client: TestClient, photo: bytes) -> None:
    with client.websocket_connect(STREAM) as ws:
        for name, data in corrupt_images(photo).items():
            ws.send_bytes(data)
            reply = ws.receive_json()
            assert "error" in reply and "faces" not in reply, (name, reply)
        ws.send_bytes(photo)
        assert len(ws.receive_json()["faces"]) == 2


def test_repeated_scan_jpeg_is_refused_fast_everywhere(client: TestClient) -> None:
    data = repeated_scans_jpeg()
    start = time.perf_counter()
    response = post(client, data, name="scans.jpg")
    assert response.status_code == 400 and "scans" in response.json()["detail"]
    with client.websocket_connect(STREAM) as ws:
        ws.send_bytes(data)
        assert "scans" in ws.receive_json()["error"]
    assert time.perf_counter() - start < 1.0


# --- videos --------------------------------------------------------------------------------------

def test_video_frames_over_the_pixel_limit_are_refused(recognizer, tmp_path: Path) -> None:
    path = tmp_path / "big.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (2400, 2000))
    for _ in range(2):
        writer.write(np.zeros((2000, 2400, 3), np.uint8))
    writer.release()
    with TestClient(create_app(recognizer, Settings(max_pixels=4_000_000)), base_url=LOCAL) as c:
        response = post(c, path.read_bytes(), name="big.avi", path="/api/v1/analyze-video")
    assert response.status_code == 413, response.text
    detail = response.json()["detail"]
    assert "big.avi" in detail and "megapixels" in detail and str(tmp_path) not in detail


def test_tiff_is_not_a_video_and_rejected_videos_are_not_kept(recognizer, tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    with TestClient(create_app(recognizer, Settings(keep_uploads=kept)), base_url=LOCAL) as c:
        tiff = post(c, encoded("TIFF", (400, 300)), name="clip.mp4", path="/api/v1/analyze-video")
        assert tiff.status_code == 400 and "is an image" in tiff.json()["detail"]
        broken = post(c, b"\x00\x00\x00\x18ftypmp42" + bytes(5000), name="clip.mp4", path="/api/v1/analyze-video")
        assert broken.status_code == 400
    assert not kept.exists() or not any(kept.iterdir())


# --- hosts and origins ---------------------------------------------------------------------------

def test_dns_rebinding_and_cross_site_requests_are_refused(client: TestClient, photo: bytes) -> None:
    from starlette.websockets import WebSocketDisconnect

    rebound = client.get("/health", headers={"host": "evil.example:8000"})
    assert rebound.status_code == 400 and "unknown host" in rebound.json()["detail"]
    assert client.get("/health", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/health", headers={"host": "[::1]:8000"}).status_code == 200

    cross = post(client, photo, headers={"origin": "http://evil.example"})
    assert cross.status_code == 403 and "cross-origin" in cross.json()["detail"]
    same = post(client, photo, headers={"origin": LOCAL})
    assert same.status_code == 200
    assert post(client, photo, headers={"origin": "null"}).status_code == 403

    for url, headers in (("ws://evil.example:8000/api/v1/stream", {}),  # rebinding: Origin and Host agree
                         ("ws://evil.example:8000/api/v1/stream", {"origin": "http://evil.example:8000"}),
                         (STREAM, {"origin": "http://evil.example"})):
        with pytest.raises(WebSocketDisconnect) as info:
            with client.websocket_connect(url, headers=headers) as ws:
                ws.receive_json()
        assert info.value.code == 1008
    with client.websocket_connect(STREAM, headers={"origin": LOCAL}) as ws:
        ws.send_bytes(photo)
        assert ws.receive_json()["faces"]


def test_allow_host_star_and_extra_names(recognizer) -> None:
    for hosts, host, status in (((*Settings().allowed_hosts, "emolens.lan"), "emolens.lan", 200),
                                (("*",), "anything.example", 200), (Settings().allowed_hosts, "emolens.lan", 400)):
        with TestClient(create_app(recognizer, Settings(allowed_hosts=hosts)), base_url=LOCAL) as c:
            assert c.get("/health", headers={"host": host}).status_code == status


def test_every_response_carries_the_security_headers(client: TestClient) -> None:
    for path in ("/", "/static/index.html", "/static/app.js", "/health"):
        headers = client.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert headers["x-content-type-options"] == "nosniff"


# --- bounded work, timeouts and connections on a real server -------------------------------------

class SlowRecognizer:
    """A recognizer whose ``analyze`` takes ``delay`` seconds more (a slow request)."""

    def __init__(self, inner, delay: float) -> None:
        self.inner = inner
        self.delay = delay

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def analyze(self, *args, **kwargs):
        time.sleep(self.delay)
        return self.inner.analyze(*args, **kwargs)


def test_a_full_queue_answers_503_with_retry_after(recognizer, photo: bytes) -> None:
    settings = Settings(workers=1, max_queued=1)
    app = create_app(SlowRecognizer(recognizer, 1.0), settings)
    with real_server(app, settings) as address, ThreadPoolExecutor(6) as pool:
        def upload(_: int) -> httpx.Response:
            return httpx.post(f"http://{address}/api/v1/analyze", files={"file": ("x.jpg", photo)}, timeout=30)

        responses = list(pool.map(upload, range(6)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 200, 503, 503, 503, 503], codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "2" and "server busy" in busy.json()["detail"]


def test_slow_headers_and_slow_bodies_are_cut_off(recognizer) -> None:
    settings = Settings(read_timeout_s=0.5, upload_timeout_s=1.5)
    with real_server(create_app(recognizer, settings), settings) as address:
        host, port = address.split(":")
        with socket.create_connection((host, int(port)), timeout=5) as slow_head:
            slow_head.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
            start = time.monotonic()
            assert slow_head.recv(1024) == b""  # closed by the server
            assert time.monotonic() - start < 2.0

        head = (f"POST /api/v1/analyze HTTP/1.1\r\nHost: {address}\r\nContent-Length: 100000\r\n"
                "Content-Type: multipart/form-data; boundary=x\r\n\r\n").encode()
        for pause in (None, 0.3):  # stalls, or trickles past the whole-upload deadline
            with socket.create_connection((host, int(port)), timeout=5) as slow_body:
                slow_body.sendall(head + b"--x\r\n")
                start = time.monotonic()
                slow_body.settimeout(0.05 if pause else 5)
                reply = b""
                while not reply and time.monotonic() - start < 5:
                    if pause:
                        slow_body.sendall(b"a")
                    try:
                        reply = slow_body.recv(4096)
                    except TimeoutError:
                        time.sleep(pause or 0)
                assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
                assert time.monotonic() - start < 3.0


def test_connections_past_the_cap_close_the_longest_waiting(recognizer) -> None:
    """At the cap, a new connection evicts the one that waited longest for a request head (issue 26:
    turning new ones away let half-open sockets lock every client out)."""
    settings = Settings(max_connections=3, read_timeout_s=5)
    with real_server(create_app(recognizer, settings), settings) as address:
        host, port = address.split(":")
        sockets = [socket.create_connection((host, int(port)), timeout=2) for _ in range(5)]
        try:
            time.sleep(0.3)
            for s in sockets:
                s.settimeout(0.3)
            closed = []
            for s in sockets:
                try:
                    closed.append(s.recv(1) == b"")
                except TimeoutError:
                    closed.append(False)
            assert closed == [True, True, False, False, False]
        finally:
            for s in sockets:
                s.close()


def test_refused_websockets_see_their_close_code_not_http_403(recognizer) -> None:
    settings = Settings(max_streams=1)
    with real_server(create_app(recognizer, settings), settings) as address:
        url = f"ws://{address}/api/v1/stream"
        with connect(url) as first:
            for kwargs, code in (({}, 1013), ({"origin": "http://evil.example"}, 1008)):
                with connect(url, **kwargs) as refused:
                    with pytest.raises(ConnectionClosed) as info:
                        refused.recv(timeout=5)
                    assert info.value.rcvd.code == code
            first.send(b"not a jpeg")
            assert "error" in first.recv(timeout=5)
