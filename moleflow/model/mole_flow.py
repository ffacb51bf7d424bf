"""MoLE-Flow: positional encoding -> whitening adapter -> spatial mixer -> MoLE coupling flow -> DIA.

A pure torch module. Per patch (eq. 32/37)::

    log p(x) = -0.5 ||z||^2 - D/2 log(2 pi) + logdet_flow + logdet_DIA [+ logdet_input]

With ``input_jacobian: excluded`` (the paper's and its authors' objective) ``u``, the
flow's input after PE, whitening and mixer, is the density's variable: the whitening
adapter and the mixer count as preprocessing and their Jacobians are left out, so a
trained map that shrinks ``u`` raises every patch's likelihood for free (the objective is
unbounded below). ``included`` adds ``logdet_input``, the exact log-determinant per patch
of the trainable maps in front of the flow (the whitening adapter's per-task affine and
the mixer, :mod:`moleflow.model.jacobian`): the likelihood of the layer-normalised features.
Tasks are added with :meth:`MoLEFlow.add_task`; a pass runs one task's adapters (the
caller groups images by task).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn

from moleflow.model.adapters import FiLMInputAdapters, PositionalEncoding2D, SpatialContextMixer, WhiteningAdapter
from moleflow.model.coupling import GridShape, SubnetConfig, build_coupling_flow, lora_layers
from moleflow.model.dia import DeepInvertibleAdapter
from moleflow.model.jacobian import mixer_logdet, whitening_logdet

_TASK_PARAM = [
    re.compile(r"^whitening\.[gb]\.(\d+)$"),
    re.compile(r"\.(?:lora_A|lora_B|task_bias)\.(\d+)$"),
    re.compile(r"^dia\.tasks\.(\d+)\."),
    re.compile(r"^film\.tasks\.(\d+)\."),
]


_FIXED = re.compile(r"\.(?:w_perm|w_perm_inv|w_0)$")  # FrEIA's permutation matrices: constants, never trained
_GLOBAL_AFFINE = re.compile(r"\.(?:global_scale|global_offset)$")  # FrEIA's global affine of each block


def is_fixed_parameter(name: str, global_affine: str = "trained") -> bool:
    """Whether ``name`` is a constant stored as a parameter: a FrEIA permutation matrix, or a
    block's global affine when ``global_affine`` is ``"frozen"`` (kept at its initialisation)."""
    return bool(_FIXED.search(name)) or (global_affine == "frozen" and bool(_GLOBAL_AFFINE.search(name)))


def task_of_parameter(name: str) -> int | None:
    """The task a parameter belongs to, or ``None`` for the shared base."""
    for pattern in _TASK_PARAM:
        match = pattern.search(name)
        if match:
            return int(match.group(1))
    return None


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one MoLE-Flow (every field is a config key under ``model``)."""

    dim: int
    positional_encoding: bool = True
    positional_encoding_scale: float = 1.0
    whitening: bool = True
    whitening_fallback: str = "identity"  # without whitening: "identity", "soft_ln" or "film" (FiLMInputAdapters)
    gamma_init_first: float = 1.0
    gamma_init_later: float = 1.25
    spatial_mixer: bool = True
    mixer_kernel: int = 3
    mixer_gate_init: float = 0.5
    mixer_bias: bool = False
    coupling_blocks: int = 6
    affine_clamp: float = 1.9
    global_affine: str = "trained"  # "trained" with the base, or "frozen" at its initialisation
    permutation_seed: int = 0
    permutation_seeds: tuple[int, ...] | None = None  # one NumPy seed per coupling block; None: permutation_seed + k
    subnet: SubnetConfig = field(default_factory=SubnetConfig)
    dia_blocks: int = 2
    dia_clamp: float = 1.9
    input_jacobian: str = "excluded"  # "excluded" (preprocessing, the paper's) or "included" (bounded likelihood)


class FlowOutput(NamedTuple):
    """Result of a forward pass, each ``(B, H, W)`` except ``z`` ``(B, H, W, D)``.

    ``logdet_input`` is the per-patch log-determinant of the trainable maps in front of the
    flow; ``log_prob`` contains it only with ``input_jacobian: included``.
    """

    z: torch.Tensor
    logdet_flow: torch.Tensor
    logdet_dia: torch.Tensor
    log_prob: torch.Tensor
    logdet_input: torch.Tensor


class MoLEFlow(nn.Module):
    """The MoLE-Flow density model over ``(B, H, W, D)`` patch embeddings.

    Example:
        >>> model = MoLEFlow(ModelConfig(dim=16, coupling_blocks=2, subnet=SubnetConfig(rank=4)))
        >>> model.add_task()
        0
        >>> out = model(torch.randn(2, 4, 4, 16), task=0)
        >>> out.log_prob.shape
        torch.Size([2, 4, 4])
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.input_jacobian == "included" and not cfg.whitening and cfg.whitening_fallback != "identity":
            raise ValueError(
                "model.input_jacobian: included needs the whitening adapter or none in its place "
                f"(model.whitening_fallback {cfg.whitening_fallback!r} is a nonlinear map without a cheap exact Jacobian)"
            )
        self.cfg = cfg
        self._logdet_cache: tuple[tuple, torch.Tensor] | None = None
        self.grid = GridShape()
        self.pe = PositionalEncoding2D(cfg.dim, cfg.positional_encoding_scale) if cfg.positional_encoding else None
        self.whitening = WhiteningAdapter(cfg.dim) if cfg.whitening else None
        self.film = (
            FiLMInputAdapters(cfg.dim, soft_ln=cfg.whitening_fallback == "soft_ln")
            if not cfg.whitening and cfg.whitening_fallback in ("film", "soft_ln")
            else None
        )
        self.mixer = (
            SpatialContextMixer(cfg.dim, cfg.mixer_kernel, cfg.mixer_gate_init, cfg.mixer_bias)
            if cfg.spatial_mixer
            else None
        )
        self.flow = (
            build_coupling_flow(
                cfg.dim,
                cfg.coupling_blocks,
                self.grid,
                cfg.subnet,
                cfg.affine_clamp,
                cfg.permutation_seeds or tuple(cfg.permutation_seed + k for k in range(cfg.coupling_blocks)),
            )
            if cfg.coupling_blocks > 0
            else None
        )
        self.dia = DeepInvertibleAdapter(cfg.dim, cfg.dia_blocks, cfg.dia_clamp) if cfg.dia_blocks > 0 else None
        self.n_tasks = 0

    # ------------------------------------------------------------------ tasks
    def add_task(self, first: bool | None = None) -> int:
        """Create the next task's adapters; return its id.

        ``first`` (default: whether the new task is task 0) chooses the input adapter's form:
        the whitening adapter starts at ``gamma_init_first`` or ``gamma_init_later``, the
        fallback adapter takes its task-0 or its later-task form.
        """
        task = self.n_tasks
        first = task == 0 if first is None else first
        if self.whitening is not None:
            self.whitening.add_task(task, self.cfg.gamma_init_first if first else self.cfg.gamma_init_later)
        if self.film is not None:
            self.film.add_task(task, first)
        if self.flow is not None:
            for layer in lora_layers(self.flow):
                layer.add_task(task)
        if self.dia is not None:
            self.dia.add_task(task)
        self.n_tasks += 1
        return task

    def set_task(self, task: int) -> None:
        """Route every LoRA layer to task ``task``'s adapter."""
        if not 0 <= task < self.n_tasks:
            raise ValueError(f"task {task} does not exist (the model has {self.n_tasks})")
        if self.flow is not None:
            for layer in lora_layers(self.flow):
                layer.set_task(task)

    def is_fixed(self, name: str) -> bool:
        """Whether parameter ``name`` is a constant of this model (:func:`is_fixed_parameter`)."""
        return is_fixed_parameter(name, self.cfg.global_affine)

    def base_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters shared by all tasks (flow, context convs and gates, mixer; the
        coupling blocks' global affine unless ``global_affine`` is ``"frozen"``)."""
        return [p for n, p in self.named_parameters() if task_of_parameter(n) is None and not self.is_fixed(n)]

    def base_linear_parameters(self) -> list[nn.Parameter]:
        """The subnets' base linears (weights and biases): what the authors' Sequential keeps frozen."""
        return [p for n, p in self.named_parameters() if re.search(r"\.base\.(?:weight|bias)$", n)]

    def task_parameters(self, task: int) -> list[nn.Parameter]:
        """Task ``task``'s own parameters (whitening or its FiLM fallback, LoRA, task biases, DIA)."""
        return [p for n, p in self.named_parameters() if task_of_parameter(n) == task]

    # ------------------------------------------------------------------ passes
    def preprocess(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """PE, whitening (or its FiLM fallback) and mixer: ``(B, H, W, D)`` -> ``u`` ``(B, H, W, D)``."""
        if self.pe is not None:
            x = self.pe(x)
        if self.whitening is not None:
            x = self.whitening(x, task)
        elif self.film is not None:
            x = self.film(x, task)
        if self.mixer is not None:
            x = self.mixer(x)
        return x

    def mixer_logdet(self, height: int, width: int) -> torch.Tensor | None:
        """The mixer's log-determinant per patch on an ``height x width`` grid (a scalar), or ``None`` without a mixer.

        Cached while no gradient is wanted and the mixer's parameters are unchanged (their
        version counters), so evaluation and frozen-mixer tasks compute it once.
        """
        if self.mixer is None:
            return None
        weight, theta = self.mixer.conv.weight, self.mixer.theta
        wants_grad = torch.is_grad_enabled() and (weight.requires_grad or theta.requires_grad)
        key = (height, width, weight._version, theta._version, weight.data_ptr(), theta.data_ptr())
        if not wants_grad and self._logdet_cache is not None and self._logdet_cache[0] == key:
            return self._logdet_cache[1]
        value = mixer_logdet(weight, torch.sigmoid(theta), height, width).sum() / (height * width)
        if not wants_grad:
            self._logdet_cache = (key, value.detach())
        return value

    def input_logdet(self, task: int, height: int, width: int) -> torch.Tensor:
        """Log-determinant per patch (a float64 scalar) of the trainable maps in front of the flow for ``task``:
        the whitening adapter's affine ``sum_d log gamma_t[d]`` and the mixer's (:meth:`mixer_logdet`)."""
        total = torch.zeros((), dtype=torch.float64)
        if self.whitening is not None:
            total = total + whitening_logdet(self.whitening.gamma_beta(task)[0]).to(torch.float64)
        mixer = self.mixer_logdet(height, width)
        if mixer is not None:
            total = total + mixer
        return total

    def transform(
        self, u: torch.Tensor, task: int, rev: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flow then DIA (or the inverse with ``rev=True``).

        Args:
            u: ``(B, H, W, D)`` flow input (``z`` when ``rev``).

        Returns:
            ``(out (B, H, W, D), logdet_flow (B, H, W), logdet_dia (B, H, W))``; with
            ``rev`` the log-dets are those of the inverse map.
        """
        batch, height, width, dim = u.shape
        self.grid.batch, self.grid.height, self.grid.width = batch, height, width
        self.set_task(task)
        rows = u.reshape(-1, dim)
        zero = torch.zeros(rows.shape[0], dtype=u.dtype, device=u.device)
        ld_flow, ld_dia = zero, zero
        if not rev:
            if self.flow is not None:
                rows, ld_flow = self.flow(rows)
            if self.dia is not None:
                rows, ld_dia = self.dia(rows, task)
        else:
            if self.dia is not None:
                rows, ld_dia = self.dia(rows, task, rev=True)
            if self.flow is not None:
                rows, ld_flow = self.flow(rows, rev=True)
        shape = (batch, height, width)
        return rows.reshape(u.shape), ld_flow.reshape(shape), ld_dia.reshape(shape)

    def forward(self, x: torch.Tensor, task: int) -> FlowOutput:
        """Patch log-likelihoods of ``x`` ``(B, H, W, D)`` under task ``task``."""
        u = self.preprocess(x, task)
        z, ld_flow, ld_dia = self.transform(u, task)
        dim = z.shape[-1]
        log_pz = -0.5 * (z**2).sum(dim=-1) - 0.5 * dim * math.log(2 * math.pi)
        log_prob = log_pz + ld_flow + ld_dia
        if self.cfg.input_jacobian == "included":
            ld_input = self.input_logdet(task, x.shape[1], x.shape[2]).to(log_prob.dtype).expand_as(log_prob)
            return FlowOutput(z, ld_flow, ld_dia, log_prob + ld_input, ld_input)
        return FlowOutput(z, ld_flow, ld_dia, log_prob, torch.zeros_like(log_prob))
