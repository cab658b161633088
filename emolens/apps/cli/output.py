"""How every command reports a failure: one ``error:`` line on stderr (the commands and the CLI's
error boundary import these from here, so no command module imports the ``emolens.apps.cli`` package)."""

from __future__ import annotations

import typer


def error_message(e: BaseException) -> str:
    """The text of a user error: an ``OSError`` from the system as ``FILE: reason``."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def print_error(message: str) -> None:
    """Print ``error: MESSAGE`` as one line on stderr (red on a terminal): every command's way of
    reporting a failure, whether it ends the command or only skips one input."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
