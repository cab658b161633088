"""The ``emolens`` command. Each concern registers its commands from its own module; heavy
libraries (torch) are imported inside the commands that need them. Every command runs inside one
error boundary (:func:`_command_boundary`): a user error (an :class:`~emolens.errors.EmolensError`
or an ``OSError`` such as a missing file or a folder without permission) or a missing optional
dependency is one ``error:`` line on stderr and exit code 2; anything else is a bug and shows its
traceback."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand

import emolens
from emolens.apps.cli import (
    batch_cmds,
    cache_cmds,
    data_cmds,
    evaluate_cmds,
    export_cmds,
    infer_cmds,
    serve_cmds,
    train_cmds,
    web_cmds,
)
from emolens.apps.cli.helptext import HelpCommand
from emolens.apps.cli.output import error_message, print_error
from emolens.errors import EmolensError

#: Top-level module → the pip extra that installs it.
EXTRAS = {"torch": "train", "onnx": "train", "sklearn": "train", "tensorboard": "train",
          "fastapi": "web", "uvicorn": "web", "multipart": "web", "python_multipart": "web", "websockets": "web",
          "pandas": "pandas", "av": "video", "ray": "batch", "pyarrow": "batch"}

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


#: What a user can cause and fix (a bad path, option, dataset or model file; a file the system
#: cannot read or write): reported as one ``error:`` line on stderr, exit code 2. Errors raised
#: where input enters emolens are ``EmolensError``s; any other exception is a bug and keeps its traceback.
USER_ERRORS = (EmolensError, OSError)


def _command_boundary(command: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its failures reported the one way of the CLI: a user error (:data:`USER_ERRORS`)
    or a missing optional dependency (naming the extra to install) as one ``error:`` line, exit 2;
    Ctrl-C as one line, exit 130 (a command adds a hint by raising ``KeyboardInterrupt(hint)``)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ModuleNotFoundError as e:
            module = (e.name or "").split(".")[0]
            if module not in EXTRAS:
                raise
            extra = EXTRAS[module]
            print_error(f"emolens {command} needs the [{extra}] extra ({module} is not installed): "
                        f"pip install 'emolens[{extra}]' (in a clone: make install-all)")
            raise typer.Exit(2) from None
        except USER_ERRORS as e:
            print_error(error_message(e))
            raise typer.Exit(2) from None
        except KeyboardInterrupt as e:
            typer.echo(f"\ninterrupted{f'; {e}' if str(e) else ''}", err=True)
            raise typer.Exit(130) from None

    return run


for module in (data_cmds, train_cmds, evaluate_cmds, export_cmds, infer_cmds, serve_cmds, web_cmds, cache_cmds,
               batch_cmds):
    module.register(app)
for prefix, group in [("", app), *((f"{g.name} ", g.typer_instance) for g in app.registered_groups)]:
    for info in group.registered_commands:
        info.callback = _command_boundary(prefix + (info.name or info.callback.__name__), info.callback)
        if info.cls in (None, TyperCommand):  # paragraphs that wrap, value names instead of Python types
            info.cls = HelpCommand


def main() -> None:
    """The ``emolens`` console script."""
    # File names that are not valid UTF-8 print with backslash escapes instead of failing the command.
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    # Pillow warns about damaged metadata (corrupt EXIF, odd tags) in images it still decodes;
    # emolens reports what it cannot use itself.
    warnings.filterwarnings("ignore", module="PIL")
    app()
