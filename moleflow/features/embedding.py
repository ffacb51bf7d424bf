"""Patch embedding, a pure torch module.

PatchCore-style, no learned projection:

1. each selected layer map ``(B, C_l, h_l, w_l)`` is unfolded 3x3 (stride 1,
   padding 1) into ``(B, C_l * 9, h_l, w_l)`` (channel-major, as ``F.unfold``);
2. each ``C_l * 9`` vector is reduced to ``D`` by adaptive average pooling over it;
3. deeper layers are bilinearly resized to the first layer's grid ``(h, w)`` (the reference order
   resizes before pooling; the two linear maps commute, so pooling first is exact and cheaper);
4. the layers are fused: ``mean`` (element-wise average of the ``D``-vectors) or
   ``concat_pool`` (PatchCore: adaptive pooling of the concatenation to ``D``);
5. optionally pooled to a ``grid x grid`` grid (adaptive average pooling).

The router's image feature is the global average of the patch embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchEmbedder(nn.Module):
    """Turn backbone layer maps into a patch embedding and a router feature.

    Args:
        embed_dim: ``D``, the patch vector size.
        fusion: ``"mean"`` or ``"concat_pool"``.
        grid: output grid side, or ``None`` for the first layer's grid.
        aggregation: neighbourhood size of the unfold (3 in the paper).

    Example:
        >>> emb = PatchEmbedder(embed_dim=64)
        >>> maps = [torch.randn(2, 128, 28, 28), torch.randn(2, 256, 14, 14)]
        >>> patches, router = emb(maps)
        >>> patches.shape, router.shape
        (torch.Size([2, 28, 28, 64]), torch.Size([2, 64]))
    """

    def __init__(self, embed_dim: int, fusion: str = "mean", grid: int | None = None, aggregation: int = 3) -> None:
        super().__init__()
        if fusion not in ("mean", "concat_pool"):
            raise ValueError(f"fusion must be 'mean' or 'concat_pool', got {fusion!r}")
        self.embed_dim = embed_dim
        self.fusion = fusion
        self.grid = grid
        self.aggregation = aggregation

    def _layer_vectors(self, fmap: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``(B, C, h, w)`` -> ``(B, H, W, D)`` for one layer."""
        batch, channels, h, w = fmap.shape
        k = self.aggregation
        unfolded = F.unfold(fmap, kernel_size=k, padding=k // 2)  # (B, C*k*k, h*w), channel-major
        vectors = unfolded.transpose(1, 2).reshape(-1, 1, channels * k * k)
        pooled = F.adaptive_avg_pool1d(vectors, self.embed_dim).reshape(batch, h, w, self.embed_dim)
        if (h, w) != size:
            # Pooling over the vector and bilinear resizing over the grid are both linear and act
            # on different axes, so they commute: pooling first gives the same result at a
            # fraction of the memory (D instead of C*k*k channels are resized).
            pooled = F.interpolate(pooled.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=False)
            pooled = pooled.permute(0, 2, 3, 1)
        return pooled

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed layer maps.

        Args:
            maps: backbone outputs, first = the finest layer, each ``(B, C_l, h_l, w_l)``.

        Returns:
            ``(patches, router)``: ``(B, H, W, D)`` patch embedding and ``(B, D)`` router feature.
        """
        size = (int(maps[0].shape[-2]), int(maps[0].shape[-1]))
        per_layer = [self._layer_vectors(m.float(), size) for m in maps]
        if self.fusion == "mean":
            patches = torch.stack(per_layer, 0).mean(0)
        else:
            batch, h, w, _ = per_layer[0].shape
            joined = torch.cat(per_layer, -1).reshape(-1, 1, self.embed_dim * len(per_layer))
            patches = F.adaptive_avg_pool1d(joined, self.embed_dim).reshape(batch, h, w, self.embed_dim)
        if self.grid is not None and self.grid != size[0]:
            patches = F.adaptive_avg_pool2d(patches.permute(0, 3, 1, 2), self.grid).permute(0, 2, 3, 1)
        return patches.contiguous(), patches.mean(dim=(1, 2))
