"""EWC (``ewc``): sequential training plus ``lambda / 2 * sum_i F_i (theta_i - theta*_i)^2`` on the base:
online EWC without decay (Schwarz et al. 2018): the per-sample diagonal empirical Fisher summed over earlier
tasks, anchored at the base after the last task. It keeps the Fisher diagonal and the anchor (twice the base)."""

from __future__ import annotations

from moleflow.config import Config
from moleflow.continual.strategies.base import Strategy


class EWC(Strategy):
    """Base and adapters trained in every task, the base held by the Fisher penalty."""

    name = "ewc"
    consolidates = True
    value_only_keys = ("strategy.ewc_lambda",)

    def fixed_bytes(
        self, config: Config, dim: int, patches_per_image: int, train_images: int, base_bytes: float
    ) -> float:
        return 2.0 * base_bytes
