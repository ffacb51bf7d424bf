"""Mahalanobis task router (eqs. 34-35).

Each task's prototype is the mean and precision of its training images' router
features ``(N_t, D)``. 768-d covariances from a few hundred images are singular:
``covariance: ridge`` adds ``ridge * I`` (``1e-5``) to the sample covariance (eq. 35 and
the authors' code, the configuration's default); ``ledoit_wolf`` shrinks it instead
(scikit-learn's estimator). ``dtype`` is the precision of the prototypes and distances:
``float32`` as the authors' (torch's inverse of a float32 covariance) or ``float64``.
An image goes to the task of the smallest squared distance.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import nn


class MahalanobisRouter(nn.Module):
    """Prototype router; statistics live in buffers so they are saved in checkpoints."""

    def __init__(self, covariance: str = "ridge", ridge: float = 1e-5, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if covariance not in ("ledoit_wolf", "ridge"):
            raise ValueError(f"covariance must be 'ledoit_wolf' or 'ridge', got {covariance!r}")
        self.covariance, self.ridge, self.dtype = covariance, ridge, dtype
        self.n_tasks = 0

    def _prototype(self, feats: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``(D,)`` and precision ``(D, D)`` of ``(N, D)`` features, in :attr:`dtype`.

        ``float64``: NumPy's mean and inverse; ``float32``: torch's on float32 tensors, as
        the authors' prototype computes them.
        """
        if self.covariance == "ledoit_wolf":
            precision = torch.from_numpy(LedoitWolf(assume_centered=False).fit(feats.astype(np.float64)).precision_)
            return torch.from_numpy(feats.mean(axis=0)).to(self.dtype), precision.to(self.dtype)
        if self.dtype == torch.float64:
            centered = feats - feats.mean(axis=0)
            cov = centered.T @ centered / max(len(feats) - 1, 1) + self.ridge * np.eye(feats.shape[1])
            return torch.from_numpy(feats.mean(axis=0)), torch.from_numpy(np.linalg.inv(cov))
        x = torch.from_numpy(feats).to(self.dtype)
        mean = x.mean(dim=0)
        centered = x - mean
        cov = centered.T @ centered / max(len(x) - 1, 1) + self.ridge * torch.eye(x.shape[1], dtype=self.dtype)
        return mean, torch.linalg.inv(cov)

    def add_task(self, features: torch.Tensor | np.ndarray) -> int:
        """Fit the next task's prototype on ``(N_t, D)`` training features; return its id."""
        feats = np.asarray(features, dtype=np.float64 if self.dtype == torch.float64 else np.float32)
        if feats.ndim != 2 or len(feats) < 2:
            raise ValueError(f"router needs at least two (N, D) training features, got shape {feats.shape}")
        task = self.n_tasks
        mean, precision = self._prototype(feats)
        self.register_buffer(f"mean_{task}", mean)
        self.register_buffer(f"precision_{task}", precision)
        self.n_tasks += 1
        return task

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """Squared Mahalanobis distances ``(B, T)`` of ``(B, D)`` features to each prototype."""
        feats = features.to(self.dtype)
        out = []
        for task in range(self.n_tasks):
            diff = feats - getattr(self, f"mean_{task}")
            out.append(((diff @ getattr(self, f"precision_{task}")) * diff).sum(dim=1))
        return torch.stack(out, dim=1)

    def nearest_mean(self, features: torch.Tensor) -> torch.Tensor:
        """Task ids ``(B,)`` of the nearest prototype mean in Euclidean distance (the router ablation)."""
        feats = features.to(self.dtype)
        means = torch.stack([getattr(self, f"mean_{task}") for task in range(self.n_tasks)])
        return torch.cdist(feats, means).argmin(dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Routed task ids ``(B,)`` for ``(B, D)`` router features."""
        return self.distances(features).argmin(dim=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        names = [k[len(prefix) :] for k in state_dict if k.startswith(prefix + "mean_")]
        for task in range(self.n_tasks, len(names)):
            dim = state_dict[f"{prefix}mean_{task}"].shape[0]
            self.register_buffer(f"mean_{task}", torch.zeros(dim, dtype=self.dtype))
            self.register_buffer(f"precision_{task}", torch.zeros(dim, dim, dtype=self.dtype))
        self.n_tasks = max(self.n_tasks, len(names))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
