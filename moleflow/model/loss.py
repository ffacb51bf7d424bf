"""Tail-Aware Loss (eq. 33) with the log-determinant regulariser.

``L = (1 - w) * NLL_term + w * mean_images(mean of the image's top k NLL)
+ lambda * mean((logdet_flow + logdet_DIA)^2)``, where ``k`` is the share ``ratio`` of the
``H*W`` patches rounded down (``max(1, int(ratio*H*W))``, the authors') or up
(``ceil(ratio*H*W)``), and ``NLL_term`` is the mean NLL over
all patches (``nll_reduction="mean"``) or, as in the authors' non-tail code path, each
image's NLL summed over its ``H*W`` patches and averaged over images (``"image_sum"``:
``H*W`` times larger, so the log-det regulariser weighs about ``H*W`` times less).
"w/o TAL" is ``w = 0``; which reduction it uses makes two different ablations.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TailAwareLoss(nn.Module):
    """Args: ``tail_weight`` (w), ``top_k_ratio``, ``logdet_reg`` (lambda), ``nll_reduction`` (``mean``, ``image_sum``),
    ``k_rounding`` (``floor``, ``ceil``)."""

    def __init__(
        self,
        tail_weight: float = 0.7,
        top_k_ratio: float = 0.02,
        logdet_reg: float = 1e-4,
        nll_reduction: str = "mean",
        k_rounding: str = "ceil",
    ) -> None:
        super().__init__()
        if not 0.0 <= tail_weight <= 1.0:
            raise ValueError(f"tail_weight must lie in [0, 1], got {tail_weight}")
        if nll_reduction not in ("mean", "image_sum"):
            raise ValueError(f"nll_reduction must be 'mean' or 'image_sum', got {nll_reduction!r}")
        self.tail_weight, self.top_k_ratio, self.logdet_reg = tail_weight, top_k_ratio, logdet_reg
        if k_rounding not in ("floor", "ceil"):
            raise ValueError(f"k_rounding must be 'floor' or 'ceil', got {k_rounding!r}")
        self.nll_reduction, self.k_rounding = nll_reduction, k_rounding

    def tail_k(self, patches: int) -> int:
        """How many of an image's ``patches`` make its tail: at least one."""
        exact = self.top_k_ratio * patches
        return max(1, math.ceil(exact) if self.k_rounding == "ceil" else int(exact))

    def forward(self, nll: torch.Tensor, logdet: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``nll``, ``logdet``: ``(B, H, W)`` per patch -> ``(loss, parts)``."""
        flat = nll.reshape(nll.shape[0], -1)
        mean_all = flat.mean()
        nll_term = flat.sum(dim=1).mean() if self.nll_reduction == "image_sum" else mean_all
        loss = (1.0 - self.tail_weight) * nll_term
        parts = {"nll": mean_all.detach()}
        if self.tail_weight > 0:
            tail = flat.topk(self.tail_k(flat.shape[1]), dim=1).values.mean()
            loss = loss + self.tail_weight * tail
            parts["tail"] = tail.detach()
        if self.logdet_reg > 0:
            reg = (logdet**2).mean()
            loss = loss + self.logdet_reg * reg
            parts["logdet_sq"] = reg.detach()
        return loss, parts
