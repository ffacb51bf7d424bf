"""The no-training reference (``knn``): no flow, a PatchCore-style memory bank of each task's training patches
(nearest-neighbour distance as the patch score), with the same router, maps and metrics.

``strategy.knn_bank`` says which memory a patch is measured against: its routed task's bank (``per_task``:
Joint_PatchCore(R)), every bank at once with no router (``joint``: Joint_PatchCore), or the newest task's bank
only (``replaced``: FT_PatchCore, the fine-tuned lower bound). It keeps a bank of
``ceil(knn_coreset_ratio * train_images * patches_per_image)`` float32 vectors per task.
"""

from __future__ import annotations

import math

from moleflow.config import Config
from moleflow.continual.strategies.base import CostInputs, MemoryStrategy
from moleflow.model import NearestNeighbourScorer


class KNN(MemoryStrategy):
    """A memory bank per task, nothing trained."""

    name = "knn"
    value_only_keys = ("strategy.knn_coreset_ratio",)

    def bank(self) -> NearestNeighbourScorer:
        return NearestNeighbourScorer()

    def memory_per_task(self, config: Config, dim: int, patches_per_image: int, train_images: int) -> dict[str, float]:
        """``replaced`` holds one bank at a time (``fixed_bytes``: the learner keeps the earlier ones only for its
        checkpoints and never reads them); ``joint`` and ``replaced`` measure without the router."""
        bank = 4.0 * math.ceil(self.options["knn_coreset_ratio"] * train_images * patches_per_image) * dim
        mode = self.options["knn_bank"]
        return {
            "params_per_task": 0.0,
            "bytes_per_task": 0.0 if mode == "replaced" else bank,
            "pct_of_base": float("nan"),
            "fixed_bytes": bank if mode == "replaced" else 0.0,
            "router_bytes_per_task": self.router_bytes(dim) if mode == "per_task" else 0.0,
        }

    def estimated_work(self, config: Config, tasks: int) -> float:
        """No training; its evaluation (every seen task after each task) is the work."""
        return float(8 * tasks * tasks * config["features"]["input_size"] ** 2)

    def run_seconds(self, cost: CostInputs) -> float:
        """Storing a task's bank costs about one pass over its training images, then the evaluation."""
        seconds = 0.0
        for t, (train, _) in enumerate(cost.images):
            seconds += (cost.step_s[0] if t == 0 else cost.step_s[1]) * train / cost.settings.batch_size
            seconds += cost.eval_image_s * sum(test for _, test in cost.images[: t + 1])
        return seconds

    def draws_at_random(self) -> bool:
        """A bank kept whole (no coreset drawn) makes no random choice: one run stands for every seed."""
        return bool(self.options.get("knn_coreset_ratio", 1.0) < 1.0)
