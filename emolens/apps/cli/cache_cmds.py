"""``emolens cache info|clear``: the decoded-image cache that training and evaluation fill."""

from __future__ import annotations

from pathlib import Path

import typer

cache_app = typer.Typer(help="The decoded-image cache ($EMOLENS_CACHE, default ~/.cache/emolens).",
                        no_args_is_help=True)
#: The files emolens writes there: ``<split>-<size>px-<channels>ch-<key>.npz``.
PATTERN = "*-*px-*ch-*.npz"


def register(app: typer.Typer) -> None:
    """Add ``cache`` to the ``emolens`` app."""
    app.add_typer(cache_app, name="cache")


def _folder(cache_dir: Path | None) -> Path:
    from emolens.data.cache import default_cache_dir

    return cache_dir or default_cache_dir()


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob(PATTERN)) if folder.is_dir() else []


@cache_app.command("info")
def info(cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder (default $EMOLENS_CACHE or ~/.cache/emolens).")) -> None:
    """Where the cache is, how many decoded splits it holds and their size."""
    folder = _folder(cache_dir)
    files = _files(folder)
    size = sum(f.stat().st_size for f in files)
    typer.echo(f"{folder}: {len(files)} cached split(s), {size / 1e6:.1f} MB")


@cache_app.command("clear")
def clear(cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Cache folder (default $EMOLENS_CACHE or ~/.cache/emolens).")) -> None:
    """Delete the cached splits (they are rebuilt from the datasets when next needed)."""
    folder = _folder(cache_dir)
    files = _files(folder)
    size = sum(f.stat().st_size for f in files)
    for f in files:
        f.unlink()
    typer.echo(f"{folder}: removed {len(files)} cached split(s), {size / 1e6:.1f} MB")
