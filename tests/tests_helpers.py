"""Helpers shared by several test modules."""

from __future__ import annotations

import copy


def fake_summary(index: int) -> dict:
    """A minimal run summary (one task) with distinct numbers and config hash per ``index``."""
    config = {"seed": index, "training": {"epochs": 1}}
    matrix = {m: [[0.5 + index / 100]] for m in ("image_auroc", "pixel_ap", "pixel_auroc", "aupro")}
    forgetting = {m: {"fm": None, "paper": None, "bwt": None} for m in matrix}
    return {
        "status": "ok", "config": config, "config_hash": f"hash{index:03d}", "seed": index, "strategy": "frozen_base",
        "tasks": ["cap"], "tasks_completed": 1, "accuracy_matrix": matrix, "accuracy_matrix_oracle": copy.deepcopy(matrix),
        "mean": {mode: {m: 0.5 + index / 100 for m in matrix} for mode in ("routed", "oracle")},
        "forgetting": forgetting, "routing_accuracy": 1.0, "routing_accuracy_after_task": [1.0],
        "per_task": [{"task": 0, "epoch_losses": [3.0]}], "timings": {"training": 1.0, "training_per_task": [1.0]},
    }
