"""Age on the web: ``emolens serve --age`` answers with ages (REST, page assets), and the page's
JavaScript estimates the same ages as Python and smooths them like the Python tracker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("selenium")
from fastapi.testclient import TestClient  # noqa: E402
from test_web_inpage import chrome, exported, publish, run_in_page, wait_for_frames, wait_for_mode  # noqa: E402, F401

from emolens.apps.web.inpage import inpage_assets  # noqa: E402
from emolens.apps.web.server import Settings, create_app  # noqa: E402
from emolens.images import load_image  # noqa: E402
from emolens.inference.classifier import WEIGHTS, AgeEstimator  # noqa: E402
from emolens.inference.detectors.blazeface import BlazeFaceDetector  # noqa: E402
from emolens.inference.results import FaceResult  # noqa: E402
from emolens.inference.tracking import FaceTracker  # noqa: E402

pytestmark = pytest.mark.skipif(not (WEIGHTS / "age.onnx").is_file(), reason="no bundled age model")


def test_serve_age_answers_with_ages(media: Path) -> None:
    app = create_app(settings=Settings(model="fer2013-fast", detector="yunet", age=True))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        assert client.get("/api/v1/models").json()["attributes"] == ["age"]
        photo = (media / "pyfeat_multi_face.jpg").read_bytes()
        faces = client.post("/api/v1/analyze", files={"file": ("g.jpg", photo, "image/jpeg")}).json()["faces"]
        assert len(faces) == 5 and all(10 < f["age"] < 80 for f in faces)
        config = client.get("/assets/config.json").json()
        assert config["age"]["file"] == "age.onnx" and config["age"]["crop"]["size"] == 64
        assert client.get("/assets/age.onnx").content == (WEIGHTS / "age.onnx").read_bytes()
    plain = create_app(settings=Settings(model="fer2013-fast", detector="yunet"))
    with TestClient(plain, base_url="http://127.0.0.1") as client:
        assert client.get("/api/v1/models").json()["attributes"] == []
        assert "age" not in client.get("/assets/config.json").json()


@pytest.mark.slow
def test_page_estimates_ages_like_python(exported: tuple[str, Path], chrome, media: Path) -> None:  # noqa: F811  (pytest fixtures imported above)
    url, dest = exported
    chrome.get(f"{url}/?mode=browser")
    wait_for_mode(chrome)
    estimator = AgeEstimator.load("age")
    assets = inpage_assets("fer2013-fast", "blazeface", server=False, age=estimator)
    for name, path in assets.files.items():
        shutil.copy(path, dest / "assets" / f"age-test-{name}")
    config = {**assets.config, **{k: {**assets.config[k], "file": f"age-test-{assets.config[k]['file']}"}
                                  for k in ("model", "detector", "age")}}
    detector = BlazeFaceDetector("full")
    photos = [load_image(media / f"{n}.jpg") for n in ("pyfeat_multi_face", "face_recognition_obama_and_biden",
                                                        "deepface_couple")]
    entries = publish(dest, "age", photos)
    for entry, rgb in zip(entries, photos, strict=True):
        entry["boxes"] = [list(map(int, d.box)) for d in detector.detect(rgb)]
    page = run_in_page(chrome, """
        const engine = await engineModule.loadEngine(extra, new URL('assets/config.json', document.baseURI));
        const ages = [];
        for (const [i, e] of entries.entries()) ages.push(...await engine.ages(images[i], e.boxes));
        const tracker = engine.tracker();
        const tracked = [30, 40, 40].map((age) => tracker.update(
            [{box: [10, 10, 50, 50], probabilities: {happy: 1}, age}])[0].age);
        const face = (await engine.analyze(images[0])).faces[0];
        return {ages, tracked, face};
    """, entries, config)
    python = np.concatenate([estimator.estimate_faces(rgb, e["boxes"]) for rgb, e in zip(photos, entries)])
    assert len(python) >= 8 and np.abs(np.array(page["ages"]) - python).max() < 0.05
    tracker = FaceTracker(smoothing=config["tracking"]["smoothing"])
    expected = [tracker.update([FaceResult((10, 10, 50, 50), 1.0, {"happy": 1.0}, age=a)])[0].age for a in (30, 40, 40)]
    assert page["tracked"] == pytest.approx(expected)
    assert 10 < page["face"]["age"] < 80


@pytest.mark.slow
def test_static_export_with_age(exported: tuple[str, Path], chrome) -> None:  # noqa: F811  (pytest fixtures imported above)
    """``emolens export-web --age``: the static page ships the age model and shows an age per face."""
    from typer.testing import CliRunner

    from emolens.apps.cli import app as cli

    url, dest = exported
    site = dest / "with-age"  # served by the same plain http.server, under /with-age/
    run = CliRunner().invoke(cli, ["export-web", str(site), "--model", "fer2013-fast", "--age"])
    assert run.exit_code == 0, run.output
    config = json.loads((site / "assets" / "config.json").read_text())
    assert config["age"]["file"] == "age.onnx" and config["age"]["crop"]["size"] == 64
    assert (site / "assets" / "age.onnx").read_bytes() == (WEIGHTS / "age.onnx").read_bytes()
    assert "what age estimation must not be used for" in (site / "NOTICE.txt").read_text()
    chrome.get(f"{url}/with-age/")
    assert wait_for_mode(chrome) == "browser"
    chrome.find_element("id", "start").click()
    face = wait_for_frames(chrome, 3)["faces"][0]
    assert 10 < face["age"] < 80
    chrome.find_element("id", "stop").click()
