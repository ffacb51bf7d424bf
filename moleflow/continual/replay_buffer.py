"""The replay buffer: feature maps of earlier tasks, replayed through their own adapters while a later task trains."""

from __future__ import annotations

import numpy as np
import torch


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
