"""``emolens export-web``: a static copy of the web page that recognises inside the browser."""

from __future__ import annotations

from pathlib import Path

import typer

from emolens.apps.cli.infer_cmds import MODEL_HELP

#: The port the hint suggests for a static copy: not ``emolens serve``'s 8000, so both can run.
STATIC_PORT = 8080


def export_web_command(
    dest: Path = typer.Argument(..., help="Folder to write the page into (created; must be empty unless --force)."),
    model: str = typer.Option("default", "--model", "-m", help=MODEL_HELP),
    detector: str = typer.Option("blazeface", "--detector", "-d",
                                 help="face detector run by the page: blazeface (faces up to ~5 m) or "
                                      "blazeface-short (within ~2 m, fastest)."),
    force: bool = typer.Option(False, "--force", help="Write into a folder that is not empty."),
    age: bool = typer.Option(False, "--age", help="Also estimate each face's apparent age in the page "
                                                  "(the bundled age model; adds 0.8 MB)."),
) -> None:
    """Write a self-contained static page (HTML, JS, WebAssembly runtime, ONNX models, licence
    notice) that runs recognition in the browser, live and on photos: serve DEST from any static
    host, e.g. `python -m http.server 8080 --bind 127.0.0.1 -d DEST`. It loads nothing but its own
    files and sends nothing anywhere."""
    from emolens.apps.web.inpage import export_web

    files = export_web(dest, model, detector.strip().lower(), force, age)
    size = sum(f.stat().st_size for f in files)
    typer.echo(f"wrote {len(files)} files ({size / 1e6:.1f} MB) to {dest}\n"
               f"serve it on this machine only with: python -m http.server {STATIC_PORT} --bind 127.0.0.1 -d {dest}\n"
               f"then open http://127.0.0.1:{STATIC_PORT}/ (port {STATIC_PORT}: emolens serve uses 8000)")


def register(app: typer.Typer) -> None:
    """Add ``export-web`` to the ``emolens`` app."""
    app.command("export-web")(export_web_command)
