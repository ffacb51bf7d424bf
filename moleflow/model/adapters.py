"""Input-side modules: the Whitening Adapter (eqs. 8-11) and the Spatial Context Mixer (eqs. 13-15).

Both are preprocessing in front of the flow: their Jacobians are not part of the
density. The likelihood is that of the flow's input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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

    The ``K x K`` depthwise kernel starts as a box filter (zero padding, no bias) and
    ``theta`` at ``gate_init``. Shared by all tasks: trained in task 0, frozen after.
    """

    def __init__(self, dim: int, kernel: int = 3, gate_init: float = 0.5) -> None:
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"mixer kernel must be odd, got {kernel}")
        self.conv = nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=False)
        nn.init.constant_(self.conv.weight, 1.0 / (kernel * kernel))
        self.theta = nn.Parameter(torch.tensor(float(gate_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, D)`` -> ``(B, H, W, D)``."""
        context = self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        gate = torch.sigmoid(self.theta)
        return (1.0 - gate) * x + gate * context
