"""Classification metrics (scikit-learn) and calibration; numpy in, JSON-ready dicts out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

ECE_BINS = 15


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: |accuracy − confidence| of the top class, averaged over equal-width confidence bins
    weighted by their share of samples."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)  # bins are (lo, hi]
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def rescale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities re-softmaxed at ``temperature`` (softmax(log p / T))."""
    z = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature (0.5–3, step 0.01) that minimises the negative log-likelihood of ``y_true``."""
    y = np.asarray(y_true)
    grid = np.round(np.arange(0.5, 3.0001, 0.01), 2)
    nll = [-np.log(np.clip(rescale(probs, t)[np.arange(len(y)), y], 1e-12, None)).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def compute_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    labels: Sequence[str],
) -> dict:
    """accuracy, macro/weighted F1, per-class precision/recall/F1/support, the confusion matrix
    (rows = true, columns = predicted, in ``labels`` order) and n.

    ``y_true``/``y_pred`` are indices into ``labels``; a prediction of -1 (e.g. no face found)
    counts as wrong and falls in no column.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{len(y_true)} true labels but {len(y_pred)} predictions")
    ids = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=ids, average="weighted", zero_division=0)),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        "labels": list(labels),
    }
