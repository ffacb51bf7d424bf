"""Scoring (eqs. 38-39): patch NLL -> anomaly map and image score.

* patch score = ``-log p`` on the ``H x W`` grid;
* anomaly map = bilinear upsampling (``align_corners=True``) to the input size,
  then a Gaussian blur (``sigma`` 4, kernel radius ``int(4 sigma + 0.5)``, reflect padding);
* image score = mean of the top-``K`` patch scores (``K = 3``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1D Gaussian of radius ``int(4 sigma + 0.5)``."""
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, S, S)`` maps (reflect padding)."""
    if sigma <= 0:
        return maps
    kernel = gaussian_kernel1d(sigma).to(maps)
    radius = kernel.numel() // 2
    x = maps[:, None]
    pad_mode = "reflect" if radius < min(maps.shape[-2:]) else "replicate"
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode=pad_mode), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode=pad_mode), kernel.view(1, 1, -1, 1))
    return x[:, 0]


def anomaly_maps(patch_scores: torch.Tensor, size: int, sigma: float = 4.0) -> torch.Tensor:
    """``(B, H, W)`` patch scores -> ``(B, size, size)`` smoothed anomaly maps."""
    up = F.interpolate(patch_scores[:, None].float(), size=(size, size), mode="bilinear", align_corners=True)[:, 0]
    return gaussian_blur(up, sigma)


def image_scores(patch_scores: torch.Tensor, top_k: int = 3) -> torch.Tensor:
    """``(B, H, W)`` -> ``(B,)`` mean of the ``top_k`` highest patch scores."""
    flat = patch_scores.reshape(patch_scores.shape[0], -1)
    return flat.topk(min(top_k, flat.shape[1]), dim=1).values.mean(dim=1)
