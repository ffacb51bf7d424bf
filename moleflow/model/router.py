"""Mahalanobis task router (eqs. 34-35), with Ledoit-Wolf shrinkage by default.

Each task's prototype is the mean and precision of its training images' router
features ``(N_t, D)``. 768-d covariances from a few hundred images are singular:
``covariance: ledoit_wolf`` (default) shrinks them (scikit-learn's estimator);
``covariance: ridge`` adds ``ridge * I`` to the sample covariance (the authors'
choice, ``1e-5``). An image goes to the task of the smallest squared distance.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import nn


class MahalanobisRouter(nn.Module):
    """Prototype router; statistics live in buffers so they are saved in checkpoints."""

    def __init__(self, covariance: str = "ledoit_wolf", ridge: float = 1e-5) -> None:
        super().__init__()
        if covariance not in ("ledoit_wolf", "ridge"):
            raise ValueError(f"covariance must be 'ledoit_wolf' or 'ridge', got {covariance!r}")
        self.covariance, self.ridge = covariance, ridge
        self.n_tasks = 0

    def _precision(self, feats: np.ndarray) -> np.ndarray:
        if self.covariance == "ledoit_wolf":
            return LedoitWolf(assume_centered=False).fit(feats).precision_
        centered = feats - feats.mean(axis=0)
        cov = centered.T @ centered / max(len(feats) - 1, 1) + self.ridge * np.eye(feats.shape[1])
        return np.linalg.inv(cov)

    def add_task(self, features: torch.Tensor | np.ndarray) -> int:
        """Fit the next task's prototype on ``(N_t, D)`` training features; return its id."""
        feats = np.asarray(features, dtype=np.float64)
        if feats.ndim != 2 or len(feats) < 2:
            raise ValueError(f"router needs at least two (N, D) training features, got shape {feats.shape}")
        task = self.n_tasks
        self.register_buffer(f"mean_{task}", torch.from_numpy(feats.mean(axis=0)))
        self.register_buffer(f"precision_{task}", torch.from_numpy(self._precision(feats)))
        self.n_tasks += 1
        return task

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distances ``(B, T)`` of ``(B, D)`` features to each prototype."""
        feats = features.to(torch.float64)
        out = []
        for task in range(self.n_tasks):
            diff = feats - getattr(self, f"mean_{task}")
            out.append(((diff @ getattr(self, f"precision_{task}")) * diff).sum(dim=1))
        return torch.stack(out, dim=1)

    def nearest_mean(self, features: torch.Tensor) -> torch.Tensor:
        """Task ids ``(B,)`` of the nearest prototype mean in Euclidean distance (the router ablation)."""
        feats = features.to(torch.float64)
        means = torch.stack([getattr(self, f"mean_{task}") for task in range(self.n_tasks)])
        return torch.cdist(feats, means).argmin(dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Routed task ids ``(B,)`` for ``(B, D)`` router features."""
        return self.distances(features).argmin(dim=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        names = [k[len(prefix) :] for k in state_dict if k.startswith(prefix + "mean_")]
        for task in range(self.n_tasks, len(names)):
            dim = state_dict[f"{prefix}mean_{task}"].shape[0]
            self.register_buffer(f"mean_{task}", torch.zeros(dim, dtype=torch.float64))
            self.register_buffer(f"precision_{task}", torch.zeros(dim, dim, dtype=torch.float64))
        self.n_tasks = max(self.n_tasks, len(names))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
