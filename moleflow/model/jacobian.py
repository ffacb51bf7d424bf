"""Exact log-determinants of the trainable maps in front of the flow (``model.input_jacobian``).

The density the flow defines is that of its input ``u``; the whitening adapter's per-task
affine and the spatial mixer are trainable maps from the (layer-normalised) features to
``u``. With ``model.input_jacobian: included`` their log-determinants are added to the
log-likelihood, which makes it a likelihood of the features themselves and bounds the
training objective (a map that shrinks its input no longer raises every patch's likelihood
for free).

* Whitening adapter, per patch: ``gamma_t * x + beta_t`` has the Jacobian ``diag(gamma_t)``:
  ``sum_d log gamma_t[d]`` (``gamma`` lies in ``(0.5, 2)``, so the logarithm is defined).
* Spatial mixer, per image: ``u_c = ((1 - a) I + a K_c) x_c + b_c`` for each channel ``c``,
  ``K_c`` the ``(H W, H W)`` matrix of the zero-padded depthwise ``k x k`` convolution on the
  grid, ``a = sigmoid(theta)``: ``sum_c log |det((1 - a) I + a K_c)|``, a function of the
  parameters and the grid alone. Per patch it is divided by ``H W``.

The mixer's matrices are never formed whole: ordering the grid row by row and cutting it
into bands of ``r = k // 2`` rows makes ``M_c`` block tridiagonal (a pixel only sees the
``r`` rows above and below it), so its determinant is the product of the determinants of
the Schur complements of block LU, ``S_0 = D_0``, ``S_i = D_i - L_i S_{i-1}^{-1} U_i``: about
``H W^2 r^2`` operations per channel instead of ``(H W)^3 / 3``, in float64, differentiable.
"""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=32)
def _band_taps(kernel: int, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """Per block of the band structure, which kernel tap each matrix entry holds, as a one-hot ``(k k, n_i n_j)``.

    Blocks in the order ``(D_0, D_1, L_1, U_1, D_2, L_2, U_2, ...)``: ``D_i`` the band ``i`` of ``r = k // 2``
    grid rows (row-major pixels) on itself, ``L_i`` on the band before, ``U_i`` the band before on band ``i``.
    Entry ``(p, q)`` of block ``(i, j)`` is the weight of input pixel ``q`` in the output at pixel ``p``
    (cross-correlation, as ``nn.Conv2d``: ``out(y, x) = sum w[dy, dx] in(y + dy - c, x + dx - c)``,
    ``c = k // 2``); an all-zero column is an entry outside the kernel.
    """
    c = kernel // 2
    rows = max(c, 1)
    pixels = [
        torch.cartesian_prod(torch.arange(s, min(s + rows, height)), torch.arange(width)).reshape(-1, 2)
        for s in range(0, height, rows)
    ]

    def block(i: int, j: int) -> torch.Tensor:
        out, inp = pixels[i], pixels[j]
        dy = inp[None, :, 0] - out[:, None, 0] + c
        dx = inp[None, :, 1] - out[:, None, 1] + c
        valid = ((dy >= 0) & (dy < kernel) & (dx >= 0) & (dx < kernel)).reshape(-1)
        tap = (dy.clamp(0, kernel - 1) * kernel + dx.clamp(0, kernel - 1)).reshape(-1)
        onehot = torch.zeros(kernel * kernel, tap.numel(), dtype=torch.float64)
        onehot[tap[valid], torch.nonzero(valid).reshape(-1)] = 1.0
        return onehot

    blocks = [block(0, 0)]
    for i in range(1, len(pixels)):
        blocks += [block(i, i), block(i, i - 1), block(i - 1, i)]
    return tuple(blocks)


class _LogAbsDet(torch.autograd.Function):
    """``log |det S|`` of a batch ``(..., n, n)`` from its LU factors, whose gradient ``g S^{-T}`` reuses the
    inverse the Schur recursion computes anyway (torch's own slogdet backward solves again, far slower
    for a batch of small matrices)."""

    @staticmethod
    def forward(matrix: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        lu, _ = torch.linalg.lu_factor(matrix)
        return lu.diagonal(dim1=-2, dim2=-1).abs().log().sum(dim=-1)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return grad[..., None, None] * inverse.mT, None


def _logabsdet_and_inverse(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log |det S|, S^{-1})`` of ``(..., n, n)``, both differentiable (the inverse's backward is two products)."""
    inverse = torch.linalg.inv(matrix)
    return _LogAbsDet.apply(matrix, inverse.detach()), inverse


def mixer_logdet(weight: torch.Tensor, gate: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``log |det((1 - a) I + a K_c)|`` per channel of a depthwise ``k x k`` convolution on an ``H x W`` grid.

    Args:
        weight: ``(C, 1, k, k)`` depthwise kernels (``nn.Conv2d(C, C, k, groups=C).weight``).
        gate: the scalar gate ``a`` (``sigmoid(theta)``).

    Returns:
        ``(C,)`` float64 log-absolute-determinants of the ``(H W, H W)`` maps.
    """
    kernel = weight.shape[-1]
    taps = weight.reshape(weight.shape[0], -1).to(torch.float64)  # (C, k k)
    a = gate.to(torch.float64)
    blocks = _band_taps(kernel, height, width)
    sizes = [min(max(kernel // 2, 1), height - s) * width for s in range(0, height, max(kernel // 2, 1))]

    def matrix(index: int, rows: int, cols: int, diagonal: bool) -> torch.Tensor:
        out = (a * taps) @ blocks[index].to(taps.device)  # (C, n_i n_j): one product, and one back
        out = out.reshape(-1, rows, cols)
        if diagonal:
            out = out + (1.0 - a) * torch.eye(rows, dtype=torch.float64, device=taps.device)
        return out

    total, inverse = _logabsdet_and_inverse(matrix(0, sizes[0], sizes[0], True))
    for i in range(1, len(sizes)):
        n, m = sizes[i], sizes[i - 1]
        diag, lower, upper = matrix(3 * i - 2, n, n, True), matrix(3 * i - 1, n, m, False), matrix(3 * i, m, n, False)
        logdet, inverse = _logabsdet_and_inverse(diag - lower @ (inverse @ upper))
        total = total + logdet
    return total


def whitening_logdet(gamma: torch.Tensor) -> torch.Tensor:
    """``sum_d log gamma[d]``: the per-patch log-determinant of ``x -> gamma * x + beta`` for ``gamma`` ``(D,)``."""
    return torch.log(gamma).sum()
