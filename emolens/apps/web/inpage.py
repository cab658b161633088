"""Recognition inside the browser: what the page needs to run the models itself.

The page (``static/``) loads ``assets/config.json`` and the ONNX files it names (detector, expression
model, and the age model when the server estimates ages), then runs them
with onnxruntime-web (``static/vendor/onnxruntime-web/``, pinned in ``package.json`` and copied by
``scripts/vendor_web_runtime.py``). The config carries everything the Python side decides — the
model's classes, crop spec and temperature, BlazeFace's options and thresholds, the tracker's
settings — so the page's JavaScript (``static/inpage/``) holds no copy of them.
``emolens serve`` serves these under ``/assets/``; :func:`export_web` writes them, with the page,
into a static folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import emolens
from emolens.apps.web.sitedir import MANIFEST, fresh_folder
from emolens.errors import ConfigError
from emolens.inference.classifier import AgeEstimator, EmotionClassifier
from emolens.inference.recognizer import Recognizer
from emolens.inference.tracking import DEFAULT_SMOOTHING, FaceTracker

if TYPE_CHECKING:
    from fastapi import FastAPI  # the [web] extra: imported when routes are added, not with this module

STATIC = Path(__file__).with_name("static")
#: Detectors the page can run, and the BlazeFace variant behind each.
BROWSER_DETECTORS = {"blazeface": "full", "blazeface-short": "short"}
DEFAULT_BROWSER_DETECTOR = "blazeface"
#: Files of ``static/`` that an exported page keeps under ``static/`` (next to ``inpage/`` and ``vendor/``).
PAGE_FILES = ("app.js", "style.css")
#: What the page may load: its own files (scripts, styles, models, the runtime and its workers), data:
#: and blob: images, the camera; it may compile WebAssembly but never evaluate strings as code.
#: ``emolens serve`` sends it as a header (adding frame-ancestors, which only a header can set); an
#: exported page carries it in a meta tag.
PAGE_CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data: blob:; "
            "media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'")


@dataclass(frozen=True)
class InPageAssets:
    """``config`` (the JSON served as ``assets/config.json``) and ``files``: name in ``assets/`` → file."""

    config: dict[str, Any]
    files: dict[str, Path]


def browser_detector(name: str) -> str:
    """The detector the page runs for a server detector ``name``: a BlazeFace variant as it is (the
    first of a fallback chain such as ``blazeface,yunet-320``), anything else as ``blazeface``."""
    first = name.split(",")[0].strip().lower()
    return first if first in BROWSER_DETECTORS else DEFAULT_BROWSER_DETECTOR


def inpage_assets(model: str | Path | EmotionClassifier = "default", detector: str = DEFAULT_BROWSER_DETECTOR,
                  smoothing: float = DEFAULT_SMOOTHING, server: bool = True, age: AgeEstimator | None = None
                  ) -> InPageAssets:
    """Config and files for the page to run ``model`` with ``detector`` (a key of
    :data:`BROWSER_DETECTORS`); ``server``: whether the page may also offer the server mode;
    ``age``: an age model the page runs on every face too (``age.onnx``)."""
    from emolens.inference.detectors.blazeface import ASSETS, BlazeFaceDetector

    if detector not in BROWSER_DETECTORS:
        raise ConfigError(f"detector {detector!r} does not run in the browser; choose one of "
                         f"{', '.join(BROWSER_DETECTORS)}")
    classifier = model if isinstance(model, EmotionClassifier) else EmotionClassifier.load(model)
    variant = BROWSER_DETECTORS[detector]
    blazeface = BlazeFaceDetector(variant)
    tracker = FaceTracker(smoothing=smoothing)
    config = {
        "emolens": emolens.__version__,
        "server": server,
        "model": {"name": classifier.path.stem, "file": "model.onnx", "model_name": classifier.model_name,
                  "classes": list(classifier.classes), "crop": classifier.crop.to_dict(),
                  "temperature": classifier.temperature},
        "detector": {"name": detector, "file": "detector.onnx", "options": blazeface.options,
                     "min_score": blazeface.min_score, "candidate_score": blazeface.candidate_score,
                     "verify_score": blazeface.verify_score, "max_verify": blazeface.max_verify,
                     "context": blazeface.context, "iou_threshold": blazeface.iou_threshold,
                     "box_calibration": list(blazeface.box_calibration)},
        "tracking": {"smoothing": tracker.smoothing, "iou_threshold": tracker.iou_threshold,
                     "max_distance": tracker.max_distance, "max_missed": tracker.max_missed},
    }
    files = {"model.onnx": classifier.path, "detector.onnx": ASSETS / f"blazeface_{variant}.onnx"}
    if age is not None:
        config["age"] = {"file": "age.onnx", "model_name": age.model_name, "classes": list(age.classes),
                         "crop": age.crop.to_dict(), "temperature": age.temperature}
        files["age.onnx"] = age.path
    return InPageAssets(config, files)


def add_routes(app: FastAPI, recognizer: Recognizer, smoothing: float) -> None:
    """Serve the page's ``/assets/config.json``, ``/assets/model.onnx`` and ``/assets/detector.onnx``
    (and ``/assets/age.onnx`` with age on) for ``recognizer``'s models and stream detector (see
    :func:`browser_detector`), with the server's stream ``smoothing``."""
    from fastapi import HTTPException
    from fastapi.responses import FileResponse

    assets = inpage_assets(recognizer.classifier, browser_detector(recognizer.stream_detector.name),
                           smoothing, age=recognizer.age)

    @app.get("/assets/config.json", include_in_schema=False)
    def config() -> dict[str, Any]:
        return assets.config

    @app.get("/assets/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        if name not in assets.files:
            raise HTTPException(404, f"no asset {name!r}; the page's assets are config.json, "
                                     f"{', '.join(assets.files)}")
        return FileResponse(assets.files[name], media_type="application/octet-stream")


def notice(assets: InPageAssets) -> str:
    """The licence notice of an exported page: emolens, onnxruntime-web, BlazeFace, the model's data."""
    from emolens.inference.detectors.blazeface import ASSETS

    blazeface = next(p for p in (ASSETS / "NOTICE").read_text().split("\n\n") if "blazeface" in p.lower())
    model = assets.config["model"]
    return (
        f"emolens {emolens.__version__} in-browser recognition — third-party notices\n\n"
        "emolens (index.html, static/app.js, static/style.css, static/inpage/): MIT License.\n\n"
        "static/vendor/onnxruntime-web/: onnxruntime-web, MIT License, Copyright (c) Microsoft Corporation;\n"
        "the full text is in static/vendor/onnxruntime-web/LICENSE.\n\n"
        f"assets/detector.onnx ({assets.config['detector']['name']}):\n{blazeface}\n\n"
        f"assets/model.onnx ({model['name']}, {model['model_name']}): trained by emolens; see its model card\n"
        "(emolens/weights/*.md) for the training data (FER2013, AffectNet: research datasets, not shipped).\n"
        + (f"\nassets/age.onnx ({assets.config['age']['model_name']}): trained by emolens on UTKFace (non-commercial "
           "research use only); see emolens/weights/age.md, including what age estimation must not be used for.\n"
           if "age" in assets.config else "")
    )


def export_web(dest: str | Path, model: str | Path = "default", detector: str = DEFAULT_BROWSER_DETECTOR,
               force: bool = False, age: bool | str | Path = False) -> list[Path]:
    """Write a self-contained static copy of the page that recognises in the browser only.

    ``dest`` gets ``index.html``, ``static/`` (script, styles, the in-page modules, the vendored
    runtime), ``assets/`` (config.json and the ONNX files) and ``NOTICE.txt``; any static host
    serves it (``python -m http.server 8080 --bind 127.0.0.1 -d DEST``). ``dest`` must be empty or absent unless ``force``.
    ``age``: also estimate each face's apparent age in the page (``True``: the bundled ``age``
    model; or an age model's name or .onnx path). Returns the written files.

    The page is written into a new folder that then takes ``dest``'s place
    (:func:`~emolens.apps.web.sitedir.fresh_folder`): with ``force`` an earlier export is replaced,
    and a folder holding anything else is moved aside whole (``DEST.previous``), never deleted.
    """
    dest = Path(dest)
    age_model = AgeEstimator.load("age" if age is True else age) if age else None
    assets = inpage_assets(model, detector, server=False, age=age_model)
    with fresh_folder(dest, force) as tmp:
        static = tmp / "static"
        static.mkdir()
        charset = '<meta charset="utf-8">'
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        assert charset in page, "static/index.html lost its charset meta tag"
        (tmp / "index.html").write_text(page.replace(
            charset, f'{charset}\n  <meta http-equiv="Content-Security-Policy" content="{PAGE_CSP}">', 1), encoding="utf-8")
        for name in PAGE_FILES:
            shutil.copy(STATIC / name, static / name)
        shutil.copytree(STATIC / "inpage", static / "inpage")
        shutil.copytree(STATIC / "vendor", static / "vendor")
        (tmp / "assets").mkdir()
        (tmp / "assets" / "config.json").write_text(json.dumps(assets.config, indent=2) + "\n")
        for name, path in assets.files.items():
            shutil.copy(path, tmp / "assets" / name)
        (tmp / "NOTICE.txt").write_text(notice(assets))
    return sorted(p for p in dest.rglob("*") if p.is_file() and p.name != MANIFEST)
