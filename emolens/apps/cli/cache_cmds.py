"""``emolens cache info|clear``: the decoded-image cache that training and evaluation fill."""

from __future__ import annotations

from pathlib import Path

import typer

cache_app = typer.Typer(help="The decoded-image cache ($EMOLENS_CACHE, default ~/.cache/emolens).",
                        no_args_is_help=True)
CACHE_DIR_HELP = "Cache folder (default $EMOLENS_CACHE or ~/.cache/emolens)."


def register(app: typer.Typer) -> None:
    """Add ``cache`` to the ``emolens`` app."""
    app.add_typer(cache_app, name="cache")


def _folder(cache_dir: Path | None) -> Path:
    from emolens.data.cache import default_cache_dir

    return cache_dir or default_cache_dir()


@cache_app.command("info")
def info(cache_dir: Path | None = typer.Option(None, "--cache-dir", help=CACHE_DIR_HELP)) -> None:
    """Where the cache is, how many decoded splits it holds and their size."""
    from emolens.data.cache import cache_files

    folder = _folder(cache_dir)
    files = cache_files(folder)
    size = sum(f.stat().st_size for f in files)
    typer.echo(f"{folder}: {len(files)} cached split(s), {size / 1e6:.1f} MB")


@cache_app.command("clear")
def clear(cache_dir: Path | None = typer.Option(None, "--cache-dir", help=CACHE_DIR_HELP)) -> None:
    """Delete the cached splits (they are rebuilt from the datasets when next needed). Only files the
    cache wrote are deleted (each carries a marker); anything else in the folder stays."""
    from emolens.data.cache import cache_files

    folder = _folder(cache_dir)
    removed = size = 0
    for f in cache_files(folder):
        try:
            size += f.stat().st_size
            f.unlink()
            removed += 1
        except FileNotFoundError:  # removed meanwhile (another clear)
            continue
    typer.echo(f"{folder}: removed {removed} cached split(s), {size / 1e6:.1f} MB")
