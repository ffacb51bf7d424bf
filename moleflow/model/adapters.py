"""Input-side modules: the positional encoding (eq. 7), the Whitening Adapter (eqs. 8-11), its authors' fallback
and the Spatial Context Mixer (eqs. 13-15).

All are preprocessing in front of the flow: their Jacobians are not part of the
density. The likelihood is that of the flow's input.

The positional encoding is CFLOW's 2D sinusoidal encoding, added unscaled: the first ``D/2`` channels encode the
column, the rest the row; within each half, even indices hold sines and odd indices cosines of geometrically spaced
frequencies.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
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


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class WhiteningAdapter(nn.Module):
    """Task-agnostic whitening and task-specific de-whitening.

    ``x_white = LayerNorm(x)`` over ``D`` without affine (eq. 8), then
    ``gamma_t * x_white + beta_t`` with ``gamma_t = 0.5 + 1.5 sigmoid(g_t)`` (eq. 9) and
    ``beta_t = 2 tanh(b_t)`` (eq. 10), per channel. One ``(g_t, b_t)`` pair per task.

    Example:
        >>> wa = WhiteningAdapter(8)
        >>> wa.add_task(0, gamma_init=1.0)
        >>> wa(torch.randn(2, 3, 3, 8), task=0).shape
        torch.Size([2, 3, 3, 8])
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.g = nn.ParameterDict()
        self.b = nn.ParameterDict()

    def add_task(self, task: int, gamma_init: float) -> None:
        """Create task ``task``'s parameters with ``gamma = gamma_init``, ``beta = 0``."""
        if not 0.5 < gamma_init < 2.0:
            raise ValueError(f"gamma_init must lie in (0.5, 2.0), got {gamma_init}")
        self.g[str(task)] = nn.Parameter(torch.full((self.dim,), _logit((gamma_init - 0.5) / 1.5)))
        self.b[str(task)] = nn.Parameter(torch.zeros(self.dim))

    def gamma_beta(self, task: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gamma_t, beta_t)``, each ``(D,)``."""
        return 0.5 + 1.5 * torch.sigmoid(self.g[str(task)]), 2.0 * torch.tanh(self.b[str(task)])

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """``(..., D)`` -> ``(..., D)``."""
        gamma, beta = self.gamma_beta(task)
        return F.layer_norm(x, (self.dim,), eps=self.eps) * gamma + beta


class SpatialContextMixer(nn.Module):
    """Gated depthwise aggregation: ``(1 - a) x + a DWConv_K(x)``, ``a = sigmoid(theta)`` (eqs. 13-15).

    The ``K x K`` depthwise kernel starts as a box filter (zero padding) and ``theta`` at
    ``gate_init``; with ``bias`` the convolution has a per-channel bias starting at zero
    (the authors' mixer; eq. 13 has none). Shared by all tasks: trained in task 0,
    frozen after.
    """

    def __init__(self, dim: int, kernel: int = 3, gate_init: float = 0.5, bias: bool = False) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"mixer kernel must be odd, got {kernel}")
        self.conv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=bias)
        nn.init.constant_(self.conv.weight, 1.0 / (kernel * kernel))
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)
        self.theta = nn.Parameter(torch.tensor(float(gate_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, D)`` -> ``(B, H, W, D)``."""
        context = self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        gate = torch.sigmoid(self.theta)
        return (1.0 - gate) * x + gate * context


class FiLMAdapter(nn.Module):
    """One task's FiLM input adapter: the authors' stand-in for the whitening adapter ("w/o WA" in their code).

    ``y = gamma * LN(x) + beta``, then ``y + sigmoid(g) MLP(y)`` with a GELU MLP
    ``D -> h -> h -> D``, ``h = max(D/2, 128)``, whose last layer starts near zero
    (normal, std 0.01; zero bias) and a gate logit ``g`` starting at 0.5. Task 0's adapter
    (which has no earlier task to align to) returns ``0.9 x + 0.1 y``.

    ``LN`` depends on ``soft_ln``:

    * ``False`` (``whitening_fallback: film``, the authors' "standard" adapter): a LayerNorm
      with affine parameters, in every task;
    * ``True`` (``soft_ln``, what the authors' ``--no_whitening_adapter`` builds): task 0 blends
      the LayerNorm in, ``b LN(x) + (1 - b) x`` with ``b = clamp(blend, 0, 1)`` and ``blend`` a
      parameter starting at 0.01; a later task has no LayerNorm at all (their blend is a
      buffer fixed at 0, which leaves ``x`` exactly as it is).
    """

    def __init__(self, dim: int, first: bool, soft_ln: bool = False) -> None:
        super().__init__()
        hidden = max(dim // 2, 128)
        self.first = first
        self.soft_ln = soft_ln
        self.norm = nn.LayerNorm(dim) if first or not soft_ln else None
        self.blend = nn.Parameter(torch.tensor(0.01)) if soft_ln and first else None
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )
        out = self.mlp[-1]
        assert isinstance(out, nn.Linear)
        nn.init.normal_(out.weight, std=0.01)
        nn.init.zeros_(out.bias)
        self.gate = nn.Parameter(torch.tensor(0.5))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's LayerNorm step, ``(..., D)`` -> ``(..., D)``."""
        if self.norm is None:  # soft_ln, a later task: the LayerNorm is off
            return x
        if self.blend is None:
            return self.norm(x)
        share = self.blend.clamp(0.0, 1.0)
        return share * self.norm(x) + (1.0 - share) * x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., D)`` -> ``(..., D)``."""
        y = self.normalise(x) * self.gamma + self.beta
        y = y + torch.sigmoid(self.gate) * self.mlp(y)
        return 0.9 * x + 0.1 * y if self.first else y


class FiLMInputAdapters(nn.Module):
    """Per-task :class:`FiLMAdapter` s (``tasks.<t>``): the ``film`` and ``soft_ln`` readings of "w/o WA"."""

    def __init__(self, dim: int, soft_ln: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.soft_ln = soft_ln
        self.tasks = nn.ModuleDict()

    def add_task(self, task: int, first: bool | None = None) -> None:
        """Create task ``task``'s adapter; ``first`` (default: ``task == 0``) gives it the task-0 form."""
        self.tasks[str(task)] = FiLMAdapter(self.dim, first=task == 0 if first is None else first, soft_ln=self.soft_ln)

    def forward(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """``(..., D)`` -> ``(..., D)`` through task ``task``'s adapter."""
        return self.tasks[str(task)](x)
