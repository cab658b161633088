"""The ``emolens`` command. Each concern registers its commands from its own module;
heavy libraries (torch) are imported inside the commands that need them."""

from __future__ import annotations

import typer

from emolens.apps.cli import data_cmds, infer_cmds, serve_cmds, train_cmds

app = typer.Typer(
    name="emolens",
    help="Facial emotion recognition: datasets, training, evaluation, and offline inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

for module in (data_cmds, train_cmds, infer_cmds, serve_cmds):
    module.register(app)


def main() -> None:
    app()
