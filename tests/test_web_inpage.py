"""Recognition inside the browser (onnxruntime-web): the page's config and assets, `emolens
export-web`, and Debian Chromium end to end — both modes with a fake camera from a real video, the
network log during a live run, the static export from a plain HTTP server, and parity of the
page's JavaScript (crops, models, detector, tracker) with the Python package on the same images."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("selenium")
from fastapi.testclient import TestClient  # noqa: E402
from helpers import video_frames  # noqa: E402
from test_web_browser import server_url  # noqa: E402, F401
from typer.testing import CliRunner  # noqa: E402
from webtools import CHROMEDRIVER, CHROMIUM, chrome_driver, free_port, write_y4m  # noqa: E402

from emolens.apps.cli import app as cli  # noqa: E402
from emolens.apps.web.inpage import BROWSER_DETECTORS, STATIC, browser_detector, export_web, inpage_assets  # noqa: E402
from emolens.apps.web.server import create_app  # noqa: E402
from emolens.boxes import box_iou  # noqa: E402
from emolens.images import load_image  # noqa: E402
from emolens.inference.classifier import WEIGHTS, EmotionClassifier, list_bundled_models, resolve_model  # noqa: E402
from emolens.inference.detectors.blazeface import ASSETS, BlazeFaceDetector  # noqa: E402
from emolens.inference.recognizer import Recognizer  # noqa: E402
from emolens.inference.results import FaceResult  # noqa: E402
from emolens.inference.stream import StreamAnalyzer  # noqa: E402
from emolens.inference.tracking import FaceTracker  # noqa: E402
from emolens.preprocess import CropSpec, crop_face  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUNTIME = STATIC / "vendor" / "onnxruntime-web"
ARTIFACTS = REPO / "test-artifacts"
MODELS = ("mixed8", "mixed8-fast", "fer2013", "fer2013-fast", "affectnet8", "accurate", "accurate-int8")
#: One engine per bundled model; together they cover both detectors the page runs.
PAIRS = (("fer2013", "blazeface"), ("fer2013-fast", "blazeface-short"), ("affectnet8", "blazeface"),
         ("mixed8", "blazeface-short"), ("mixed8-fast", "blazeface"), ("accurate", "blazeface-short"),
         ("accurate-int8", "blazeface"))  # every bundled emotion model

#: How closely the page must reproduce Python: (top-1 agreement, mean and largest probability
#: difference). Float models to rounding. int8 models less: the page's WebAssembly kernels and ONNX
#: Runtime's x86 ones round the quantised arithmetic differently, which moves faces near a decision
#: boundary (measured on accurate-int8's parity faces: 97.3-97.8 % agreement, mean difference
#: 0.0033-0.0038, largest 0.08-0.13); a page that cut or normalised faces wrongly would be far off
#: on the mean (the crops themselves are compared byte for byte).
FLOAT_PARITY = (0.99, 1e-3, 1e-3)
INT8_PARITY = (0.95, 0.01, 0.3)


def quantised(model: str | Path) -> bool:
    """Whether a model's graph computes in int8 (QDQ), whatever its name."""
    import onnx

    return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(resolve_model(model))).graph.node)


def require_models() -> None:
    missing = [m for m in MODELS if not (WEIGHTS / f"{m}.onnx").is_file()]
    if missing:
        pytest.skip(f"bundled models {missing} not found in {WEIGHTS}")


# ---------------------------------------------------------------- without a browser


def test_vendored_runtime_is_the_pinned_version() -> None:
    manifest = json.loads((RUNTIME / "MANIFEST.json").read_text())
    pinned = json.loads((REPO / "package.json").read_text())["dependencies"]["onnxruntime-web"]
    assert manifest["version"] == pinned
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((RUNTIME / name).read_bytes()).hexdigest() == digest, f"{name} differs from MANIFEST.json"
    assert f"v{pinned}" in (RUNTIME / "ort.wasm.bundle.min.mjs").read_text()[:200]
    assert (RUNTIME / "LICENSE").read_text().count("MIT License") == 1


def test_page_config_comes_from_the_python_side() -> None:
    require_models()
    config = inpage_assets("affectnet8", "blazeface-short", smoothing=0.3).config
    classifier = EmotionClassifier.load("affectnet8")
    detector = BlazeFaceDetector("short")
    assert config["model"]["classes"] == list(classifier.classes)
    assert config["model"]["crop"] == classifier.crop.to_dict()
    assert config["detector"]["options"] == detector.options
    assert (config["detector"]["min_score"], config["detector"]["verify_score"]) == (detector.min_score,
                                                                                     detector.verify_score)
    assert config["tracking"]["smoothing"] == 0.3
    with pytest.raises(ValueError, match="does not run in the browser; choose one of blazeface, blazeface-short"):
        inpage_assets("fer2013", "haar")
    assert [browser_detector(d) for d in ("blazeface-short", "blazeface,yunet-320", "haar", "yunet")] == [
        "blazeface-short", "blazeface", "blazeface", "blazeface"]


def test_server_serves_the_page_assets_cross_origin_isolated() -> None:
    require_models()
    with TestClient(create_app(Recognizer("fer2013-fast", detector="haar")), base_url="http://127.0.0.1") as client:
        page = client.get("/")
        assert page.headers["cross-origin-opener-policy"] == "same-origin"
        assert page.headers["cross-origin-embedder-policy"] == "require-corp"
        assert "script-src 'self' 'wasm-unsafe-eval'" in page.headers["content-security-policy"]
        config = client.get("/assets/config.json").json()
        assert config["server"] is True and config["model"]["name"] == "fer2013-fast"
        assert config["detector"]["name"] == "blazeface"  # haar does not run in a browser
        assert client.get("/assets/model.onnx").content == (WEIGHTS / "fer2013-fast.onnx").read_bytes()
        assert client.get("/assets/detector.onnx").content == (ASSETS / "blazeface_full.onnx").read_bytes()
        missing = client.get("/assets/other.onnx")
        assert missing.status_code == 404 and "config.json, model.onnx, detector.onnx" in missing.json()["detail"]
        wasm = client.get("/static/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm")
        assert wasm.headers["content-type"] == "application/wasm"
        assert "javascript" in client.get("/static/inpage/engine.mjs").headers["content-type"]


def test_export_web_command(tmp_path: Path) -> None:
    require_models()
    dest = tmp_path / "site"
    run = CliRunner().invoke(cli, ["export-web", str(dest), "--model", "fer2013-fast", "--detector", "blazeface-short"])
    assert run.exit_code == 0, run.output
    assert f"python -m http.server 8080 --bind 127.0.0.1 -d {dest}" in run.output  # this machine only, not serve's 8000
    assert "http://127.0.0.1:8080/" in run.output
    files = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    assert {"index.html", "NOTICE.txt", "assets/config.json", "assets/model.onnx", "assets/detector.onnx",
            "static/app.js", "static/inpage/engine.mjs", "static/vendor/onnxruntime-web/LICENSE",
            "static/vendor/onnxruntime-web/ort-wasm-simd-threaded.wasm"} <= files
    config = json.loads((dest / "assets" / "config.json").read_text())
    assert config["server"] is False and config["detector"]["name"] == "blazeface-short"
    assert (dest / "assets" / "detector.onnx").read_bytes() == (ASSETS / "blazeface_short.onnx").read_bytes()
    assert "Apache License 2.0" in (dest / "NOTICE.txt").read_text()

    again = CliRunner().invoke(cli, ["export-web", str(dest)])
    assert again.exit_code == 2 and "is not empty" in again.output
    assert CliRunner().invoke(cli, ["export-web", str(dest), "--force"]).exit_code == 0
    assert json.loads((dest / "assets" / "config.json").read_text())["detector"]["name"] == "blazeface"
    haar = CliRunner().invoke(cli, ["export-web", str(tmp_path / "other"), "--detector", "haar"])
    assert haar.exit_code == 2 and "blazeface, blazeface-short" in haar.output
    missing = CliRunner().invoke(cli, ["export-web", str(tmp_path / "other"), "--model", "nope"])
    assert missing.exit_code == 2 and "no bundled model 'nope'" in missing.output


# ---------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def chrome(media: Path, tmp_path_factory: pytest.TempPathFactory):
    if CHROMIUM is None or not Path(CHROMEDRIVER).exists():
        pytest.skip("Debian chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    tmp = tmp_path_factory.mktemp("chrome")
    driver = chrome_driver(write_y4m(media / "pyfeat_single_face.mp4", tmp / "camera.y4m"), tmp / "profile", logs=True)
    driver.set_script_timeout(180)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """``emolens export-web`` output served by ``python -m http.server`` (a plain static server)."""
    require_models()
    dest = tmp_path_factory.mktemp("export") / "site"
    export_web(dest)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(dest)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and server.poll() is None, "http.server did not start"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", dest
    server.terminate()
    server.wait(timeout=10)


def wait_for_mode(driver, timeout: float = 60) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return window.emolens.mode || window.emolens.error"))
    mode, error = driver.execute_script("return [window.emolens.mode, window.emolens.error]")
    assert error is None, error
    return mode


def wait_for_frames(driver, more_than: int, timeout: float = 60) -> dict:
    """Wait until the page has analysed more than ``more_than`` frames with a face; its last result."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
        "const e = window.emolens; return e.frames > arguments[0] && e.lastResult && e.lastResult.faces.length",
        more_than))
    return driver.execute_script("return window.emolens.lastResult")


def network_events(driver) -> list[dict]:
    """The DevTools Network events logged since the last call (the log is drained)."""
    events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    return [e for e in events if e["method"].startswith("Network.")]


#: URLs that never leave the machine: data: URLs, and Chromium's own pages and resources (recent
#: versions load chrome://resources/ scripts for internal pages, logged with the page's traffic).
LOCAL_SCHEMES = ("data:", "chrome:", "chrome-untrusted:", "chrome-extension:", "devtools:")


def outgoing(events: list[dict]) -> list[str]:
    """Everything the page sent: requests (method and URL; local schemes excepted), WebSockets
    opened, WebSocket messages."""
    sent = []
    for e in events:
        p = e["params"]
        if e["method"] == "Network.requestWillBeSent" and not p["request"]["url"].startswith(LOCAL_SCHEMES):
            sent.append(f"{p['request']['method']} {p['request']['url']}")
        elif e["method"] == "Network.webSocketCreated":
            sent.append(f"WebSocket {p['url']}")
        elif e["method"] == "Network.webSocketFrameSent":
            sent.append("WebSocket message")
    return sent


def check_face(face: dict, classes: list[str]) -> None:
    assert set(face) >= {"face_id", "box", "score", "emotion", "confidence", "probabilities"}
    assert list(face["probabilities"]) == classes and face["emotion"] in classes
    assert abs(sum(face["probabilities"].values()) - 1) < 1e-3  # the server rounds to 4 decimals
    assert face["confidence"] == max(face["probabilities"].values())
    box = face["box"]
    assert 0 <= box["x1"] < box["x2"] <= 640 and 0 <= box["y1"] < box["y2"] <= 480


@pytest.mark.slow
def test_browser_mode_sends_nothing_and_switches_to_the_server(server_url: str, chrome) -> None:  # noqa: F811  (a pytest fixture imported above)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    chrome.get(f"{server_url}/")
    assert wait_for_mode(chrome) == "browser"  # the default once the in-page models load
    isolated, threads, label = chrome.execute_script(
        "return [crossOriginIsolated, window.emolens.engine.backend.threads,"
        " document.getElementById('mode-label').textContent]")
    assert isolated is True and threads >= 1 and label == "in this browser"
    network_events(chrome)  # drain the page load
    chrome.find_element(By.ID, "start").click()
    result = wait_for_frames(chrome, 8)
    live = outgoing(network_events(chrome))
    assert live == [], f"the page sent data while recognising in browser mode: {live}"
    classes = chrome.execute_script("return window.emolens.engine.classes")
    check_face(result["faces"][0], classes)
    assert isinstance(result["faces"][0]["face_id"], int)
    assert chrome.find_element(By.ID, "fps").text.isdigit() and chrome.find_element(By.ID, "latency").text.endswith("ms")
    painted = chrome.execute_script(
        "const c = document.getElementById('overlay');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n;")
    assert painted > 500
    ARTIFACTS.mkdir(exist_ok=True)
    chrome.save_screenshot(str(ARTIFACTS / "web_inpage_browser_mode.png"))

    # switching goes to the WebSocket path, and the same network log sees it (the check above is live)
    chrome.find_element(By.ID, "mode-server").click()
    WebDriverWait(chrome, 20).until(lambda d: d.execute_script("return window.emolens.mode") == "server")
    WebDriverWait(chrome, 30).until(lambda d: d.execute_script("return 'seq' in window.emolens.lastResult"))
    result = wait_for_frames(chrome, chrome.execute_script("return window.emolens.frames") + 3)
    assert "seq" in result and chrome.find_element(By.ID, "mode-label").text == "on the server"
    check_face(result["faces"][0], classes)
    sent = outgoing(network_events(chrome))
    assert f"WebSocket {server_url.replace('http', 'ws')}/api/v1/stream" in sent and "WebSocket message" in sent
    chrome.find_element(By.ID, "stop").click()
    logs = [e for e in chrome.get_log("browser") if e["level"] == "SEVERE"]
    assert not logs, logs


@pytest.mark.slow
def test_static_export_from_a_plain_http_server(exported: tuple[str, Path], chrome, media: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, dest = exported
    network_events(chrome)
    chrome.get(f"{url}/")
    assert wait_for_mode(chrome) == "browser"
    assert chrome.execute_script("return document.getElementById('mode-server').disabled") is True
    assert not chrome.find_element(By.ID, "mode-server").is_displayed()  # no server choice without a server
    assert not chrome.find_element(By.CSS_SELECTOR, "#live .stage").is_displayed()  # no black box, camera off
    # a photo is recognised in the page: the faces Python finds, numbered left to right, nothing sent
    chrome.find_element(By.ID, "file").send_keys(str(media / "pyfeat_multi_face.jpg"))
    chrome.find_element(By.CSS_SELECTOR, "#upload-form button").click()
    WebDriverWait(chrome, 60).until(lambda d: d.find_element(By.ID, "annotated").get_attribute("hidden") is None)
    assert "recognised in this browser" in chrome.find_element(By.ID, "upload-status").text
    assert chrome.execute_script("return document.getElementById('annotated').naturalWidth") == 1000
    ids = chrome.execute_script("return [...document.querySelectorAll('#result-table tr td:first-child')]"
                                ".map((td) => td.textContent)")
    assert ids == [str(i) for i in range(len(Recognizer("default", detector="blazeface").detect(
        load_image(media / "pyfeat_multi_face.jpg"))))] and len(ids) >= 4
    place = "return [...document.querySelectorAll('#live .controls > *')].map((e) => e.getBoundingClientRect().left)"
    before = chrome.execute_script(place)
    chrome.find_element(By.ID, "start").click()
    check_face(wait_for_frames(chrome, 5)["faces"][0], json.loads((dest / "assets/config.json").read_text())["model"]["classes"])
    assert chrome.execute_script(place) == before  # FPS and latency appear without moving the controls
    requests = outgoing(network_events(chrome))
    assert requests, "the network log recorded nothing"
    for request in requests:  # only its own files, only GET
        method, _, target = request.partition(" ")
        assert method == "GET" and target.startswith(f"{url}/"), request
        path = target[len(url) + 1:].split("?")[0] or "index.html"
        assert (dest / path).is_file(), f"{request}: not a file of the export"
    ARTIFACTS.mkdir(exist_ok=True)
    chrome.save_screenshot(str(ARTIFACTS / "web_inpage_export.png"))
    chrome.find_element(By.ID, "stop").click()


# ---------------------------------------------------------------- parity with Python


def parity_samples(media: Path, fer: Path, affectnet: Path, muxspace: Path) -> list[tuple[np.ndarray, list]]:
    """Images and face boxes: dataset faces (whole image, so the crop margin leaves the image, or
    the AffectNet label box), the faces BlazeFace finds in the shared photos, and video frames."""
    samples = []
    for path in sorted((fer / "validation").glob("*/*")):
        rgb = load_image(path)
        samples.append((rgb, [(0, 0, rgb.shape[1], rgb.shape[0])]))
    for path in sorted(muxspace.glob("*/*")):
        rgb = load_image(path)
        samples.append((rgb, [(8, 12, rgb.shape[1] - 16, rgb.shape[0] - 4)]))
    for path in sorted((affectnet / "valid" / "images").glob("*")):
        rgb = load_image(path)
        label = path.parents[1] / "labels" / f"{path.stem}.txt"
        _, cx, cy, w, h = (float(v) for v in label.read_text().split()[:5])
        H, W = rgb.shape[:2]
        samples.append((rgb, [(round((cx - w / 2) * W), round((cy - h / 2) * H), round((cx + w / 2) * W),
                               round((cy + h / 2) * H))]))
    detector = BlazeFaceDetector("full")
    photos = [load_image(media / f"{n}.jpg") for n in ("pyfeat_multi_face", "face_recognition_obama_and_biden",
                                                       "deepface_couple")]
    frames = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in video_frames(media / "pyfeat_single_face.mp4", every=12)]
    for rgb in photos + frames:
        samples.append((rgb, [d.box for d in detector.detect(rgb)]))
    return samples


def publish(dest: Path, name: str, images: list[np.ndarray]) -> list[dict]:
    """Write RGB images as raw files the page can fetch; their descriptions for the page."""
    folder = dest / "parity" / name
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, rgb in enumerate(images):
        (folder / f"{i}.rgb").write_bytes(np.ascontiguousarray(rgb).tobytes())
        entries.append({"file": f"parity/{name}/{i}.rgb", "width": rgb.shape[1], "height": rgb.shape[0]})
    return entries


PAGE_HELPERS = """
const [entries, extra, done] = [arguments[0], arguments[1], arguments[arguments.length - 1]];
const ops = await import('./static/inpage/imageops.mjs');
const engineModule = await import('./static/inpage/engine.mjs');
const images = await Promise.all(entries.map(async (e) => ops.makeImage(e.width, e.height, 3,
    new Uint8Array(await (await fetch(e.file)).arrayBuffer()))));
"""


def run_in_page(driver, body: str, entries: list[dict], extra: object = None) -> object:
    script = ("(async () => {" + PAGE_HELPERS + body + "})().then((r) => arguments[arguments.length - 1](r),"
              " (e) => arguments[arguments.length - 1]({error: String(e && e.stack || e)}));")
    result = driver.execute_async_script(script, entries, extra)
    assert not (isinstance(result, dict) and "error" in result), result
    return result


@pytest.mark.slow
def test_page_matches_python(exported: tuple[str, Path], chrome, media: Path, fer_small: Path,
                             affectnet_small: Path, muxspace_small: Path) -> None:
    url, dest = exported
    chrome.get(f"{url}/?mode=browser")
    wait_for_mode(chrome)
    samples = parity_samples(media, fer_small, affectnet_small, muxspace_small)
    entries = publish(dest, "faces", [rgb for rgb, _ in samples])
    for entry, (_, boxes) in zip(entries, samples, strict=True):
        entry["boxes"] = [list(map(int, b)) for b in boxes]
    assert sum(len(b) for _, b in samples) >= 150

    # 1. crops: byte for byte, for grey/RGB, sizes below and above the faces, both contrasts
    specs = [CropSpec(48, 1), CropSpec(48, 1, contrast="equalize"), CropSpec(64, 3, margin=0.2),
             CropSpec(40, 3, square=False, contrast="equalize")]
    crops = run_in_page(chrome, """
        return extra.flatMap((spec) => entries.flatMap((e, i) => e.boxes.map((box) =>
            btoa(String.fromCharCode(...ops.cropFace(images[i], box, spec).data)))));
    """, entries, [s.to_dict() for s in specs])
    expected = [crop_face(rgb, box, spec) for spec in specs for rgb, boxes in samples for box in boxes]
    differ = [i for i, (js, py) in enumerate(zip(crops, expected, strict=True))
              if base64.b64decode(js) != py.tobytes()]
    assert not differ, f"{len(differ)} of {len(expected)} crops differ from Python's, e.g. #{differ[:5]}"

    # 2. models and detectors: the same probabilities and boxes as Python
    assert sorted(m for m, _ in PAIRS) == list_bundled_models(), "every bundled model is compared"
    stats = {"faces": len(expected) // len(specs), "crops_identical": len(expected)}
    for model, detector in PAIRS:
        assets = inpage_assets(model, detector, server=False)
        config = {**assets.config, "model": {**assets.config["model"], "file": f"{model}.onnx"},
                  "detector": {**assets.config["detector"], "file": f"{detector}.onnx"}}
        shutil.copy(assets.files["model.onnx"], dest / "assets" / f"{model}.onnx")
        shutil.copy(assets.files["detector.onnx"], dest / "assets" / f"{detector}.onnx")
        page = run_in_page(chrome, """
            const engine = await engineModule.loadEngine(extra, new URL('assets/config.json', document.baseURI));
            const out = [];
            for (const [i, e] of entries.entries()) {
              const probs = await engine.classify(images[i], e.boxes);
              const found = e.width > 200 ? await engine.detector.detect(images[i]) : null;
              out.push({probs: probs.map((p) => engine.classes.map((c) => p[c])), found});
            }
            return out;
        """, entries, config)
        classifier = EmotionClassifier.load(model)
        js = np.array([p for r in page for p in r["probs"]])
        py = np.concatenate([classifier.classify_faces(rgb, boxes) for rgb, boxes in samples])
        agree = float((js.argmax(1) == py.argmax(1)).mean())
        stats[model] = {"top1_agreement": agree, "max_abs_diff": float(np.abs(js - py).max()),
                        "mean_abs_diff": float(np.abs(js - py).mean())}
        least_agreement, mean_diff, most_diff = INT8_PARITY if quantised(model) else FLOAT_PARITY
        assert agree >= least_agreement and np.abs(js - py).mean() < mean_diff and np.abs(js - py).max() < most_diff, (
            model, stats[model])
        shift = 0

        blazeface = BlazeFaceDetector(BROWSER_DETECTORS[detector])
        for result, (rgb, _) in zip(page, samples, strict=True):
            if result["found"] is None:
                continue
            faces = blazeface.detect(rgb)
            assert len(result["found"]) == len(faces), (detector, rgb.shape)
            for js_face, py_face in zip(result["found"], faces, strict=True):
                assert box_iou(js_face["box"], py_face.box) > 0.98, (detector, js_face["box"], py_face.box)
                assert abs(js_face["score"] - py_face.score) < 1e-3
                assert np.abs(np.array(js_face["landmarks"]) - py_face.landmarks).max() < 0.5
                shift = max(shift, int(np.abs(np.array(js_face["box"]) - py_face.box).max()))
        stats[f"{model} + {detector}"] = {"max_box_shift_px": shift}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "web_inpage_parity.json").write_text(json.dumps(stats, indent=2) + "\n")


@pytest.mark.slow
def test_page_tracks_and_smooths_like_python(exported: tuple[str, Path], chrome, media: Path) -> None:
    url, dest = exported
    chrome.get(f"{url}/?mode=browser")
    wait_for_mode(chrome)

    # synthetic tracks: three faces walking, one jumping (centroid fallback), short gaps, one gap
    # longer than a track lives (the face comes back under a new id), a face leaving for good
    rng = np.random.default_rng(7)
    classes = ["anger", "happy", "neutral"]
    frames, pos = [], np.array([[50.0, 60], [300, 80], [500, 300]])
    for t in range(40):
        pos += rng.normal(0, 6, pos.shape)
        if t == 20:
            pos[1] += 45  # faster than any overlap
        faces = []
        for k, (x, y) in enumerate(pos):
            if (k == 0 and 10 <= t < 28) or (k == 2 and t >= 30) or rng.random() < 0.1:
                continue
            p = rng.dirichlet(np.ones(3))
            faces.append({"box": [int(x), int(y), int(x) + 60, int(y) + 70], "probabilities": dict(zip(classes, p))})
        frames.append(faces)
    js = chrome.execute_async_script("""
        const [frames, done] = [arguments[0], arguments[arguments.length - 1]];
        import('./static/inpage/tracking.mjs').then(({FaceTracker}) => {
          const tracker = new FaceTracker({smoothing: 0.6});
          done(frames.map((faces) => tracker.update(faces)));
        }, (e) => done(String(e)));
    """, frames)
    tracker = FaceTracker(smoothing=0.6)
    for faces, js_faces in zip(frames, js, strict=True):
        py = tracker.update([FaceResult(tuple(f["box"]), 1.0, f["probabilities"]) for f in faces])
        assert [f.face_id for f in py] == [f["face_id"] for f in js_faces]
        for f, g in zip(py, js_faces, strict=True):
            assert max(abs(f.probabilities[c] - g["probabilities"][c]) for c in classes) < 1e-12
    assert max(f["face_id"] for faces in js for f in faces) >= 3

    # end to end on consecutive video frames: detector, crops, model, tracker, as the live loop runs them
    rgbs = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in video_frames(media / "pyfeat_single_face.mp4")[:24]]
    entries = publish(dest, "video", rgbs)
    page = run_in_page(chrome, """
        const tracker = window.emolens.engine.tracker();
        const out = [];
        for (const img of images) out.push((await window.emolens.engine.analyze(img, tracker)).faces);
        return out;
    """, entries)
    recognizer = Recognizer("default", detector="blazeface")  # the model the page loads
    stream = StreamAnalyzer(recognizer)  # the server's per-frame path
    int8 = quantised(recognizer.classifier.path)
    least_agreement, mean_diff, most_diff = (0.9, *INT8_PARITY[1:]) if int8 else (1.0, *FLOAT_PARITY[1:])
    same, diffs = [], []
    for rgb, js_faces in zip(rgbs, page, strict=True):
        py = stream.process(rgb, color="rgb")
        assert [f.face_id for f in py] == [f["face_id"] for f in js_faces]
        for f, g in zip(py, js_faces, strict=True):
            assert f.box == tuple(g["box"][k] for k in ("x1", "y1", "x2", "y2"))
            same.append(f.emotion == g["emotion"])
            diffs += [abs(f.probabilities[c] - g["probabilities"][c]) for c in f.probabilities]
    assert len(same) >= 20 and np.mean(same) >= least_agreement, same
    assert np.mean(diffs) < mean_diff and max(diffs) < most_diff, (np.mean(diffs), max(diffs))


def placement_cases(media: Path) -> list[dict]:
    """Face boxes, label and panel sizes as Python's annotator measures them, on the group photos at
    full size and shrunk (crowded: panels move away from their faces or cover least)."""
    from emolens.inference.annotate import label_text, layout

    recognizer = Recognizer("default")
    cases = []
    for name in ("pyfeat_multi_face", "face_recognition_obama_and_biden", "deepface_couple"):
        result = recognizer.analyze(media / f"{name}.jpg")
        for width in (result.width, 640, 400, 260):
            k = width / result.width
            faces = [FaceResult(tuple(round(v * k) for v in f.box), f.score, f.probabilities, f.face_id, age=f.age)
                     for f in result.faces]
            size = (width, round(result.height * k))
            scale = max(0.6, min(size) / 480)
            thick = max(1, int(round(2 * scale)))
            labels = [[w + 6, h + b + 6] for (w, h), b in
                      (cv2.getTextSize(label_text(f), cv2.FONT_HERSHEY_SIMPLEX, 0.55 * scale, thick) for f in faces)]
            panel = [int(62 * scale) + int(70 * scale) + 6, max(10, int(14 * scale)) * len(recognizer.classes) + 2]
            cases.append({"boxes": [list(f.box) for f in faces], "labels": labels, "panels": [panel] * len(faces),
                          "size": list(size), "step": max(4, int(8 * scale)), "pad": thick,
                          "expected": [[list(label), list(panel)] for label, panel in layout(faces, size, scale)]})
    return cases


@pytest.mark.slow
def test_page_places_labels_and_numbers_faces_like_python(exported: tuple[str, Path], chrome, media: Path) -> None:
    """The page draws labels and probability panels by Python's placement rule (none covers a face
    or another label while there is room), and numbers faces left to right as Python does."""
    url, dest = exported
    chrome.get(f"{url}/?mode=browser")
    wait_for_mode(chrome)
    cases = placement_cases(media)
    page = chrome.execute_async_script("""
        const [cases, done] = [arguments[0], arguments[arguments.length - 1]];
        import('./static/inpage/layout.mjs').then(({layoutRects}) => done(cases.map((c) =>
            layoutRects(c.boxes, c.labels, c.panels, c.size, c.step, c.pad))), (e) => done(String(e)));
    """, cases)
    assert not isinstance(page, str), page
    moved = 0
    for case, js in zip(cases, page, strict=True):
        assert js == case["expected"], (case["size"], case["boxes"])
        moved += sum(panel[0] > box[2] + 3 or panel[2] < box[0] - 3 for (_, panel), box in zip(js, case["boxes"]))
    assert len(cases) == 12 and moved > 0  # the crowded cases exercise the search, not only the first choice

    photo = load_image(media / "pyfeat_multi_face.jpg")
    entries = publish(dest, "group", [photo])
    faces = run_in_page(chrome, """
        const engine = window.emolens.engine;
        return [(await engine.analyze(images[0])).faces, (await engine.analyze(images[0], engine.tracker())).faces];
    """, entries)
    stream = StreamAnalyzer(Recognizer("default", detector="blazeface")).process(photo, color="rgb")
    for js_faces in faces:
        assert [f["face_id"] for f in js_faces] == list(range(len(js_faces))) and len(js_faces) >= 4
        assert [f["box"]["x1"] for f in js_faces] == sorted(f["box"]["x1"] for f in js_faces)  # left to right
    assert [(f.face_id, f.box[0]) for f in stream] == [(f["face_id"], f["box"]["x1"]) for f in faces[1]]
