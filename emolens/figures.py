"""Figures, one way for every layer: matplotlib's object-oriented ``Figure`` API, no pyplot and
no global backend (``matplotlib.use``), so plotting never changes the host process's matplotlib
state; a figure is saved atomically or rendered to bytes.

matplotlib is imported only when a figure is made, so importing this module costs nothing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emolens.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(**kwargs: Any) -> Figure:
    """A ``matplotlib.figure.Figure(**kwargs)``, e.g. ``figsize=(6, 4), layout="constrained"``; draw on
    ``fig.subplots(...)``."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def figure_bytes(fig: Figure, format: str = "png", **savefig: Any) -> bytes:
    """``fig`` rendered as ``format`` (``savefig`` options such as ``dpi``, ``bbox_inches``)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=format, **savefig)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | Path, format: str | None = None, **savefig: Any) -> Path:
    """Write ``fig`` to ``path`` atomically, as ``format`` (default: the one its suffix names, PNG
    without a suffix); ``savefig`` options such as ``dpi``, ``bbox_inches``."""
    path = Path(path)
    format = format or path.suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=format, **savefig))
