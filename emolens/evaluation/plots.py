"""Figures written next to runs and reports: training curves and confusion matrices (matplotlib Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the headless backend)
import numpy as np  # noqa: E402

from emolens.io import atomic_write  # noqa: E402


def _save(fig: plt.Figure, path: str | Path) -> Path:
    path = Path(path)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png"))
    plt.close(fig)
    return path


def plot_curves(history: Sequence[Mapping[str, float]], path: str | Path) -> Path:
    """Train/validation accuracy and loss per epoch (rows with keys epoch, train_*, val_*)."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("acc", "loss")):
        for split in ("train", "val"):
            ax.plot(epochs, [row[f"{split}_{metric}"] for row in history], marker="o", ms=3, label=split)
        ax.set_xlabel("epoch")
        ax.set_title("accuracy" if metric == "acc" else "loss")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def plot_confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Two panels: counts, and rows normalised to recall (rows = true class, columns = predicted)."""
    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    k = len(labels)
    size = max(5.0, 0.7 * k + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
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
