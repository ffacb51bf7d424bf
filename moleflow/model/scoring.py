"""Scoring (eqs. 38-39): patch NLL -> anomaly map and image score.

* patch score = ``-log p`` on the ``H x W`` grid;
* anomaly map = bilinear upsampling (``align_corners=True``) to the input size,
  then a Gaussian blur (``sigma`` 4, kernel radius ``int(4 sigma + 0.5)``), extended beyond
  the border as scipy's ``gaussian_filter`` does: ``reflect`` (half-sample symmetric, its
  default) or ``mirror`` (whole-sample, torch's ``reflect``);
* image score = mean of the top-``K`` patch scores (``K = 3``; ``K = 0``: every patch).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """Normalised 1D Gaussian of radius ``int(4 sigma + 0.5)``."""
    radius = int(4.0 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


PADDINGS = ("reflect", "mirror")


def border_index(size: int, radius: int, padding: str) -> torch.Tensor:
    """Indices ``(size + 2 radius,)`` into a line of ``size`` samples extended by ``radius`` on each side.

    scipy.ndimage's modes: ``reflect`` repeats the edge sample (``d c b a | a b c d | d c b a``),
    ``mirror`` does not (``d c b | a b c d | c b a``); both repeat periodically however wide
    the extension (period ``2 size`` and ``2 size - 2``).
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    i = torch.arange(-radius, size + radius)
    period = 2 * size if padding == "reflect" else 2 * size - 2
    if period <= 0:  # one sample: every position is it
        return torch.zeros_like(i)
    j = i % period
    return torch.where(j < size, j, period - 1 - j if padding == "reflect" else period - j)


@functools.lru_cache(maxsize=32)
def blur_matrix(size: int, sigma: float, padding: str) -> torch.Tensor:
    """``(size, size)`` float32 matrix ``B`` with ``B @ line`` = the line of ``size`` samples convolved with
    :func:`gaussian_kernel1d` and extended beyond its ends as ``padding`` says: row ``i`` holds the kernel's weights
    at the columns :func:`border_index` maps its taps to (a reflected tap adds its weight to the sample it repeats)."""
    kernel = gaussian_kernel1d(sigma)
    taps = kernel.numel()
    index = border_index(size, taps // 2, padding)
    cols = index[torch.arange(size)[:, None] + torch.arange(taps)[None, :]]
    rows = torch.arange(size)[:, None].expand(size, taps)
    matrix = torch.zeros(size, size)
    matrix.index_put_((rows, cols), kernel.expand(size, taps), accumulate=True)
    return matrix


def gaussian_blur(maps: torch.Tensor, sigma: float, padding: str = "reflect") -> torch.Tensor:
    """Separable Gaussian blur of ``(B, S, S')`` maps, extended beyond the border as ``padding`` says.

    As two products with banded matrices, ``B_S @ map @ B_S'^T`` (:func:`blur_matrix`): the same sums as the
    two one-dimensional convolutions, in another order (float rounding apart), and several times faster on a CPU
    than a one-channel convolution.
    """
    if sigma <= 0:
        return maps
    rows, cols = (blur_matrix(n, float(sigma), padding).to(maps) for n in maps.shape[-2:])
    return rows @ maps @ cols.T


def anomaly_maps(patch_scores: torch.Tensor, size: int, sigma: float = 4.0, padding: str = "reflect") -> torch.Tensor:
    """``(B, H, W)`` patch scores -> ``(B, size, size)`` smoothed anomaly maps."""
    up = F.interpolate(patch_scores[:, None].float(), size=(size, size), mode="bilinear", align_corners=True)[:, 0]
    return gaussian_blur(up, sigma, padding)


def image_scores(patch_scores: torch.Tensor, top_k: int = 3) -> torch.Tensor:
    """``(B, H, W)`` -> ``(B,)`` mean of the ``top_k`` highest patch scores (``top_k = 0``: of every patch)."""
    flat = patch_scores.reshape(patch_scores.shape[0], -1)
    if top_k == 0:
        return flat.mean(dim=1)
    return flat.topk(min(top_k, flat.shape[1]), dim=1).values.mean(dim=1)
