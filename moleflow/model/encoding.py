"""Positional encoding (paper eq. 7): CFLOW's 2D sinusoidal encoding, added unscaled.

The first ``D/2`` channels encode the column, the rest the row; within each half,
even indices hold sines and odd indices cosines of geometrically spaced frequencies.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def positional_encoding_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """The encoding ``P`` of shape ``(H, W, D)``; ``D`` must be divisible by 4."""
    if dim % 4:
        raise ValueError(f"positional encoding needs D divisible by 4, got {dim}")
    half = dim // 2
    freq = torch.exp(torch.arange(0.0, half, 2) * -(math.log(10000.0) / half))  # (D/4,)
    cols = torch.arange(width, dtype=torch.float32)[:, None] * freq  # (W, D/4)
    rows = torch.arange(height, dtype=torch.float32)[:, None] * freq  # (H, D/4)
    enc = torch.zeros(height, width, dim)
    enc[:, :, 0:half:2] = torch.sin(cols)[None, :, :]
    enc[:, :, 1:half:2] = torch.cos(cols)[None, :, :]
    enc[:, :, half::2] = torch.sin(rows)[:, None, :]
    enc[:, :, half + 1 :: 2] = torch.cos(rows)[:, None, :]
    return enc


class PositionalEncoding2D(nn.Module):
    """Add ``scale * P`` to ``(B, H, W, D)`` patch embeddings (no parameters; the paper: ``scale = 1``)."""

    def __init__(self, dim: int, scale: float = 1.0) -> None:
        super().__init__()
        self.dim, self.scale = dim, scale
        self._cache: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, D)`` -> ``(B, H, W, D)``."""
        key = (x.shape[1], x.shape[2], x.device, x.dtype)
        if key not in self._cache:
            self._cache[key] = (self.scale * positional_encoding_2d(self.dim, x.shape[1], x.shape[2])).to(
                x.device, x.dtype
            )
        return x + self._cache[key]
