"""The nearest-neighbour reference: a PatchCore-style memory bank per task, no training.

Each task keeps the patch vectors of its training images (optionally a greedy
k-centre coreset of them, PatchCore's subsampling). A test patch's score is its
Euclidean distance to the nearest vector of the task's bank; image scores and
anomaly maps are then made exactly as for the flow (:mod:`moleflow.model.scoring`),
so the two are compared on the same maps and metrics.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def greedy_coreset(vectors: torch.Tensor, ratio: float, seed: int, projection_dim: int = 128) -> torch.Tensor:
    """Indices of a greedy k-centre coreset of ``vectors`` ``(M, D)`` holding ``ceil(ratio * M)`` rows.

    PatchCore's approximation: distances are measured after a fixed random projection
    to ``projection_dim`` dimensions (drawn from ``seed``); the first centre is a row
    drawn from ``seed``, and each next centre is the row farthest from the centres
    chosen so far.
    """
    count = max(1, int(torch.ceil(torch.tensor(ratio * len(vectors))).item()))
    if count >= len(vectors):
        return torch.arange(len(vectors))
    generator = torch.Generator().manual_seed(seed)
    dim = vectors.shape[1]
    if dim > projection_dim:
        projection = torch.randn(dim, projection_dim, generator=generator) / projection_dim**0.5
        points = vectors.float() @ projection.to(vectors.device)
    else:
        points = vectors.float()
    first = int(torch.randint(len(points), (1,), generator=generator))
    chosen = [first]
    nearest = torch.linalg.vector_norm(points - points[first], dim=1)
    for _ in range(count - 1):
        nxt = int(torch.argmax(nearest))
        chosen.append(nxt)
        nearest = torch.minimum(nearest, torch.linalg.vector_norm(points - points[nxt], dim=1))
    return torch.tensor(sorted(chosen))


def _digest(x: torch.Tensor) -> str:
    """A digest of a tensor's shape, dtype and bytes (the memo's key of a query)."""
    data = x.detach().contiguous().cpu()
    head = f"{tuple(data.shape)}{data.dtype}".encode()
    return hashlib.blake2b(head + data.view(torch.uint8).numpy().tobytes(), digest_size=16).hexdigest()


class NearestNeighbourScorer(nn.Module):
    """Per-task memory banks of training patch vectors; patch score = distance to the nearest one.

    Example:
        >>> scorer = NearestNeighbourScorer()
        >>> scorer.add_task(torch.randn(50, 8))
        0
        >>> scorer(torch.randn(2, 4, 4, 8), task=0).shape
        torch.Size([2, 4, 4])
    """

    def __init__(self, chunk: int = 256) -> None:
        super().__init__()
        self.chunk = chunk
        self.n_tasks = 0
        # (bank, query digest) -> distances: a bank never changes once stored, so the distances of the same
        # query to it are computed once per run (the continual evaluation measures every seen task after each
        # task, against the same banks); a recomputation would give the same bits
        self._memo: dict[tuple[int, str], torch.Tensor] = {}

    def add_task(self, bank: torch.Tensor) -> int:
        """Store ``bank`` ``(M, D)`` as the next task's memory; return its id."""
        task = self.n_tasks
        self.register_buffer(f"bank_{task}", bank.detach().float().contiguous())
        self.n_tasks += 1
        return task

    def bank(self, task: int) -> torch.Tensor:
        """Task ``task``'s memory bank ``(M, D)``."""
        if not 0 <= task < self.n_tasks:
            raise ValueError(f"task {task} does not exist (the scorer has {self.n_tasks})")
        return getattr(self, f"bank_{task}")

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """Nearest-neighbour distances ``(B, H, W)`` of patch vectors ``x`` ``(B, H, W, D)`` to task ``task``'s bank."""
        bank = self.bank(task)
        key = (task, _digest(x))
        if key not in self._memo:
            self._memo[key] = self._distances(x, bank)
        return self._memo[key].clone()

    def _distances(self, x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without the memo."""
        rows = x.reshape(-1, x.shape[-1]).float()
        bank_sq = (bank * bank).sum(1)
        out = []
        for start in range(0, len(rows), self.chunk):
            q = rows[start : start + self.chunk]
            # the nearest vector by ||q||^2 - 2 q.b + ||b||^2 (one matrix product), then its distance computed
            # directly: the expansion loses precision near 0 (a training patch would not score exactly 0).
            # min(dim).indices is argmin's index (the first of equal minima, NaN first) at about half its CPU time
            nearest = torch.addmm(bank_sq, q, bank.T, alpha=-2.0).min(dim=1).indices
            out.append(torch.linalg.vector_norm(q - bank[nearest], dim=1))
        return torch.cat(out).reshape(x.shape[:-1])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        names = [k for k in state_dict if k.startswith(prefix + "bank_")]
        for task in range(self.n_tasks, len(names)):
            self.register_buffer(f"bank_{task}", torch.zeros_like(state_dict[f"{prefix}bank_{task}"]))
        self.n_tasks = max(self.n_tasks, len(names))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
