"""DNE's memory (Li et al. 2022): a Gaussian of each task's image embeddings, image score by Mahalanobis distance.

DNE keeps no images and no patch features: after each task it stores the number, mean
and covariance of that task's L2-normalised image embeddings. Its density after task
``t`` is one Gaussian fitted (Ledoit-Wolf shrinkage) on the task's own embeddings plus
``n_i`` vectors drawn from each earlier task ``i``'s stored Gaussian (re-normalised to the
unit sphere), so no task label is needed at test time (``density="pooled"``, what DNE's
code does). ``density="routed"`` is the per-task reading: each task's own Gaussian, the
router choosing which. A test image's score is its Mahalanobis distance (the square root)
to the density. There is no patch score, hence no anomaly map.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import nn

DENSITIES = ("pooled", "routed")


def unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` ``(N, D)`` in float64 with every row scaled to unit Euclidean length (a zero row stays zero)."""
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def ledoit_wolf(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean ``(D,)``, shrunk covariance ``(D, D)`` and its precision ``(D, D)`` of rows ``z`` ``(N, D)``."""
    fit = LedoitWolf(assume_centered=False).fit(z)
    return z.mean(axis=0), fit.covariance_, fit.precision_


class GaussianMemory(nn.Module):
    """Per-task Gaussians of image embeddings and the density each task leaves behind.

    Example:
        >>> memory = GaussianMemory("routed", seed=0)
        >>> memory.add_task(np.random.default_rng(0).normal(size=(20, 4)))
        0
        >>> memory(torch.zeros(3, 4), task=0).shape
        torch.Size([3])
    """

    def __init__(self, density: str = "pooled", seed: int = 0) -> None:
        super().__init__()
        if density not in DENSITIES:
            raise ValueError(f"density must be one of {DENSITIES}, got {density!r}")
        self.density, self.seed = density, seed
        self.n_tasks = 0

    def _get(self, name: str, task: int) -> torch.Tensor:
        return getattr(self, f"{name}_{task}")

    def add_task(self, features: np.ndarray) -> int:
        """Store the next task's Gaussian of its training embeddings ``(N_t, D)`` and the density after it."""
        z = unit_rows(features)
        if z.ndim != 2 or len(z) < 2:
            raise ValueError(f"a Gaussian needs at least two (N, D) embeddings, got shape {z.shape}")
        task = self.n_tasks
        mean, covariance, precision = ledoit_wolf(z)
        if self.density == "pooled" and task > 0:
            mean, _, precision = ledoit_wolf(np.concatenate([*self._draws(task), z]))
        own = {
            "count": torch.tensor(len(z)),
            "mean": torch.from_numpy(z.mean(axis=0)),
            "covariance": torch.from_numpy(covariance),
            "density_mean": torch.from_numpy(mean),
            "density_precision": torch.from_numpy(precision),
        }
        for name, value in own.items():
            self.register_buffer(f"{name}_{task}", value)
        self.n_tasks += 1
        return task

    def _draws(self, task: int) -> list[np.ndarray]:
        """``n_i`` unit vectors drawn from each earlier task ``i``'s Gaussian (the generator seeded by (seed, task))."""
        rng = np.random.default_rng(self.seed * 1_000_003 + task)
        return [
            unit_rows(
                rng.multivariate_normal(
                    self._get("mean", i).numpy(), self._get("covariance", i).numpy(), size=int(self._get("count", i))
                )
            )
            for i in range(task)
        ]

    def forward(self, features: torch.Tensor, task: int) -> torch.Tensor:
        """Mahalanobis distances ``(B,)`` of image embeddings ``(B, D)`` to the density serving ``task``.

        ``pooled``: the density after the latest task, whatever ``task``; ``routed``: task ``task``'s own.
        """
        if not 0 <= task < self.n_tasks:
            raise ValueError(f"task {task} does not exist (the memory has {self.n_tasks})")
        which = self.n_tasks - 1 if self.density == "pooled" else task
        z = torch.from_numpy(unit_rows(features.detach().cpu().numpy()))
        diff = z - self._get("density_mean", which)
        squared = ((diff @ self._get("density_precision", which)) * diff).sum(dim=1)
        return squared.clamp_min(0.0).sqrt()

    def task_state(self, task: int) -> dict[str, torch.Tensor]:
        """Task ``task``'s stored tensors, under their state-dict names."""
        return {
            f"{name}_{task}": self._get(name, task)
            for name in ("count", "mean", "covariance", "density_mean", "density_precision")
        }

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        tasks = len([k for k in state_dict if k.startswith(prefix + "count_")])
        for task in range(self.n_tasks, tasks):
            for name in ("count", "mean", "covariance", "density_mean", "density_precision"):
                self.register_buffer(f"{name}_{task}", torch.zeros_like(state_dict[f"{prefix}{name}_{task}"]))
        self.n_tasks = max(self.n_tasks, tasks)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
