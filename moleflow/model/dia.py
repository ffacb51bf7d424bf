"""Deep Invertible Adapter (eqs. 22-26): per-task affine coupling blocks after the flow.

Each task owns ``N`` blocks; block ``k`` transforms one half given the other
(``k`` even: the second half, ``k`` odd: the first; no permutation):
``y_b = x_b exp(c tanh(s(x_a) / c)) + t(x_a)`` with separate ``s`` and ``t`` MLPs
``D/2 -> D/2 -> D/2 -> D/2`` (ReLU, last layer zero-initialised, so a new adapter is
the identity) and clamp ``c = 1.9``. Log-determinant per patch = sum of the clamped
scales. Written in plain torch rather than FrEIA because FrEIA's one-sided
coupling cannot alternate halves without inserting a permutation.
"""

from __future__ import annotations

import torch
from torch import nn


def _mlp(width: int) -> nn.Sequential:
    layers = [nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width)]
    last = layers[-1]
    assert isinstance(last, nn.Linear)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers)


class AffineCouplingBlock(nn.Module):
    """One DIA block on ``(N, D)`` rows."""

    def __init__(self, dim: int, flip: bool, clamp: float = 1.9) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"DIA needs an even D, got {dim}")
        self.half_dim, self.flip, self.clamp = dim // 2, flip, clamp
        self.s, self.t = _mlp(self.half_dim), _mlp(self.half_dim)

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = torch.split(x, self.half_dim, dim=1)  # one gradient (a concatenation), not two zero-padded ones summed
        return (b, a) if self.flip else (a, b)

    def _join(self, cond: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
        return torch.cat([active, cond] if self.flip else [cond, active], dim=1)

    def forward(self, x: torch.Tensor, rev: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, D)`` -> ``((N, D), (N,) log-det)``; ``rev=True`` inverts (log-det negated)."""
        cond, active = self._split(x)
        s = self.clamp * torch.tanh(self.s(cond) / self.clamp)
        t = self.t(cond)
        if rev:
            return self._join(cond, (active - t) * torch.exp(-s)), -s.sum(dim=1)
        return self._join(cond, active * torch.exp(s) + t), s.sum(dim=1)


class DeepInvertibleAdapter(nn.Module):
    """Per-task stacks of :class:`AffineCouplingBlock`; ``blocks = 0`` is the identity."""

    def __init__(self, dim: int, blocks: int = 2, clamp: float = 1.9) -> None:
        super().__init__()
        self.dim, self.blocks, self.clamp = dim, blocks, clamp
        self.tasks = nn.ModuleDict()

    def add_task(self, task: int) -> None:
        """Create task ``task``'s blocks (identity at initialisation)."""
        self.tasks[str(task)] = nn.ModuleList(
            AffineCouplingBlock(self.dim, flip=bool(k % 2), clamp=self.clamp) for k in range(self.blocks)
        )

    def forward(self, z: torch.Tensor, task: int, rev: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, D)`` -> ``((N, D), (N,) log-det)`` through task ``task``'s blocks."""
        logdet = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        if self.blocks == 0:
            return z, logdet
        stack = list(self.tasks[str(task)].children())
        for block in reversed(stack) if rev else stack:
            z, ld = block(z, rev=rev)
            logdet = logdet + ld
        return z, logdet
