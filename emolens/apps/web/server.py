"""The web app: a live page (webcam over a WebSocket), photo/video upload, and a REST API.

``create_app`` builds a FastAPI app around one ``Recognizer``; ``emolens serve`` runs it with
uvicorn. Inference runs in a bounded thread pool, so the event loop stays responsive.
Nothing is fetched from the network: the page, its script and styles ship in ``static/``, and
FastAPI's Swagger/ReDoc pages (which load from a CDN) are disabled — ``/openapi.json`` stays.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, File, HTTPException, Request, UploadFile, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

import emolens
from emolens.apps.web.decoding import DecodePool
from emolens.apps.web.guards import (
    LOCAL_HOSTS,
    TRY_AGAIN_LATER,
    BodyLimit,
    HostGuard,
    SecurityHeaders,
    WorkLimit,
    guarded_protocol,
)
from emolens.apps.web.inpage import PAGE_CSP
from emolens.apps.web.inpage import add_routes as add_inpage_routes
from emolens.apps.web.stream import serve_stream
from emolens.apps.web.uploads import image_reply, video_reply
from emolens.errors import EmolensError, LimitError
from emolens.inference.classifier import list_bundled_models
from emolens.inference.detectors import list_detectors
from emolens.inference.recognizer import Recognizer
from emolens.inference.stream import StreamAnalyzer, check_detect_every
from emolens.inference.tracking import DEFAULT_SMOOTHING, check_smoothing
from emolens.limits import WEB_MAX_PIXELS

if TYPE_CHECKING:
    import uvicorn

STATIC = Path(__file__).with_name("static")
MB = 1024 * 1024
#: The page may only use what this server serves (see :data:`~emolens.apps.web.inpage.PAGE_CSP`),
#: and no other site may frame it.
CSP = f"{PAGE_CSP}; frame-ancestors 'none'"
#: Cross-origin isolation (COOP + COEP) lets the in-browser runtime use WebAssembly threads.
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "Cross-Origin-Opener-Policy": "same-origin",
                    "Cross-Origin-Embedder-Policy": "require-corp"}


@dataclass(frozen=True)
class Settings:
    """Server limits and options (``emolens serve`` flags; docs/web.md lists them all).

    ``max_queued``: analysis requests admitted beyond the ``workers`` running ones (more get 503);
    ``allowed_hosts``: names the ``Host`` header may carry (``*``: any);
    ``read_timeout_s``: for a request head to arrive, and for an upload to bring more data;
    ``upload_timeout_s``: for a whole upload; ``max_connections``: open connections, streams included;
    ``decode_timeout_s``: for decoding one uploaded image or frame (:mod:`~emolens.apps.web.decoding`);
    ``stream_idle_s``: a live stream that sends no frame for this long is closed;
    ``detect_every``, ``smoothing``: live streams and uploaded videos (see
    :class:`~emolens.inference.stream.StreamAnalyzer`).
    """

    model: str = "default"
    detector: str = "default"
    age: bool = False  # also estimate each face's age (server-side recognition only)
    detect_every: int = 1
    smoothing: float = DEFAULT_SMOOTHING
    max_upload_mb: float = 50.0
    max_pixels: int = WEB_MAX_PIXELS
    max_frame_mb: float = 2.0
    max_streams: int = 64
    max_video_seconds: float = 120.0
    workers: int = min(4, os.cpu_count() or 1)
    artifact_ttl_s: float = 900.0
    max_artifacts: int = 32
    keep_uploads: Path | None = None
    max_queued: int = 4
    allowed_hosts: tuple[str, ...] = LOCAL_HOSTS
    read_timeout_s: float = 10.0
    upload_timeout_s: float = 120.0
    max_connections: int = 256
    decode_timeout_s: float = 5.0
    stream_idle_s: float = 60.0

    def __post_init__(self) -> None:
        check_detect_every(self.detect_every)
        check_smoothing(self.smoothing)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    @property
    def max_frame_bytes(self) -> int:
        return int(self.max_frame_mb * MB)


class ArtifactStore:
    """Bounded in-memory store for per-response files (plot PNG, CSV) with a time to live."""

    def __init__(self, ttl_s: float, max_items: int) -> None:
        self.ttl_s = ttl_s
        self.max_items = max_items
        self._items: OrderedDict[str, tuple[float, dict[str, tuple[str, bytes]]]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, files: dict[str, tuple[str, bytes]]) -> str:
        """Store ``{name: (media_type, content)}``; returns the id, evicting the oldest entries."""
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._expire()
            self._items[key] = (time.monotonic() + self.ttl_s, files)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return key

    def get(self, key: str, name: str) -> tuple[str, bytes] | None:
        with self._lock:
            self._expire()
            entry = self._items.get(key)
            return entry[1].get(name) if entry else None

    def _expire(self) -> None:
        now = time.monotonic()
        for key in [k for k, (expires, _) in self._items.items() if expires < now]:
            del self._items[key]


@dataclass(frozen=True)
class _Services:
    """What the routes share: the models, the settings, the inference threads, the decoding
    processes and the files kept for video responses."""

    recognizer: Recognizer
    settings: Settings
    executor: ThreadPoolExecutor
    decoder: DecodePool
    artifacts: ArtifactStore

    async def infer(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` in the inference threads, keeping the event loop free."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    @asynccontextmanager
    async def lifespan(self, _: FastAPI) -> AsyncIterator[None]:
        """The app's lifespan: on shutdown, stop the threads and the decoding processes."""
        yield
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.decoder.close()


def create_app(recognizer: Recognizer | None = None, settings: Settings = Settings()) -> FastAPI:
    """Build the app around ``recognizer`` (default: a ``Recognizer`` from ``settings``)."""
    if recognizer is None:
        recognizer = Recognizer(model=settings.model, detector=settings.detector,
                                attributes=("age",) if settings.age else ())
    services = _Services(
        recognizer, settings,
        ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="emolens-infer"),
        DecodePool(settings.workers, settings.decode_timeout_s),
        ArtifactStore(settings.artifact_ttl_s, settings.max_artifacts),
    )
    app = FastAPI(
        title="emolens",
        version=emolens.__version__,
        description="Facial emotion recognition: images, videos and a live WebSocket stream.",
        docs_url=None,  # Swagger UI and ReDoc load their assets from a CDN
        redoc_url=None,
        lifespan=services.lifespan,
    )
    app.add_exception_handler(EmolensError, _input_error)
    _add_meta_routes(app, services)
    _add_recognition_routes(app, services)
    _add_stream_route(app, services)
    _add_guards(app, settings)
    add_inpage_routes(app, recognizer, settings.smoothing)  # /assets/: config and models for recognition in the page
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _input_error(_: Request, exc: EmolensError) -> JSONResponse:
    """Every input emolens cannot use: 413 over a size limit, else 400; the message names the input."""
    return JSONResponse({"detail": str(exc)}, status_code=413 if isinstance(exc, LimitError) else 400)


def _add_guards(app: FastAPI, settings: Settings) -> None:
    """The middleware; the last added runs first: headers on every response, then hosts,
    admission, body limits."""
    app.add_middleware(BodyLimit, max_bytes=settings.max_upload_bytes, idle_timeout_s=settings.read_timeout_s,
                       total_timeout_s=settings.upload_timeout_s)
    app.add_middleware(WorkLimit, max_requests=settings.workers + settings.max_queued)
    app.add_middleware(HostGuard, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(SecurityHeaders, headers=SECURITY_HEADERS)


def _add_meta_routes(app: FastAPI, services: _Services) -> None:
    """The page, ``/health`` and ``/api/v1/models``."""
    recognizer = services.recognizer

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    # what was loaded, not what was asked for ("default"): the page's header names it in both modes
    loaded = {"model": recognizer.classifier.path.stem, "detector": recognizer.detector.name,
              "stream_detector": recognizer.stream_detector.name}

    @app.get("/health", tags=["meta"])
    def health() -> dict[str, Any]:
        """Liveness: the server is up and its model is loaded (named as loaded: ``accurate-int8``, not ``default``)."""
        return {"status": "ok", "version": emolens.__version__, **loaded}

    @app.get("/api/v1/models", tags=["meta"])
    def models() -> dict[str, Any]:
        """The loaded model and detectors (photos; video and live frames), the model's classes, and
        what else is installed."""
        return {**loaded, "classes": list(recognizer.classes),
                "attributes": ["age"] if recognizer.age is not None else [],
                "bundled_models": list_bundled_models(), "detectors": list_detectors()}


def _add_recognition_routes(app: FastAPI, services: _Services) -> None:
    """``/api/v1/analyze`` (an image), ``/api/v1/analyze-video`` and its result files."""
    recognizer, settings, artifacts = services.recognizer, services.settings, services.artifacts

    @app.post("/api/v1/analyze", tags=["recognition"])
    async def analyze(file: UploadFile = File(..., description="an image"),
                      annotate: bool = False) -> dict[str, Any]:
        """Faces and emotions in one image: ``ImageResult.to_dict()`` (as ``emolens ... --json``).

        With ``annotate=true`` the reply also holds ``annotated_jpeg``: the image with boxes,
        labels and bars, as base64 JPEG.
        """
        data = await file.read()
        return await services.infer(image_reply, recognizer, services.decoder, settings, data,
                                    file.filename or "upload", annotate)

    @app.post("/api/v1/analyze-video", tags=["recognition"])
    async def analyze_video_upload(file: UploadFile = File(..., description="a video (MP4, AVI, MOV, MKV, WebM)"),
                            ) -> dict[str, Any]:
        """Every frame of a video (up to ``max_video_seconds``), with tracked face ids.

        Returns ``VideoResult.to_dict()`` (summary per face and the timeline) plus ``plot_url``,
        ``csv_url`` and ``summary_csv_url``: files kept in memory for ``expires_in_s`` seconds.
        """
        result, files = await services.infer(video_reply, recognizer, settings, file.file,
                                             file.filename or "upload")
        key = artifacts.put(files)
        base = f"/api/v1/results/{key}"
        return {**result, "plot_url": f"{base}/timeline.png", "csv_url": f"{base}/timeline.csv",
                "summary_csv_url": f"{base}/summary.csv", "expires_in_s": settings.artifact_ttl_s}

    @app.get("/api/v1/results/{key}/{name}", tags=["recognition"])
    def result_file(key: str, name: str) -> Response:
        """A file from an ``analyze-video`` response, while it lasts."""
        found = artifacts.get(key, name)
        if found is None:
            raise HTTPException(404, "unknown or expired result file; analyze the video again")
        media_type, content = found
        return Response(content, media_type=media_type)


def _add_stream_route(app: FastAPI, services: _Services) -> None:
    """The live WebSocket, ``/api/v1/stream``: at most ``max_streams`` at once, one
    :class:`StreamAnalyzer` each (see :mod:`~emolens.apps.web.stream`)."""
    settings = services.settings
    active_streams = 0

    @app.websocket("/api/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        nonlocal active_streams
        await websocket.accept()  # before any close, so that clients see the close code, not HTTP 403
        if active_streams >= settings.max_streams:
            await websocket.close(code=TRY_AGAIN_LATER, reason="too many live streams")
            return
        active_streams += 1
        try:
            analyzer = StreamAnalyzer(services.recognizer, settings.detect_every, settings.smoothing)
            await serve_stream(websocket, analyzer, services.executor, services.decoder.decode, settings)
        finally:
            active_streams -= 1


def server_config(app: FastAPI, settings: Settings, host: str, port: int, log_level: str = "info") -> uvicorn.Config:
    """The ``uvicorn.Config`` that ``emolens serve`` runs: request heads must arrive within
    ``read_timeout_s``, at most ``max_connections`` are open, WebSocket messages fit one frame.

    WebSocket compression (permessage-deflate) is off: frames are JPEGs, which do not compress,
    and the size limit then applies to what the client sent (with compression on, an incompressible
    2 MB frame grows past it on the wire and was closed with 1009)."""
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_keep_alive=5,
                          http=guarded_protocol(settings.read_timeout_s, settings.max_connections),
                          ws_max_size=settings.max_frame_bytes + 1024, ws_per_message_deflate=False)
