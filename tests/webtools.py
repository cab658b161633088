"""Real-server and headless-Chromium tools shared by the web tests and benchmarks/bench_web_inpage.py
(no tests here): a free port, a uvicorn server in a thread, half-open sockets (slowloris), a fake
webcam file, a Chromium driver."""

from __future__ import annotations

import selectors
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    import uvicorn

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = "/usr/bin/chromedriver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(config: uvicorn.Config) -> Iterator[None]:
    """Run ``config``'s uvicorn server in a thread until the block ends."""
    import uvicorn

    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def half_open_sockets(port: int, sockets: int, reopen_after_s: float, stop: threading.Event) -> None:
    """Slowloris on 127.0.0.1:``port``: hold ``sockets`` connections with a never-finished request
    head until ``stop``, each reopened ``reopen_after_s`` after the server closes it."""
    selector = selectors.DefaultSelector()
    due: list[float] = []

    def open_one() -> None:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            s.setblocking(False)
            selector.register(s, selectors.EVENT_READ)
        except OSError:
            due.append(time.monotonic() + reopen_after_s)

    for _ in range(sockets):
        open_one()
    while not stop.is_set():
        for key, _ in selector.select(0.05):
            try:
                closed = key.fileobj.recv(1024) == b""
            except OSError:
                closed = True
            if closed:
                selector.unregister(key.fileobj)
                key.fileobj.close()
                due.append(time.monotonic() + reopen_after_s)
        now = time.monotonic()
        for t in [t for t in due if t <= now]:
            due.remove(t)
            open_one()
    for key in list(selector.get_map().values()):
        key.fileobj.close()


def chrome_driver(camera_y4m: Path, profile: Path, *, logs: bool = False):
    """Headless Debian Chromium whose camera plays ``camera_y4m``; ``logs`` records the console and
    network (performance) logs."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={camera_y4m}", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                f"--user-data-dir={profile}"):
        options.add_argument(arg)
    if logs:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # A fixed chromedriver path: Selenium Manager never looks for (or downloads) a driver.
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def write_y4m(video: Path, out: Path, seconds: float = 4.0, size: tuple[int, int] = (640, 480)) -> Path:
    """Convert ``video`` to raw YUV4MPEG2 (I420, 30 fps), looping it to ``seconds``: a fake webcam."""
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(cv2.resize(frame, size), cv2.COLOR_BGR2YUV_I420))
    cap.release()
    assert frames, f"no frames decoded from {video}"
    width, height = size
    with out.open("wb") as f:
        f.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(int(seconds * 30)):
            f.write(b"FRAME\n")
            f.write(np.ascontiguousarray(frames[i % len(frames)]).tobytes())
    return out
