"""The web app through FastAPI's TestClient (and once as a real ``emolens serve``), with the real Recognizer
and bundled default model."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import cv2
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from emolens.apps.web.server import Settings, create_app  # noqa: E402

WEIGHTS = Path(__file__).resolve().parents[1] / "emolens" / "weights" / "fer2013.onnx"
LIMITS = Settings(max_upload_mb=2, max_pixels=4_000_000)
LOCAL = "http://127.0.0.1:8000"  # an allowed host (see Settings.allowed_hosts)
STREAM = "ws://127.0.0.1:8000/api/v1/stream"


@pytest.fixture(scope="module")
def recognizer():
    if not WEIGHTS.exists():
        pytest.skip(f"{WEIGHTS} not found: the bundled default model is needed")
    from emolens.inference.recognizer import Recognizer

    return Recognizer()


@pytest.fixture(scope="module")
def client(recognizer):
    with TestClient(create_app(recognizer, LIMITS), base_url=LOCAL) as c:
        yield c


def video_frames_jpeg(path: Path, count: int, step: int = 3) -> list[bytes]:
    """Every ``step``-th frame of a video as the browser sends it: ≤640 px wide JPEG."""
    cap = cv2.VideoCapture(str(path))
    out, index = [], 0
    while len(out) < count:
        ok, frame = cap.read()
        assert ok, f"{path} has fewer than {count * step} frames"
        if index % step == 0:
            scale = min(1.0, 640 / frame.shape[1])
            frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            out.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes())
        index += 1
    cap.release()
    return out


def post_image(client: TestClient, data: bytes, name: str = "photo.jpg", query: str = "") -> object:
    return client.post(f"/api/v1/analyze{query}", files={"file": (name, data, "application/octet-stream")})


def test_health_and_models(client: TestClient, recognizer) -> None:
    health = client.get("/health").json()
    # the model as loaded (the page's header shows it in both modes), never "default"
    assert health["status"] == "ok" and (health["model"], health["detector"]) == ("accurate-int8", "yunet-tiled")
    models = client.get("/api/v1/models").json()
    assert models["classes"] == list(recognizer.classes)
    assert (models["model"], models["stream_detector"]) == ("accurate-int8", "blazeface,yunet-320")
    assert "fer2013" in models["bundled_models"] and "haar" in models["detectors"]


def test_a_video_posted_as_an_image_points_to_the_video_endpoint(client: TestClient, media: Path) -> None:
    for name in ("pyfeat_single_face.mp4", "pyfeat_no_face.mp4"):
        response = post_image(client, (media / name).read_bytes(), name=name)
        assert response.status_code == 400
        assert response.json()["detail"] == f"{name}: this is a video; expected an image (use /api/v1/analyze-video " \
                                            f"for videos)"


def test_analyze_matches_the_recognizer(client: TestClient, recognizer, media: Path) -> None:
    path = media / "pyfeat_multi_face.jpg"
    response = post_image(client, path.read_bytes(), name=path.name)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = recognizer.analyze(path).to_dict()
    assert body == {**expected, "source": path.name}
    assert len(body["faces"]) >= 2


def test_analyze_annotated(client: TestClient, media: Path) -> None:
    response = post_image(client, (media / "deepface_couple.jpg").read_bytes(), query="?annotate=true")
    assert response.status_code == 200, response.text
    body = response.json()
    image = Image.open(io.BytesIO(base64.b64decode(body["annotated_jpeg"])))
    assert image.format == "JPEG" and image.size == (body["width"], body["height"])
    assert body["faces"]


def test_bad_uploads_are_refused_with_a_reason(client: TestClient, media: Path) -> None:
    jpeg = (media / "pyfeat_multi_face.jpg").read_bytes()

    not_image = post_image(client, b"%PDF-1.4 not a photo" * 10, name="photo.jpg")
    assert not_image.status_code == 400 and "expected JPEG" in not_image.json()["detail"]

    truncated = post_image(client, jpeg[: len(jpeg) // 2])
    assert truncated.status_code == 400 and "truncated" in truncated.json()["detail"]

    assert post_image(client, b"").status_code == 400

    too_big = post_image(client, jpeg + bytes(3 * 2**20))
    assert too_big.status_code == 413 and "2 MB" in too_big.json()["detail"]

    # no Content-Length: the streamed body is counted and cut off at the limit
    chunks = iter([b"--x\r\n"] + [bytes(2**16)] * 64)
    streamed = client.post("/api/v1/analyze", content=chunks,
                           headers={"content-type": "multipart/form-data; boundary=x"})
    assert streamed.status_code == 413

    buffer = io.BytesIO()
    Image.new("L", (3000, 2000)).save(buffer, "PNG")  # 6 MP in a few kB
    many_pixels = post_image(client, buffer.getvalue(), name="big.png")
    assert many_pixels.status_code == 413 and "megapixels" in many_pixels.json()["detail"]


def test_websocket_keeps_face_ids(client: TestClient, media: Path, recognizer) -> None:
    frames = video_frames_jpeg(media / "pyfeat_single_face.mp4", count=6)
    with client.websocket_connect(STREAM) as ws:
        replies = []
        for data in frames:
            ws.send_bytes(data)
            replies.append(ws.receive_json())
        ws.send_bytes(b"garbage")
        error = ws.receive_json()
        ws.send_bytes(frames[0])
        after_error = ws.receive_json()
    assert [r["seq"] for r in replies] == list(range(1, 7))
    assert all(len(r["faces"]) == 1 for r in replies), [len(r["faces"]) for r in replies]
    assert len({r["faces"][0]["face_id"] for r in replies}) == 1
    assert set(replies[0]["faces"][0]["probabilities"]) == set(recognizer.classes)
    assert "expected JPEG" in error["error"]
    assert after_error["faces"]


def test_cross_origin_websocket_is_refused(client: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as info:
        with client.websocket_connect(STREAM, headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()
    assert info.value.code == 1008


def test_live_streams_are_capped(recognizer) -> None:
    from starlette.websockets import WebSocketDisconnect

    with TestClient(create_app(recognizer, Settings(max_streams=1)), base_url=LOCAL) as c:
        with c.websocket_connect(STREAM):
            with pytest.raises(WebSocketDisconnect) as info:
                with c.websocket_connect(STREAM) as second:
                    second.receive_json()
            assert info.value.code == 1013
        with c.websocket_connect(STREAM) as again:  # the slot is free again
            again.send_bytes(b"x")
            assert "error" in again.receive_json()


def test_page_is_self_contained(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text
    assert "http" not in page.text.replace("http-equiv", "")
    assert client.get("/docs").status_code == 404  # Swagger UI would load from a CDN
    assert "/api/v1/analyze" in client.get("/openapi.json").json()["paths"]


def test_keep_uploads(recognizer, media: Path, tmp_path: Path) -> None:
    with TestClient(create_app(recognizer, Settings(keep_uploads=tmp_path / "kept")), base_url=LOCAL) as c:
        assert post_image(c, (media / "pyfeat_multi_face.jpg").read_bytes(), name="../../x.jpg").status_code == 200
    kept = list((tmp_path / "kept").iterdir())
    assert len(kept) == 1 and kept[0].suffix == ".jpeg"


def test_analyze_video(client: TestClient, media: Path, recognizer) -> None:
    path = media / "pyfeat_single_face.mp4"
    response = client.post("/api/v1/analyze-video", files={"file": (path.name, path.read_bytes(), "video/mp4")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == path.name and body["frames"] > 10
    assert len(body["summary"]) == 1 and body["summary"][0]["frames"] == len(body["timeline"])
    plot = client.get(body["plot_url"])
    assert plot.headers["content-type"] == "image/png" and plot.content.startswith(b"\x89PNG")
    csv_lines = client.get(body["csv_url"]).text.splitlines()
    assert csv_lines[0].startswith("time_s,frame,face_id") and len(csv_lines) == len(body["timeline"]) + 1
    assert client.get("/api/v1/results/nope/timeline.png").status_code == 404

    image = (media / "pyfeat_multi_face.jpg").read_bytes()
    as_video = client.post("/api/v1/analyze-video", files={"file": ("clip.mp4", image, "video/mp4")})
    assert as_video.status_code == 400 and "expected a video" in as_video.json()["detail"]
    text = client.post("/api/v1/analyze-video", files={"file": ("clip.mp4", b"not a video" * 100, "video/mp4")})
    assert text.status_code == 400 and "expected MP4" in text.json()["detail"]


def test_serve_detect_every_on_a_real_server(client: TestClient, media: Path, tmp_path: Path) -> None:
    """``emolens serve --detect-every 3 --age``: the live stream re-classifies the last boxes for two
    frames before detecting again, uploaded videos are analysed the same way, and ages come along."""
    import socket
    import subprocess
    import sys
    import time

    import httpx
    import numpy as np
    from websockets.sync.client import connect

    face = video_frames_jpeg(media / "pyfeat_single_face.mp4", count=1)[0]
    blank = cv2.imencode(".jpg", np.full((480, 640, 3), 128, np.uint8))[1].tobytes()
    with client.websocket_connect(STREAM) as ws:  # every frame detected (the default)
        every = []
        for data in (face, blank):
            ws.send_bytes(data)
            every.append(len(ws.receive_json()["faces"]))
    assert every == [1, 0]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "emolens", "serve", "--port", str(port), "--detect-every", "3",
                                   "--age"], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{base}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        with connect(f"ws://127.0.0.1:{port}/api/v1/stream") as ws:
            replies = []
            for data in (face, blank, blank, blank):
                ws.send(data)
                replies.append(json.loads(ws.recv(timeout=30)))
        assert [len(r["faces"]) for r in replies] == [1, 1, 1, 0]  # frames 2-3 carry frame 1's box
        assert replies[1]["faces"][0]["box"] == replies[2]["faces"][0]["box"] == replies[0]["faces"][0]["box"]
        assert all(r["faces"][0]["face_id"] == 0 and 0 < r["faces"][0]["age"] < 100 for r in replies[:3])

        path = media / "pyfeat_single_face.mp4"
        video = httpx.post(f"{base}/api/v1/analyze-video", files={"file": (path.name, path.read_bytes(), "video/mp4")},
                           timeout=120).json()
        boxes = {r["frame"]: tuple(r[k] for k in ("x1", "y1", "x2", "y2")) for r in video["timeline"]}
        assert len(boxes) > 60 and all(boxes[f] == boxes.get(f - f % 3) for f in boxes)
        assert len(video["summary"]) == 1 and 0 < video["summary"][0]["median_age"] < 100
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_on_a_port_in_use_says_so_before_any_url():
    """A second ``emolens serve`` on a taken port: one error line naming --port, no URL (the other
    process's page), no uvicorn traceback or start-up lines."""
    import socket

    from typer.testing import CliRunner

    from emolens.apps.cli import app

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = CliRunner().invoke(app, ["serve", "--port", str(port)])
    assert r.exit_code == 2, r.output
    assert f"port {port} on 127.0.0.1 is already in use" in r.output and f"--port {port + 1}" in r.output
    assert "http://" not in r.output and "Errno" not in r.output


def test_an_upload_is_decoded_and_checked_once(client: TestClient, media: Path, monkeypatch) -> None:
    """The decoding process checks an uploaded image; the recognizer does not load and check the
    decoded array a second time."""
    import emolens.inference.recognizer as recognizer_module

    calls = []
    monkeypatch.setattr(recognizer_module, "load_image", lambda *a, **k: calls.append(a) or None)
    response = post_image(client, (media / "deepface_couple.jpg").read_bytes(), query="?annotate=true")
    assert response.status_code == 200 and len(response.json()["faces"]) == 2 and calls == []
