"""Figures written next to runs and reports: training curves, confusion matrices, age scatter
plots (matplotlib's ``Figure`` API through :mod:`emolens.figures`: no pyplot, no global backend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emolens.figures import new_figure, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _save(fig: Figure, path: str | Path) -> Path:
    return save_figure(fig, path, dpi=120, bbox_inches="tight")


def curves_figure(history: Sequence[Mapping[str, float]]) -> Figure:
    """Train/validation accuracy and loss per epoch (rows with keys epoch, train_*, val_*); an age
    run (rows with ``val_mae``) gets a third panel with the validation MAE. Epoch ticks are whole
    numbers (a short run would otherwise get ticks at 1.5, 2.5, ...)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]
    age = "val_mae" in history[0]
    fig = new_figure(figsize=(15 if age else 10, 4))
    axes = fig.subplots(1, 3 if age else 2)
    if age:
        axes[2].plot(epochs, [row["val_mae"] for row in history], marker="o", ms=3, label="val")
        axes[2].set(xlabel="epoch", title="age MAE (years)")
        axes[2].grid(alpha=0.3)
        axes[2].legend()
    for ax, metric in zip(axes, ("acc", "loss")):
        for split in ("train", "val"):
            ax.plot(epochs, [row[f"{split}_{metric}"] for row in history], marker="o", ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_title(("accuracy (age: exact bin / val CS(5))" if age else "accuracy") if metric == "acc" else "loss")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def plot_curves(history: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """:func:`curves_figure` written to ``path`` (atomically)."""
    return _save(curves_figure(history), path)


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Two panels: counts, and rows normalised to recall (rows = true class, columns = predicted)."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    k = len(labels)
    size = max(5.0, 0.7 * k + 2)
    fig = new_figure(figsize=(2 * size, size))
    axes = fig.subplots(1, 2)
    for ax, data, fmt, name in ((axes[0], matrix, "d", "counts"), (axes[1], normalised, ".2f", "row-normalised")):
        ax.imshow(data, cmap="Blues", vmin=0, vmax=data.max() if data.size and data.max() > 0 else 1)
        ax.set_xticks(range(k), labels, rotation=45, ha="right")
        ax.set_yticks(range(k), labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{title} ({name})" if title else name)
        threshold = data.max() / 2 if data.size else 0
        for i in range(k):
            for j in range(k):
                ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=8,
                        color="white" if data[i, j] > threshold else "black")
    fig.tight_layout()
    return _save(fig, path)


def plot_age_scatter(true: np.ndarray, pred: np.ndarray, path: str | Path, title: str = "") -> Path:
    """Predicted against true age (one dot per face, the diagonal, and ±5 years)."""
    fig = new_figure(figsize=(6, 6))
    ax = fig.subplots()
    top = float(max(np.max(true, initial=1), np.max(pred, initial=1))) + 5
    ax.scatter(true, pred, s=4, alpha=0.35)
    ax.plot([0, top], [0, top], color="black", lw=1, label="predicted = true")
    for d in (-5, 5):
        ax.plot([0, top], [d, top + d], color="gray", lw=0.8, ls="--", label="±5 years" if d > 0 else None)
    ax.set(xlim=(0, top), ylim=(0, top), xlabel="true age (years)", ylabel="predicted age (years)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return _save(fig, path)
