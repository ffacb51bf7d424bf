"""Replay (``replay``): sequential training plus a buffer of ``strategy.replay_images`` feature maps of each
earlier task, replayed through their own adapters while a later task trains."""

from __future__ import annotations

from moleflow.config import Config
from moleflow.continual.replay_buffer import ReplayBuffer
from moleflow.continual.strategies.base import Strategy


class Replay(Strategy):
    """Base and adapters trained in every task, earlier tasks rehearsed from stored feature maps."""

    name = "replay"
    value_only_keys = ("strategy.replay_images",)

    def replay_buffer(self, seed: int) -> ReplayBuffer:
        return ReplayBuffer(self.options["replay_images"], seed)

    def stored_feature_bytes(self, config: Config, dim: int, patches_per_image: int, train_images: int) -> float:
        return 2.0 * self.options["replay_images"] * patches_per_image * dim  # float16 feature maps
