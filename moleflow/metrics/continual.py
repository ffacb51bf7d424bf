"""Continual-learning summaries of an accuracy matrix, and routing accuracy.

``R[j, i]`` is a metric on task ``i`` after training task ``j`` (``T x T``); cells with
``i > j`` (task not yet trained) are NaN:

* :func:`forgetting_max` (FM, Chaudhry et al. 2018): mean over ``i < T-1`` of
  ``max_{i <= l < T-1} R[l, i] - R[T-1, i]``: the drop from the best earlier value; the
  maximum leaves the final row out, so a task that improved has a negative term (an
  earlier version took the final row into the maximum, which clipped each term at 0
  and biased FM upward under noise);
* :func:`forgetting_diag` (the paper's variant): mean over ``i < T-1`` of ``R[i, i] - R[T-1, i]``;
* :func:`backward_transfer` (BWT): mean over ``i < T-1`` of ``R[T-1, i] - R[i, i]``.

All three are NaN for a single task, and NaN when a needed cell is missing
(a run that diverged before the last task): never a silent zero.
"""

from __future__ import annotations

import numpy as np

METRICS = ("image_auroc", "pixel_ap", "pixel_auroc", "aupro")  # the four per-category metrics of a run


def _matrix(matrix: np.ndarray) -> np.ndarray:
    R = np.asarray(matrix, dtype=np.float64)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"accuracy matrix must be square (T, T), got {R.shape}")
    return R


def forgetting_per_task(matrix: np.ndarray) -> np.ndarray:
    """Forgetting of each task ``i < T-1``: ``max_{i <= l < T-1} R[l, i] - R[T-1, i]``, shape ``(T-1,)``."""
    R = _matrix(matrix)
    T = R.shape[0]
    out = np.full(max(T - 1, 0), np.nan)
    for i in range(T - 1):
        column = R[i:, i]
        if np.all(np.isfinite(column)):
            out[i] = column[:-1].max() - R[T - 1, i]
    return out


def forgetting_max(matrix: np.ndarray) -> float:
    """FM, the mean of :func:`forgetting_per_task` (NaN if any term is missing)."""
    per_task = forgetting_per_task(matrix)
    return float(per_task.mean()) if per_task.size and np.all(np.isfinite(per_task)) else float("nan")


def forgetting_diag(matrix: np.ndarray) -> float:
    """The paper's forgetting: mean over ``i < T-1`` of ``R[i, i] - R[T-1, i]``."""
    R = _matrix(matrix)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    terms = np.array([R[i, i] - R[T - 1, i] for i in range(T - 1)])
    return float(terms.mean()) if np.all(np.isfinite(terms)) else float("nan")


def backward_transfer(matrix: np.ndarray) -> float:
    """BWT: mean over ``i < T-1`` of ``R[T-1, i] - R[i, i]`` (negative = forgetting)."""
    value = forgetting_diag(matrix)
    return 0.0 - value if np.isfinite(value) else float("nan")  # 0.0 - x: no negative zero


def routing_accuracy(true_tasks: np.ndarray, routed_tasks: np.ndarray) -> float:
    """Share of test images routed to their own task. Both ``(N,)`` integer arrays."""
    true_tasks, routed_tasks = np.asarray(true_tasks).reshape(-1), np.asarray(routed_tasks).reshape(-1)
    if true_tasks.shape != routed_tasks.shape:
        raise ValueError(f"true and routed task ids differ in size: {true_tasks.shape} vs {routed_tasks.shape}")
    if true_tasks.size == 0:
        return float("nan")
    return float(np.mean(true_tasks == routed_tasks))


def routing_confusion(true_tasks: np.ndarray, routed_tasks: np.ndarray, n_tasks: int) -> np.ndarray:
    """Routing confusion matrix ``(T, T)``: row = true task, column = routed task, counts."""
    matrix = np.zeros((n_tasks, n_tasks), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true_tasks), np.asarray(routed_tasks)), 1)
    return matrix
