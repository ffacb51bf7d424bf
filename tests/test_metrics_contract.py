"""The metrics' contract at its edges, each by hand: refused input with its message, undefined cases as NaN, the
shapes and types the runs give them (lists with None, integer scores, 2-D ids, non-square images, an image without
anomaly before one with), and an integration limit that cuts a sloped segment of the PRO curve."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from moleflow.metrics import (
    aupro,
    backward_transfer,
    forgetting_diag,
    forgetting_max,
    forgetting_per_task,
    image_auroc,
    pixel_ap,
    routing_accuracy,
    routing_confusion,
)
from moleflow.metrics.pro import pro_curve


# ------------------------------------------------------------------------------------------------ continual
def test_a_matrix_that_is_not_square_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^accuracy matrix must be square \(T, T\), got \(2, 3\)$"):
        forgetting_max(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^accuracy matrix must be square \(T, T\), got \(2, 2, 2\)$"):
        forgetting_diag(np.zeros((2, 2, 2)))


def test_matrices_as_the_summaries_hold_them_lists_with_none() -> None:
    """A summary's matrix is a list of lists with None for cells not measured: read as NaN."""
    matrix: Any = [[0.7, None, None], [0.9, 0.6, None], [0.8, 0.75, 0.95]]
    assert forgetting_per_task(matrix) == pytest.approx([0.10, -0.15])
    assert forgetting_diag(matrix) == pytest.approx(-0.125) and backward_transfer(matrix) == pytest.approx(0.125)


def test_one_task_or_none_has_no_forgetting() -> None:
    one = np.array([[0.9]])
    assert np.isnan(forgetting_diag(one)) and np.isnan(backward_transfer(one)) and np.isnan(forgetting_max(one))
    assert forgetting_per_task(np.zeros((0, 0))).shape == (0,) and forgetting_per_task(one).shape == (0,)


def test_routing_accuracy_and_confusion_at_their_edges() -> None:
    assert np.isnan(routing_accuracy(np.array([], dtype=int), np.array([], dtype=int)))
    assert routing_accuracy(np.array([1]), np.array([1])) == 1.0
    # ids given as a column (N, 1) against a row (N,): flattened, never broadcast to (N, N)
    assert routing_accuracy(np.array([[0], [1]]), np.array([0, 0])) == 0.5
    assert routing_accuracy(np.array([0, 1]), np.array([[0], [0]])) == 0.5
    with pytest.raises(ValueError, match=r"^true and routed task ids differ in size: \(2,\) vs \(3,\)$"):
        routing_accuracy(np.array([0, 1]), np.array([0, 1, 1]))
    confusion = routing_confusion(np.array([0, 1, 1]), np.array([0, 0, 1]), 2)
    assert confusion.dtype.kind == "i" and confusion.tolist() == [[1, 0], [1, 1]]  # counts, written as integers


# ------------------------------------------------------------------------------------------------ ranking
def test_integer_scores_are_ranked_as_numbers() -> None:
    labels, scores = np.array([0, 1, 0, 1, 1]), np.array([3, 5, 1, 2, 4])
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_ranking_refusals_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"^labels and scores differ in size: \(2,\) vs \(3,\)$"):
        image_auroc(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"^scores contain NaN or infinity$"):
        image_auroc(np.array([0, 1]), np.array([0.1, np.inf]))


# ------------------------------------------------------------------------------------------------ AUPRO
def test_aupro_refusals_say_what_is_wrong() -> None:
    masks = np.zeros((1, 2, 2), dtype=bool)
    masks[0, 0, 0] = True
    for limit in (0.0, 1.5):
        with pytest.raises(ValueError, match=rf"^fpr_limit must lie in \(0, 1\], got {limit}$"):
            aupro(masks, np.ones((1, 2, 2)), limit)
    with pytest.raises(ValueError, match=r"^masks and maps must both be \(N, H, W\); got \(1, 2, 2\) and \(1, 2, 3\)$"):
        pro_curve(masks, np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match=r"^anomaly maps contain NaN or infinity$"):
        pro_curve(masks, np.array([[[np.nan, 0.0], [0.0, 0.0]]]))
    with pytest.raises(ValueError, match=r"^AUPRO needs at least one anomalous pixel$"):
        pro_curve(np.zeros((1, 2, 2), dtype=bool), np.ones((1, 2, 2)))
    with pytest.raises(ValueError, match=r"^AUPRO needs at least one normal pixel$"):
        pro_curve(np.ones((1, 2, 2), dtype=bool), np.ones((1, 2, 2)))


def test_aupro_with_one_anomalous_or_one_normal_pixel_by_hand() -> None:
    masks = np.array([[[1, 0], [0, 0]]], dtype=bool)
    maps = np.array([[[2.0, 3.0], [1.0, 0.0]]])  # the anomalous pixel below one normal pixel: FPR 1/3 before PRO 1
    # PRO 0 up to FPR 1/3, then 1: at limit 1, area = 2/3
    assert aupro(masks, maps, 1.0) == pytest.approx(2 / 3, abs=1e-12)
    masks = np.array([[[1, 1], [1, 0]]], dtype=bool)  # one normal pixel, scored below every anomalous one
    assert aupro(masks, np.array([[[3.0, 2.0], [1.0, 0.0]]]), 1.0) == pytest.approx(1.0, abs=1e-12)


def test_aupro_over_images_without_anomaly_and_not_square_by_hand() -> None:
    """Image 0 has no anomalous pixel (its normal scores 1-6), image 1 (2 x 3) one region of one pixel scored 10,
    above every normal pixel: PRO is 1 from FPR 0 on, so AUPRO is 1 at any limit. A region looked up in the wrong
    image, or with the wrong plane size, scores 0 and gives another value."""
    masks = np.zeros((2, 2, 3), dtype=bool)
    masks[1, 1, 2] = True
    maps = np.zeros((2, 2, 3))
    maps[0] = np.arange(1.0, 7.0).reshape(2, 3)
    maps[1, 1, 2] = 10.0
    for limit in (0.1, 0.3, 1.0):
        assert aupro(masks, maps, limit) == pytest.approx(1.0, abs=1e-12)


def test_aupro_interpolates_a_sloped_segment_at_the_limit_by_hand() -> None:
    """A tie between the anomalous pixel and a normal one makes the PRO curve rise along a sloped segment, from
    (0.5, 0) to (1, 1); the limit 0.75 cuts it at PRO 0.5: area (0.75 - 0.5) x 0.5 / 2 = 1/16, over 0.75 = 1/12."""
    masks = np.array([[[1, 0, 0]]], dtype=bool)
    maps = np.array([[[1.0, 1.0, 2.0]]])
    assert aupro(masks, maps, 0.75) == pytest.approx(1 / 12, abs=1e-12)
    assert aupro(masks, maps, 1.0) == pytest.approx(0.25, abs=1e-12)  # (1 - 0.5) x 1 / 2, over 1


def test_pixel_ap_reads_masks_of_any_numeric_type() -> None:
    masks = np.array([[[0, 255], [0, 0]]], dtype=np.uint8)  # a mask as read from a PNG
    assert pixel_ap(masks, np.array([[[0.1, 0.9], [0.2, 0.3]]])) == pytest.approx(1.0)


def test_the_pro_curve_runs_from_the_origin_to_one_one_and_no_region_gives_empty_weights() -> None:
    from moleflow.metrics.pro import _region_weights, pro_curve

    masks = np.zeros((1, 4, 4), dtype=bool)
    masks[0, 1:3, 1:3] = True
    maps = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    fpr, pro = pro_curve(masks, maps)
    assert (fpr[0], pro[0], fpr[-1], pro[-1]) == (0.0, 0.0, 1.0, 1.0)
    indices, weights = _region_weights(np.zeros((2, 3, 3), dtype=bool))
    assert indices.dtype == np.int64 and indices.shape == (0,) and weights.shape == (0,)
