"""The ``emolens`` command. Each concern registers its commands from its own module;
heavy libraries (torch) are imported inside the commands that need them, and a command whose
optional dependency is missing names the extra to install in one line."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any

import typer

import emolens
from emolens.apps.cli import cache_cmds, data_cmds, infer_cmds, serve_cmds, train_cmds, web_cmds

#: Top-level module → the pip extra that installs it.
EXTRAS = {"torch": "train", "onnx": "train", "sklearn": "train", "tensorboard": "train",
          "fastapi": "web", "uvicorn": "web", "multipart": "web", "python_multipart": "web", "websockets": "web",
          "pandas": "pandas", "av": "video"}

app = typer.Typer(
    name="emolens",
    help="Facial emotion recognition: datasets, training, evaluation, and offline inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"emolens {emolens.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Facial emotion recognition: datasets, training, evaluation, and offline inference."""


def needs_extras(command: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with a missing optional dependency reported as one line naming its extra (exit 2)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ModuleNotFoundError as e:
            module = (e.name or "").split(".")[0]
            if module not in EXTRAS:
                raise
            extra = EXTRAS[module]
            typer.secho(f"error: emolens {command} needs the [{extra}] extra ({module} is not installed): "
                        f"pip install 'emolens[{extra}]' (in a clone: make install-all)", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from None

    return run


for module in (data_cmds, train_cmds, infer_cmds, serve_cmds, web_cmds, cache_cmds):
    module.register(app)
for prefix, group in [("", app), *((f"{g.name} ", g.typer_instance) for g in app.registered_groups)]:
    for info in group.registered_commands:
        info.callback = needs_extras(prefix + (info.name or info.callback.__name__), info.callback)


def main() -> None:
    # File names that are not valid UTF-8 print with backslash escapes instead of failing the command.
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    # Pillow warns about damaged metadata (corrupt EXIF, odd tags) in images it still decodes;
    # emolens reports what it cannot use itself.
    warnings.filterwarnings("ignore", module="PIL")
    app()
