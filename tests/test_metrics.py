"""Metrics against scikit-learn, AUPRO against hand computation, continual summaries by hand."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from moleflow.metrics import (
    aupro,
    backward_transfer,
    forgetting_diag,
    forgetting_max,
    forgetting_per_task,
    image_auroc,
    pixel_ap,
    pixel_auroc,
    routing_accuracy,
    routing_confusion,
)


def _cases(seed: int = 0):
    rng = np.random.default_rng(seed)
    for n in (2, 7, 50, 1000):
        labels = rng.random(n) < 0.3
        labels[0], labels[-1] = True, False
        yield labels, rng.random(n).astype(np.float32)  # continuous
        yield labels, rng.integers(0, 4, n).astype(np.float32)  # heavy ties
        yield labels, np.full(n, 0.5, dtype=np.float32)  # constant scores
        yield labels, np.where(labels, 1.0, 0.0).astype(np.float32)  # perfect
        yield labels, np.where(labels, 0.0, 1.0).astype(np.float64)  # inverted


@pytest.mark.parametrize("labels, scores", list(_cases()))
def test_auroc_and_ap_equal_sklearn(labels: np.ndarray, scores: np.ndarray) -> None:
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert pixel_ap(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)


def test_pixel_metrics_on_maps_with_one_anomalous_pixel() -> None:
    rng = np.random.default_rng(1)
    masks = np.zeros((3, 16, 16), dtype=bool)
    masks[1, 5, 7] = True
    maps = rng.normal(size=masks.shape).astype(np.float32)
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-12)
    assert pixel_ap(masks, maps) == pytest.approx(average_precision_score(masks.ravel(), maps.ravel()), abs=1e-12)


def test_undefined_cases_are_nan_not_zero() -> None:
    assert np.isnan(image_auroc(np.zeros(5), np.arange(5.0)))
    assert np.isnan(pixel_ap(np.zeros((2, 3, 3)), np.ones((2, 3, 3))))
    assert np.isnan(aupro(np.zeros((2, 3, 3)), np.ones((2, 3, 3))))
    with pytest.raises(ValueError, match="NaN"):
        image_auroc(np.array([0, 1]), np.array([0.1, np.nan]))


# ------------------------------------------------------------------ AUPRO
def _row(mask: list[int], scores: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([[mask]], dtype=bool), np.array([[scores]], dtype=np.float64)


@pytest.mark.parametrize(
    "mask, scores, limit, expected",
    [
        ([1, 1, 0, 0], [4, 3, 2, 1], 0.3, 1.0),  # perfect separation
        ([1, 1, 0, 0], [1, 3, 2, 4], 0.3, 0.0),  # nothing found before FPR 0.5
        ([1, 1, 0, 0], [1, 3, 2, 4], 1.0, 0.25),
        # regions count equally: a 1-pixel region found first weighs as much as a 3-pixel one
        ([1, 0, 1, 1, 1, 0, 0], [5, 0, 4, 1, 1, 2, 3], 0.3, 2 / 3),
        ([1, 0, 1, 1, 1, 0, 0], [5, 0, 4, 1, 1, 2, 3], 1.0, 7 / 9),
    ],
)
def test_aupro_hand_computed(mask: list[int], scores: list[float], limit: float, expected: float) -> None:
    masks, maps = _row(mask, scores)
    assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(expected, abs=1e-12)


def test_aupro_regions_are_eight_connected_by_hand() -> None:
    """A pixel touching a region only at a corner belongs to it (8-connectivity, as the field computes AUPRO):
    one region of three pixels, of which only the corner pixel scores above every normal pixel, so PRO is 1/3
    up to FPR 1; with 4-connectivity it would be two regions and PRO 1/2."""
    masks = np.array([[[1, 0, 0], [0, 1, 1], [0, 0, 0]]], dtype=bool)
    maps = np.array([[[9, 7, 6], [5, 1, 1], [4, 3, 2]]], dtype=np.float64)
    for limit in (0.3, 1.0):
        assert aupro(masks, maps, fpr_limit=limit) == pytest.approx(1 / 3, abs=1e-12)


def _aupro_brute_force(masks: np.ndarray, maps: np.ndarray, limit: float) -> float:
    """Straight from the definition, by another route than the code's: FPR and PRO at every distinct threshold,
    then the area under the polyline by a fine uniform grid (numpy's interpolation, a million points) instead of
    the exact trapezoids and the interpolation at the limit the code computes."""
    regions = []
    for i, mask in enumerate(masks):
        labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(i, labels == k) for k in range(1, count + 1)]
    negatives = maps[~masks]
    fpr, pro = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        fpr.append(float(np.mean(negatives >= t)))
        pro.append(float(np.mean([np.mean(maps[i][region] >= t) for i, region in regions])))
    fpr.append(1.0)
    pro.append(1.0)
    grid = np.linspace(0.0, limit, 1_000_001)
    # a vertical segment (PRO rising at one FPR) has no width: which of its ends np.interp takes does not matter
    # beyond one grid step per segment
    return float(np.trapezoid(np.interp(grid, fpr, pro), grid) / limit)


@pytest.mark.parametrize("seed", range(6))
def test_aupro_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    masks = np.zeros((4, 12, 12), dtype=bool)
    for i in range(3):
        for _ in range(rng.integers(1, 3)):
            y, x = rng.integers(0, 10, 2)
            masks[i, y : y + rng.integers(1, 4), x : x + rng.integers(1, 5)] = True
    maps = rng.normal(size=masks.shape) + 1.5 * masks
    if seed % 2:
        maps = np.round(maps, 1)  # ties between normal and anomalous pixels
    for limit in (0.05, 0.3, 1.0):
        assert aupro(masks, maps, limit) == pytest.approx(_aupro_brute_force(masks, maps, limit), abs=1e-4)


def test_pixel_metrics_hold_no_float64_copies_of_the_pixels() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((40, 224, 224), dtype=np.float32)
    masks = np.zeros(maps.shape, dtype=bool)
    masks[::3, 50:90, 60:120] = True
    input_bytes = maps.nbytes
    for fn in (pixel_auroc, pixel_ap, aupro):
        tracemalloc.start()
        fn(masks, maps)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # one sorted float32 copy, a bool mask and the anomalous pixels: well under one float64 copy
        assert peak < 1.8 * input_bytes, (fn.__name__, peak / input_bytes)


# ------------------------------------------------------------------ continual summaries
R = np.array(
    [
        [0.90, np.nan, np.nan],
        [0.80, 0.70, np.nan],
        [0.85, 0.60, 0.95],
    ]
)


def test_forgetting_and_bwt_by_hand() -> None:
    # task 0: max(0.90, 0.80, 0.85) - 0.85 = 0.05; task 1: max(0.70, 0.60) - 0.60 = 0.10
    assert forgetting_per_task(R) == pytest.approx([0.05, 0.10])
    assert forgetting_max(R) == pytest.approx(0.075)
    # paper: ((0.90 - 0.85) + (0.70 - 0.60)) / 2
    assert forgetting_diag(R) == pytest.approx(0.075)
    assert backward_transfer(R) == pytest.approx(-0.075)
    improving = np.array([[0.5, np.nan], [0.7, 0.9]])
    assert forgetting_max(improving) == pytest.approx(-0.2) and forgetting_diag(improving) == pytest.approx(-0.2)


def test_the_forgetting_definitions_differ_where_they_should() -> None:
    """Task 0 peaks after task 1 and ends between; task 1 improves at the end.

    Chaudhry's FM: task 0 max(0.70, 0.90) - 0.80 = +0.10, task 1 0.60 - 0.75 = -0.15 -> -0.025 (may be negative);
    the paper's: task 0 0.70 - 0.80 = -0.10, task 1 -0.15 -> -0.125; the old max including the final row would
    have given max(0.70, 0.90, 0.80) - 0.80 = 0.10 and max(0.60, 0.75) - 0.75 = 0 -> +0.05, clipped at zero.
    """
    R = np.array([[0.70, np.nan, np.nan], [0.90, 0.60, np.nan], [0.80, 0.75, 0.95]])
    assert forgetting_per_task(R) == pytest.approx([0.10, -0.15])
    assert forgetting_max(R) == pytest.approx(-0.025)
    assert forgetting_diag(R) == pytest.approx(-0.125) and backward_transfer(R) == pytest.approx(0.125)


def test_missing_cells_give_nan_and_single_task_is_nan() -> None:
    diverged = R.copy()
    diverged[2] = np.nan
    assert np.isnan(forgetting_max(diverged)) and np.isnan(forgetting_diag(diverged))
    assert np.isnan(forgetting_max(np.array([[0.9]])))


def test_routing() -> None:
    true = np.array([0, 0, 1, 1, 2])
    routed = np.array([0, 1, 1, 1, 2])
    assert routing_accuracy(true, routed) == pytest.approx(0.8)
    assert routing_confusion(true, routed, 3).tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
