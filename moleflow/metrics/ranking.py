"""Threshold-free ranking metrics, exact and memory-lean.

``image_auroc``, ``pixel_auroc`` and ``pixel_ap`` give scikit-learn's values
(``roc_auc_score``; ``average_precision_score``, the step-wise definition, not the
trapezoidal AUPR) without building its per-threshold float64 curves. A category's
pixels (VisA: ~200 x 224 x 224 = 10 million) are held once as float32 scores and
one bool mask; the only large temporary is one sorted float32 copy of the scores.

Both metrics are computed from counts at the distinct positive scores:

* AUROC (Mann-Whitney): sum over positives of ``#neg < s + 0.5 * #neg == s``,
  divided by ``n_pos * n_neg``.
* AP: with thresholds at the distinct positive scores ``u`` (descending),
  ``sum_u (#pos == u / n_pos) * precision(u)``, ``precision(u) = #pos >= u / #all >= u``.
"""

from __future__ import annotations

import numpy as np


def _as_scores(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores)
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    return scores.reshape(-1)


def _as_labels(labels: np.ndarray) -> np.ndarray:
    return (np.asarray(labels) > 0).reshape(-1)


def _check(labels: np.ndarray, scores: np.ndarray) -> None:
    if labels.shape != scores.shape:
        raise ValueError(f"labels and scores differ in size: {labels.shape} vs {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinity")


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    _check(labels, scores)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    all_sorted = np.sort(scores)
    pos_sorted = np.sort(scores[labels])
    less_all = np.searchsorted(all_sorted, pos_sorted, side="left")
    leq_all = np.searchsorted(all_sorted, pos_sorted, side="right")
    less_pos = np.searchsorted(pos_sorted, pos_sorted, side="left")
    leq_pos = np.searchsorted(pos_sorted, pos_sorted, side="right")
    neg_less = (less_all - less_pos).astype(np.float64)
    neg_equal = ((leq_all - less_all) - (leq_pos - less_pos)).astype(np.float64)
    return float((neg_less.sum() + 0.5 * neg_equal.sum()) / (float(n_pos) * float(n_neg)))


def _average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    _check(labels, scores)
    n_pos = int(labels.sum())
    if n_pos == 0:
        return float("nan")
    all_sorted = np.sort(scores)
    pos_values, pos_counts = np.unique(scores[labels], return_counts=True)
    pos_values, pos_counts = pos_values[::-1], pos_counts[::-1]  # descending thresholds
    true_pos = np.cumsum(pos_counts).astype(np.float64)
    predicted = (scores.size - np.searchsorted(all_sorted, pos_values, side="left")).astype(np.float64)
    return float(np.sum(pos_counts / n_pos * (true_pos / predicted)))


def image_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Image-level AUROC. ``labels`` ``(N,)`` (0 normal, 1 anomalous), ``scores`` ``(N,)``.

    Returns NaN when only one class is present.
    """
    return _auroc(_as_labels(labels), _as_scores(scores))


def pixel_auroc(masks: np.ndarray, maps: np.ndarray) -> float:
    """Pixel-level AUROC over all pixels of ``masks`` ``(N, H, W)`` bool and ``maps`` ``(N, H, W)``."""
    return _auroc(_as_labels(masks), _as_scores(maps))


def pixel_ap(masks: np.ndarray, maps: np.ndarray) -> float:
    """Pixel-level average precision (scikit-learn's step-wise definition).

    Args:
        masks: ``(N, H, W)`` ground truth (nonzero = anomalous).
        maps: ``(N, H, W)`` anomaly scores.

    Returns:
        AP in ``[0, 1]``; NaN when no pixel is anomalous.
    """
    return _average_precision(_as_labels(masks), _as_scores(maps))
