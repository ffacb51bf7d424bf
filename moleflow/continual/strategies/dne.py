"""DNE (``dne``, Li et al. 2022): no flow, no training and no map: a Gaussian of each task's image embeddings
(the router features); the image score is the Mahalanobis distance to the density ``strategy.dne_density``
names (:class:`moleflow.model.GaussianMemory`). It keeps per task the Gaussian (count, mean and covariance of
``D_r``-vectors, float64, with the density fitted after it: mean and precision), and a router prototype only
with ``dne_density: routed``."""

from __future__ import annotations

from moleflow.config import Config
from moleflow.continual.strategies.base import CostInputs, MemoryStrategy
from moleflow.model import GaussianMemory


class DNE(MemoryStrategy):
    """A Gaussian of image embeddings per task; image scores only."""

    name = "dne"
    has_maps = False

    def densities(self, seed: int) -> GaussianMemory:
        return GaussianMemory(self.options["dne_density"], seed)

    def memory_per_task(self, config: Config, dim: int, patches_per_image: int, train_images: int) -> dict[str, float]:
        gaussian = 8.0 * (1 + 2 * (dim + dim * dim))  # count; mean, covariance; the density's mean and precision
        return {
            "params_per_task": 0.0,
            "bytes_per_task": gaussian,
            "pct_of_base": float("nan"),
            "fixed_bytes": 0.0,
            "router_bytes_per_task": self.router_bytes(dim) if self.options["dne_density"] == "routed" else 0.0,
        }

    def estimated_work(self, config: Config, tasks: int) -> float:
        """A Gaussian per task of one vector per image: next to nothing."""
        return float(tasks)

    def run_seconds(self, cost: CostInputs) -> float:
        """No flow: a Gaussian per task, its evaluation one vector per image (counted as nothing)."""
        return 0.0
