"""End to end: Debian Chromium with a fake webcam (a real video as .y4m) against the real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("selenium")
import uvicorn  # noqa: E402
from webtools import CHROMEDRIVER, CHROMIUM, chrome_driver, free_port, running_server, write_y4m  # noqa: E402

from emolens.apps.web.server import create_app  # noqa: E402

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "emolens" / "weights" / "fer2013.onnx"
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    if not WEIGHTS.exists():
        pytest.skip(f"{WEIGHTS} not found: the bundled default model is needed")
    port = free_port()
    with running_server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def browser(media: Path, tmp_path: Path):
    if CHROMIUM is None or not Path(CHROMEDRIVER).exists():
        pytest.skip("Debian chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    driver = chrome_driver(write_y4m(media / "pyfeat_single_face.mp4", tmp_path / "camera.y4m"), tmp_path / "profile")
    yield driver
    driver.quit()


def test_live_page_shows_faces_from_the_server(server_url: str, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server_url}/?mode=server")  # the page's default is recognition in the browser
    browser.find_element(By.ID, "start").click()
    live = browser.find_element(By.ID, "live")
    # the list is re-rendered on every reply: read it in one script call, not element by element
    snapshot = (
        "return [...document.querySelectorAll('#live-faces li')]"
        ".map(li => ({id: li.dataset.faceId, emotion: li.dataset.emotion}));"
    )
    WebDriverWait(browser, 20).until(
        lambda d: int(live.get_attribute("data-frames")) >= 5 and d.execute_script(snapshot)
    )
    faces = browser.execute_script(snapshot)
    classes = browser.execute_script("return fetch('/api/v1/models').then(r => r.json()).then(j => j.classes)")
    assert faces[0]["emotion"] in classes
    assert faces[0]["id"].isdigit()
    assert live.get_attribute("data-state") == "streaming"
    assert browser.execute_script("return window.emolens.mode") == "server"
    assert browser.find_element(By.ID, "latency").text.endswith("ms")
    # the overlay canvas holds drawn boxes: some pixels are not transparent
    painted = browser.execute_script(
        "const c = document.getElementById('overlay');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;"
    )
    assert painted > 500
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web_live.png"))
    logs = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs


def test_upload_photo_and_video(server_url: str, browser, media: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{server_url}/")
    rows = "return document.querySelectorAll('#result-table tr').length"

    browser.find_element(By.ID, "file").send_keys(str(media / "pyfeat_multi_face.jpg"))
    browser.find_element(By.CSS_SELECTOR, "#upload-form button").click()
    WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "annotated").get_attribute("hidden") is None)
    assert browser.execute_script("return document.getElementById('annotated').naturalWidth") == 1000
    assert browser.execute_script(rows) >= 3  # header + one row per face
    first = "return document.querySelector('#result-table tr:nth-child(2) td').textContent"
    assert browser.execute_script(first) == "0"  # the index drawn on the image and used by the CLI and JSON

    browser.find_element(By.ID, "file").send_keys(str(media / "pyfeat_single_face.mp4"))
    browser.find_element(By.CSS_SELECTOR, "#upload-form button").click()
    WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "timeline").get_attribute("hidden") is None)
    WebDriverWait(browser, 10).until(
        lambda d: d.execute_script("return document.getElementById('timeline').naturalWidth") > 0
    )
    assert browser.find_element(By.ID, "csv").get_attribute("href").endswith("/timeline.csv")
    assert browser.execute_script(rows) == 2
    assert not browser.find_element(By.ID, "annotated").is_displayed()  # the photo's result is gone
    browser.execute_script("document.getElementById('upload').scrollIntoView()")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web_upload.png"))


def test_annotated_video_plays_in_the_browser(browser, media: Path, tmp_path: Path) -> None:
    """`analyze --annotate` / `live --no-window` videos are H.264 MP4, which Chromium decodes
    (the mp4v fallback, written without PyAV, is refused: MEDIA_ERR_SRC_NOT_SUPPORTED)."""
    from selenium.webdriver.support.ui import WebDriverWait

    from emolens.inference.recognizer import Recognizer
    from emolens.inference.video import analyze_video

    if not WEIGHTS.exists():
        pytest.skip(f"{WEIGHTS} not found: the bundled default model is needed")
    clip = tmp_path / "clip.mp4"
    analyze_video(Recognizer(), media / "pyfeat_single_face.mp4", annotate_to=clip, max_frames=20)
    assert int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"h264"
    page = tmp_path / "video.html"
    page.write_text('<video id="v" src="clip.mp4" muted preload="auto"></video>')
    browser.get(page.as_uri())
    state = "const v = document.getElementById('v'); return [v.readyState, v.videoWidth, v.error && v.error.code];"
    WebDriverWait(browser, 20).until(lambda d: d.execute_script(state)[0] >= 2 or d.execute_script(state)[2])
    ready, width, error = browser.execute_script(state)
    assert error is None and ready >= 2 and width == 640
