"""AUPRO: area under the per-region-overlap curve up to a false-positive-rate limit.

The field's standard localisation metric (Bergmann et al., MVTec AD): for every
threshold ``t``, FPR(t) = share of normal pixels with score >= t, and PRO(t) = mean
over all connected ground-truth regions (8-connectivity, every image of the set)
of the share of the region's pixels with score >= t. The curve over all distinct
thresholds is integrated with the trapezoidal rule from FPR 0 to ``fpr_limit``
(linearly interpolated at the limit) and divided by ``fpr_limit``.

Exact but lean: between two consecutive distinct scores of anomalous pixels PRO
is constant, so the curve is fully described by two vertices per distinct
anomalous score (see :func:`pro_curve`); normal pixels enter only through one
sorted float32 copy of their scores.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


def _region_weights(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per anomalous pixel: its weight ``1 / (n_regions * region_size)``; and the pixel flat indices."""
    indices: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    n_regions = 0
    plane = masks.shape[1] * masks.shape[2]
    for i, mask in enumerate(masks):
        labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
        if count == 0:
            continue
        flat = labels.reshape(-1)
        where = np.flatnonzero(flat)
        sizes = np.bincount(flat[where], minlength=count + 1)
        indices.append(where + i * plane)
        weights.append(1.0 / sizes[flat[where]])
        n_regions += count
    if n_regions == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    return np.concatenate(indices), np.concatenate(weights) / n_regions


def pro_curve(masks: np.ndarray, maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact PRO-vs-FPR curve as a polyline.

    Args:
        masks: ``(N, H, W)`` ground truth (nonzero = anomalous).
        maps: ``(N, H, W)`` anomaly scores.

    Returns:
        ``(fpr, pro)``, each ``(2K + 2,)``, from ``(0, 0)`` to ``(1, 1)``, where ``K`` is the
        number of distinct scores of anomalous pixels.
    """
    masks = np.asarray(masks) > 0
    maps = np.asarray(maps)
    if masks.shape != maps.shape or masks.ndim != 3:
        raise ValueError(f"masks and maps must both be (N, H, W); got {masks.shape} and {maps.shape}")
    if not np.all(np.isfinite(maps)):
        raise ValueError("anomaly maps contain NaN or infinity")
    indices, weights = _region_weights(masks)
    if indices.size == 0:
        raise ValueError("AUPRO needs at least one anomalous pixel")
    flat_maps = maps.reshape(-1)
    negatives = flat_maps[~masks.reshape(-1)]
    negatives.sort()  # in place: one float32 copy of the normal pixels' scores
    n_neg = negatives.size
    if n_neg == 0:
        raise ValueError("AUPRO needs at least one normal pixel")
    values, inverse = np.unique(flat_maps[indices], return_inverse=True)
    region_mass = np.bincount(inverse.reshape(-1), weights=weights, minlength=values.size)
    values, region_mass = values[::-1], region_mass[::-1]  # descending thresholds
    pro_at = np.minimum(np.cumsum(region_mass), 1.0)
    pro_before = np.concatenate([[0.0], pro_at[:-1]])
    fpr_above = (n_neg - np.searchsorted(negatives, values, side="right")) / n_neg  # score > u
    fpr_at = (n_neg - np.searchsorted(negatives, values, side="left")) / n_neg  # score >= u
    fpr = np.zeros(2 * values.size + 2)  # every entry is set below; zeros, so none is ever uninitialised memory
    pro = np.zeros_like(fpr)
    fpr[0], pro[0] = 0.0, 0.0
    fpr[1:-1:2], pro[1:-1:2] = fpr_above, pro_before
    fpr[2:-1:2], pro[2:-1:2] = fpr_at, pro_at
    fpr[-1], pro[-1] = 1.0, 1.0
    return fpr, pro


def _trapezoid_to(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under a polyline with non-decreasing ``x`` from ``x[0]`` to ``limit``."""
    keep = x <= limit
    area = float(np.trapezoid(y[keep], x[keep])) if keep.sum() > 1 else 0.0
    last = int(np.flatnonzero(keep)[-1])
    if last + 1 < x.size and x[last] < limit:
        x0, x1, y0, y1 = x[last], x[last + 1], y[last], y[last + 1]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += (limit - x0) * (y0 + y_limit) / 2.0
    return area


def aupro(masks: np.ndarray, maps: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit`` (in ``[0, 1]``).

    Args:
        masks: ``(N, H, W)`` ground truth (nonzero = anomalous).
        maps: ``(N, H, W)`` anomaly scores.
        fpr_limit: integration limit of the false-positive rate, in ``(0, 1]``.

    Returns:
        The area divided by ``fpr_limit``; NaN when the set has no anomalous pixel.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must lie in (0, 1], got {fpr_limit}")
    if not np.any(np.asarray(masks)):
        return float("nan")
    fpr, pro = pro_curve(masks, maps)
    return _trapezoid_to(fpr, pro, fpr_limit) / fpr_limit
