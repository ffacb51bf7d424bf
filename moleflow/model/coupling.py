"""The MoLE coupling flow: FrEIA ``AllInOneBlock``s whose subnet is :class:`MoLEContextSubnet` (eqs. 17-21).

The flow maps each patch vector ``u`` in ``R^D`` to ``z``; patches travel as rows
``(B*H*W, D)`` so that FrEIA returns one log-determinant per patch. The subnet
needs the grid to compute its spatial context, so the flow shares a
:class:`GridShape` with every subnet and sets it before each pass.

Each block: split ``D/2 + D/2``; ``(s, t) = subnet(x1)``; ``x2 <- x2 exp(1.9 tanh(0.1 s)) + t``
(FrEIA scales the subnet output by 0.1 and soft-clamps), then a global affine
(SOFTPLUS) and a hard channel permutation drawn from NumPy seeded with the block's seed,
applied as a column gather (:class:`GatherPermutationBlock`) rather than FrEIA's
product with the ``D x D`` permutation matrix: the same numbers without a dense
product forward and backward.
The log-determinant per patch is the sum of the clamped scales plus the global
affine's; the coupling is block-triangular over the whole grid (the context reads
only ``x1``, which the block leaves unchanged), so the sum over patches is the
exact log-determinant of the joint map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from FrEIA.framework import SequenceINN
from FrEIA.modules import AllInOneBlock
from torch import nn

from moleflow.model.lora import LoRALinear


@dataclass
class GridShape:
    """The ``(B, H, W)`` of the rows currently flowing through the coupling blocks."""

    batch: int = 1
    height: int = 1
    width: int = 1


@dataclass(frozen=True)
class SubnetConfig:
    """Settings of :class:`MoLEContextSubnet`."""

    rank: int = 64
    alpha: float = 1.0
    use_lora: bool = True
    task_bias: bool = True
    task0_adapters: bool = True
    scale_context: bool = True
    context_kernel: int = 5
    context_alpha_max: float = 0.2
    hidden_ratio: float = 1.0
    joint: bool = False  # one network for [s, t] (MoLEJointSubnet); needs scale_context False


def _lora_kwargs(cfg: SubnetConfig) -> dict:
    return dict(
        rank=cfg.rank,
        alpha=cfg.alpha,
        use_lora=cfg.use_lora,
        task_bias=cfg.task_bias,
        task0_adapters=cfg.task0_adapters,
    )


class MoLEContextSubnet(nn.Module):
    """Predict ``[s, t]`` for one coupling block from the passive half ``x1``.

    * ``ctx = alpha_max * sigmoid(theta_s) * DWConv_k(x1 on the H x W grid)`` (eq. 17),
      ``theta_s = 0``, conv zero-initialised; the "w/o scale context" ablation drops it;
    * ``s = Lin(ReLU(Lin([x1; ctx])))``, widths ``D -> D -> D/2`` (eq. 18);
    * ``t = Lin(ReLU(Lin(x1)))``, widths ``D/2 -> D -> D/2`` (eq. 19);
    * every ``Lin`` is a :class:`LoRALinear` (eq. 20).

    Args:
        c_in: ``D/2``, the passive half's width (FrEIA's ``channels_in``).
        c_out: ``D``, twice the active half's width (FrEIA's ``channels_out``).
        grid: the shared grid shape.
        cfg: the subnet settings.
    """

    def __init__(self, c_in: int, c_out: int, grid: GridShape, cfg: SubnetConfig) -> None:
        super().__init__()
        self.grid = grid
        self.half_out = c_out // 2
        hidden = max(1, int(round(cfg.hidden_ratio * 2 * c_in)))
        lora = _lora_kwargs(cfg)
        self.context_conv: nn.Conv2d | None = None
        if cfg.scale_context:
            k = cfg.context_kernel
            conv = nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in)
            assert conv.bias is not None
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
            self.context_conv = conv
            self.theta_s = nn.Parameter(torch.zeros(()))
            self.alpha_max = cfg.context_alpha_max
        s_in = 2 * c_in if cfg.scale_context else c_in
        self.s1, self.s2 = LoRALinear(s_in, hidden, **lora), LoRALinear(hidden, self.half_out, **lora)
        self.t1, self.t2 = LoRALinear(c_in, hidden, **lora), LoRALinear(hidden, self.half_out, **lora)

    def context(self, x1: torch.Tensor) -> torch.Tensor:
        """Spatial context of ``x1`` ``(N, c_in)`` on the grid -> ``(N, c_in)``."""
        assert self.context_conv is not None
        g = self.grid
        grid = x1.reshape(g.batch, g.height, g.width, -1).permute(0, 3, 1, 2)
        ctx = self.context_conv(grid).permute(0, 2, 3, 1).reshape(x1.shape)
        return self.alpha_max * torch.sigmoid(self.theta_s) * ctx

    def forward(self, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, D/2)`` -> ``(s, t)``, each ``(N, D/2)``.

        The two halves stay apart: :class:`GatherPermutationBlock` takes them as they are, where
        FrEIA's block would take ``[s, t]`` as one ``(N, D)`` tensor and slice it again (a copy
        forward, and two zero-filled ``(N, D)`` gradients summed backward, for the same values).
        """
        s_in = torch.cat([x1, self.context(x1)], dim=1) if self.context_conv is not None else x1
        s = self.s2(torch.relu(self.s1(s_in)))
        t = self.t2(torch.relu(self.t1(x1)))
        return s, t


class MoLEJointSubnet(nn.Module):
    """One network for ``[s, t]``: ``Lin(ReLU(Lin(x1)))``, widths ``D/2 -> D -> D`` (FrEIA's usual subnet form).

    What the authors' code uses when the scale context is off (``model.subnet: joint``): two
    :class:`LoRALinear` per subnet instead of the split form's four, so "w/o Scale Context"
    read this way also halves the LoRA layers.
    """

    def __init__(self, c_in: int, c_out: int, cfg: SubnetConfig) -> None:
        super().__init__()
        hidden = max(1, int(round(cfg.hidden_ratio * 2 * c_in)))
        self.l1, self.l2 = LoRALinear(c_in, hidden, **_lora_kwargs(cfg)), LoRALinear(hidden, c_out, **_lora_kwargs(cfg))

    def forward(self, x1: torch.Tensor) -> torch.Tensor:
        """``(N, D/2)`` -> ``(N, D)`` = ``[s, t]``."""
        return self.l2(torch.relu(self.l1(x1)))


class GatherPermutationBlock(AllInOneBlock):
    """FrEIA's ``AllInOneBlock`` with its hard permutation as a column gather.

    FrEIA applies the permutation ``P`` as ``F.linear(x, P)``: a dense ``(N, D) x (D, D)``
    product in the forward pass and another in the backward pass. With a hard
    permutation (``permute_soft=False``) each output column is one input column, so
    ``x[:, index]`` with ``index[i] = argmax_j P[i, j]`` gives the same values (a sum of
    one product by 1 and products by 0 is exact), and so does its gradient. ``P`` stays
    in the state dict (checkpoints and fingerprints unchanged); the indices are
    non-persistent buffers derived from it. Its coupling also takes the subnet's ``(s, t)``
    halves as a pair (:meth:`_affine`), with FrEIA's arithmetic.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        hard = (
            not self.householder
            and self.w_perm.dim() == 2
            and bool(((self.w_perm == 0) | (self.w_perm == 1)).all())
            and bool((self.w_perm.sum(0) == 1).all())
        )
        if not hard or self.GIN or self.input_rank != 0:
            raise ValueError(
                "GatherPermutationBlock needs vector inputs, a hard permutation (permute_soft=False, "
                "no Householder) and no GIN"
            )
        self.register_buffer("perm_index", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("perm_index_inv", torch.empty(0, dtype=torch.long), persistent=False)
        self._index_permutation()
        # a loaded checkpoint brings its own matrix: the indices follow it
        self.register_load_state_dict_post_hook(lambda module, _: module._index_permutation())

    def _index_permutation(self) -> None:
        """Column indices ``(D,)`` of the permutation matrix and of its inverse."""
        self.perm_index = self.w_perm.detach().argmax(dim=1)
        self.perm_index_inv = self.w_perm_inv.detach().argmax(dim=1)

    def _permute(self, x: torch.Tensor, rev: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, D)`` -> permuted (and globally scaled) ``(N, D)`` and the scaling's log-det per patch."""
        scale = self.global_scale_activation(self.global_scale)
        log_jac = torch.sum(torch.log(scale))
        if rev:
            return (x.index_select(1, self.perm_index_inv) - self.global_offset) / scale, log_jac
        return (x * scale + self.global_offset).index_select(1, self.perm_index), log_jac

    def _pre_permute(self, x: torch.Tensor, rev: bool = False) -> torch.Tensor:
        return x.index_select(1, self.perm_index if rev else self.perm_index_inv)

    def _affine(
        self, x: torch.Tensor, a: torch.Tensor | tuple[torch.Tensor, torch.Tensor], rev: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """FrEIA's affine coupling of the active half ``x`` ``(N, D/2)``, also from the subnet's ``(s, t)`` pair.

        A pair (:class:`MoLEContextSubnet`) is scaled by FrEIA's 0.1 half by half: the same
        elementwise operations as FrEIA's on the concatenated ``(N, D)`` ``[s, t]``, so the same
        bits forward and backward. A single tensor (:class:`MoLEJointSubnet`) goes to FrEIA.
        """
        if isinstance(a, torch.Tensor):
            return super()._affine(x, a, rev=rev)
        s, t = a[0] * 0.1, a[1] * 0.1
        sub_jac = self.clamp * torch.tanh(s)
        if rev:
            return (x - t) * torch.exp(-sub_jac), -torch.sum(sub_jac, dim=self.sum_dims)
        return x * torch.exp(sub_jac) + t, torch.sum(sub_jac, dim=self.sum_dims)


def build_coupling_flow(
    dim: int,
    blocks: int,
    grid: GridShape,
    cfg: SubnetConfig,
    clamp: float = 1.9,
    permutation_seeds: tuple[int, ...] | None = None,
) -> SequenceINN:
    """``blocks`` FrEIA ``AllInOneBlock``s on ``dim``-vectors with :class:`MoLEContextSubnet`s.

    FrEIA draws each hard permutation from NumPy's global generator; before block ``k`` it
    is seeded with ``permutation_seeds[k]`` (default ``k``) and restored afterwards.
    ``cfg.joint`` builds :class:`MoLEJointSubnet` s instead of :class:`MoLEContextSubnet` s.
    """
    seeds = tuple(range(blocks)) if permutation_seeds is None else permutation_seeds
    if len(seeds) != blocks:
        raise ValueError(f"{blocks} coupling blocks need {blocks} permutation seeds, got {len(seeds)}")
    if cfg.joint and cfg.scale_context:
        raise ValueError("the joint subnet has no scale context: set model.scale_context false with model.subnet joint")

    def subnet(c_in: int, c_out: int) -> nn.Module:
        return MoLEJointSubnet(c_in, c_out, cfg) if cfg.joint else MoLEContextSubnet(c_in, c_out, grid, cfg)

    flow = SequenceINN(dim)
    state = np.random.get_state()
    try:
        for k in range(blocks):
            np.random.seed(seeds[k])
            flow.append(
                GatherPermutationBlock,
                subnet_constructor=subnet,
                affine_clamping=clamp,
                global_affine_type="SOFTPLUS",
                permute_soft=False,
            )
    finally:
        np.random.set_state(state)
    return flow


def lora_layers(module: nn.Module) -> list[LoRALinear]:
    """Every :class:`LoRALinear` inside ``module``."""
    return [m for m in module.modules() if isinstance(m, LoRALinear)]
