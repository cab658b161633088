"""``emolens serve``: the web page, WebSocket live stream and REST API (the ``[web]`` extra)."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import typer

from emolens.apps.cli.infer_cmds import DETECTOR_HELP, MODEL_HELP
from emolens.inference.tracking import DEFAULT_SMOOTHING


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes the server to the network."),
    port: int = typer.Option(8000, help="TCP port."),
    model: str = typer.Option("default", "--model", "-m", help=MODEL_HELP),
    detector: str = typer.Option("default", "--detector", "-d", help=DETECTOR_HELP),
    age: bool = typer.Option(False, "--age", help="Also estimate each face's apparent age (server-side recognition, "
                                                  "uploads and the REST API; see emolens/weights/age.md)."),
    detect_every: int = typer.Option(1, "--detect-every", min=1, help="Server-side live streams and uploaded videos: "
                                                                       "detect faces every k-th frame."),
    smoothing: float = typer.Option(DEFAULT_SMOOTHING, help="Per-face smoothing of live and video probabilities "
                                                            "(0 = off)."),
    max_upload_mb: float = typer.Option(50.0, help="Largest accepted upload (413 above it)."),
    keep_uploads: Path | None = typer.Option(
        None, file_okay=False, help="Save uploaded photos and videos here (by default nothing is kept)."
    ),
    allow_host: list[str] = typer.Option(
        [], "--allow-host", help="Another name clients may reach the server by (repeatable; '*' allows any). "
                                 "127.0.0.1, localhost, ::1 and --host are always allowed."
    ),
) -> None:
    """Serve live browser recognition (webcam over a WebSocket) and a REST API under /api/v1."""
    import fastapi  # noqa: F401  (a missing [web] extra is reported by the CLI in one line)
    import uvicorn

    from emolens.apps.web.guards import LOCAL_HOSTS
    from emolens.apps.web.server import Settings, create_app, server_config

    hosts = (*LOCAL_HOSTS, *([] if host in ("0.0.0.0", "::") else [host]), *allow_host)
    # An unknown model or detector, or smoothing out of range, raises: one error line (the CLI's boundary).
    settings = Settings(model=model, detector=detector, age=age, detect_every=detect_every, smoothing=smoothing,
                        max_upload_mb=max_upload_mb, keep_uploads=keep_uploads, allowed_hosts=hosts)
    sock = bind(host, port)  # before the models load and any URL is printed: a port in use is one error line
    try:
        app = create_app(settings=settings)
    except BaseException:
        sock.close()
        raise
    url_host = f"[{host}]" if ":" in host else host
    typer.echo(f"emolens: open http://{url_host}:{port}/ (REST API under /api/v1, schema at /openapi.json)")
    uvicorn.Server(server_config(app, settings, host, port)).run(sockets=[sock])


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` as uvicorn binds it; EmolensError naming ``--port`` when
    the port is taken (another ``emolens serve``?) and ``--host`` when the address is not this machine's."""
    from emolens.errors import EmolensError

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise EmolensError(f"port {port} on {host} is already in use (another emolens serve?): pick a free "
                               f"one with --port, e.g. --port {port + 1 if port < 65535 else 8001}") from None
        if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(e, socket.gaierror):
            raise EmolensError(f"--host {host}: not an address of this machine ({e.strerror or e})") from None
        if e.errno == errno.EACCES:
            raise EmolensError(f"--port {port}: not allowed for this user (ports below 1024 need root); "
                               f"pick one such as --port 8000") from None
        raise
    sock.set_inheritable(True)
    return sock


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``emolens`` app."""
    app.command("serve")(serve)
