"""Replay (``replay``): sequential training plus a buffer of ``strategy.replay_images`` feature maps of each
earlier task, replayed through their own adapters while a later task trains (the :class:`ReplayBuffer`)."""

from __future__ import annotations

import numpy as np
import torch

from moleflow.config import Config
from moleflow.continual.strategies.base import Strategy


class ReplayBuffer:
    """Feature maps of earlier tasks: ``(task, patches memmap, indices)`` per task."""

    def __init__(self, images_per_task: int, seed: int) -> None:
        self.images_per_task, self.seed = images_per_task, seed
        self.entries: list[tuple[int, np.ndarray, np.ndarray]] = []

    def add(self, task: int, patches: np.ndarray) -> None:
        rng = np.random.default_rng([self.seed, task, 17])
        count = min(self.images_per_task, len(patches))
        self.entries.append((task, patches, np.sort(rng.choice(len(patches), count, replace=False))))

    def sample(self, generator: torch.Generator, size: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Draw ``size`` stored maps uniformly; return ``(task, patches, rows)`` groups."""
        if not self.entries:
            return []
        pool = [(t, p, i) for t, p, rows in self.entries for i in rows]
        picks = torch.randint(len(pool), (size,), generator=generator).tolist()
        groups: dict[int, tuple[np.ndarray, list[int]]] = {}
        for k in picks:
            task, patches, row = pool[k]
            groups.setdefault(task, (patches, []))[1].append(int(row))
        return [(task, patches, np.array(rows)) for task, (patches, rows) in sorted(groups.items())]


class Replay(Strategy):
    """Base and adapters trained in every task, earlier tasks rehearsed from stored feature maps."""

    name = "replay"
    value_only_keys = ("strategy.replay_images",)

    def replay_buffer(self, seed: int) -> ReplayBuffer:
        return ReplayBuffer(self.options["replay_images"], seed)

    def stored_feature_bytes(self, config: Config, dim: int, patches_per_image: int, train_images: int) -> float:
        return 2.0 * self.options["replay_images"] * patches_per_image * dim  # float16 feature maps
