"""``emolens serve``: the web page, WebSocket live stream and REST API (the ``[web]`` extra)."""

from __future__ import annotations

from pathlib import Path

import typer


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the server to the network."),
    port: int = typer.Option(8000, help="TCP port."),
    model: str = typer.Option("default", help="Bundled model name (default, fer2013, ...) or an exported .onnx file."),
    detector: str = typer.Option("default", help="Face detector: default (blazeface), blazeface-short or haar."),
    max_upload_mb: float = typer.Option(50.0, help="Largest accepted upload (413 above it)."),
    keep_uploads: Path | None = typer.Option(
        None, file_okay=False, help="Save uploaded photos and videos here (by default nothing is kept)."
    ),
) -> None:
    """Serve live browser recognition (webcam over a WebSocket) and a REST API under /api/v1."""
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise typer.BadParameter(
            f"the web server needs the [web] extra ({exc.name} is missing): pip install 'emolens[web]'"
        ) from None
    from emolens.apps.web.server import Settings, create_app

    settings = Settings(model=model, detector=detector, max_upload_mb=max_upload_mb, keep_uploads=keep_uploads)
    try:
        app = create_app(settings=settings)
    except (FileNotFoundError, ValueError) as exc:  # unknown model or detector
        raise typer.BadParameter(str(exc)) from None
    typer.echo(f"emolens: open http://{host}:{port}/ (REST API under /api/v1, schema at /openapi.json)")
    uvicorn.run(app, host=host, port=port, ws_max_size=int(settings.max_frame_mb * 2**20) + 1024,
                log_level="info")


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``emolens`` app."""
    app.command("serve")(serve)
