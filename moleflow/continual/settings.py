"""Typed settings of the model, training and scoring, built once from a validated run configuration.

Training, evaluation and inference take these instead of the whole configuration, so
what each step reads is visible in its signature (the schema documents every field).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from moleflow.config import Config
from moleflow.model import ModelConfig, SubnetConfig, TailAwareLoss

#: Stream of the coupling permutations' seeds (``model.permutations: seed``), apart from every other draw of a run.
PERMUTATION_STREAM = 0x5EED


def seeds_of(permutations: str, permutation_seed: int, blocks: int, seed: int, salt: int = 0) -> tuple[int, ...]:
    """NumPy seeds of the ``blocks`` coupling permutations of model number ``salt`` of a run of seed ``seed``.

    ``permutations: fixed``: ``permutation_seed + k`` for block ``k`` (every run alike);
    ``seed``: drawn from ``(seed, salt)``, so replicates differ in their permutations and
    each model of a run (``separated``'s one per task) draws its own, as the authors' blocks do.
    """
    if permutations == "fixed":
        return tuple(permutation_seed + k for k in range(blocks))
    state = np.random.SeedSequence([seed, salt, PERMUTATION_STREAM]).generate_state(blocks)
    return tuple(int(v) for v in state)


def permutation_seeds(config: Config, salt: int = 0) -> tuple[int, ...]:
    """:func:`seeds_of` for a validated run config (``model.permutations``, ``model.permutation_seed``)."""
    m = config["model"]
    return seeds_of(m["permutations"], m["permutation_seed"], m["coupling_blocks"], config["seed"], salt)


def model_config(config: Config, dim: int, salt: int = 0) -> ModelConfig:
    """The :class:`ModelConfig` of a run config's ``model`` section for ``dim``-vectors (model number ``salt``)."""
    m = config["model"]
    alpha = m["lora_alpha"] * m["lora_rank"] if m["lora_alpha_per_rank"] else m["lora_alpha"]
    subnet = SubnetConfig(
        rank=m["lora_rank"],
        alpha=alpha,
        use_lora=m["lora"],
        task_bias=m["task_bias"],
        task0_adapters=m["task0_adapters"],
        scale_context=m["scale_context"],
        context_kernel=m["context_kernel"],
        context_alpha_max=m["context_alpha_max"],
        hidden_ratio=m["hidden_ratio"],
        joint=m["subnet"] == "joint",
    )
    return ModelConfig(
        dim=dim,
        positional_encoding=m["positional_encoding"],
        positional_encoding_scale=m["positional_encoding_scale"],
        whitening=m["whitening"],
        whitening_fallback=m["whitening_fallback"],
        gamma_init_first=m["gamma_init_first"],
        gamma_init_later=m["gamma_init_later"],
        spatial_mixer=m["spatial_mixer"],
        mixer_kernel=m["mixer_kernel"],
        mixer_gate_init=m["mixer_gate_init"],
        mixer_bias=m["mixer_bias"],
        coupling_blocks=m["coupling_blocks"],
        affine_clamp=m["affine_clamp"],
        global_affine=m["global_affine"],
        permutation_seed=m["permutation_seed"],
        permutation_seeds=permutation_seeds(config, salt),
        subnet=subnet,
        dia_blocks=m["dia_blocks"],
        dia_clamp=m["dia_clamp"],
        input_jacobian=m["input_jacobian"],
    )


@dataclass(frozen=True)
class TrainSettings:
    """How one task is trained (``training.*``, plus the run's seed and the kNN reference's coreset ratio)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: int
    lr_min_ratio: float
    clip_grad_norm: float
    tail_weight: float
    top_k_ratio: float
    logdet_reg: float
    nll_reduction: str
    seed: int
    knn_coreset_ratio: float
    optimizer: str = "adamw"
    lr_schedule: str = "step"
    drop_last: bool = False
    nonfinite: str = "stop"
    loss_ceiling: float = 1e8
    max_skipped_share: float = 0.05
    tail_k_rounding: str = "ceil"
    ewc_fisher: str = "per_image"
    ewc_fisher_images: int | None = None

    @classmethod
    def from_config(cls, config: Config) -> TrainSettings:
        tr = config["training"]
        return cls(
            epochs=tr["epochs"],
            batch_size=tr["batch_size"],
            lr=tr["lr"],
            weight_decay=tr["weight_decay"],
            warmup_epochs=tr["warmup_epochs"],
            lr_min_ratio=tr["lr_min_ratio"],
            clip_grad_norm=tr["clip_grad_norm"],
            tail_weight=tr["tail_weight"],
            top_k_ratio=tr["top_k_ratio"],
            logdet_reg=tr["logdet_reg"],
            nll_reduction=tr["nll_reduction"],
            seed=config["seed"],
            knn_coreset_ratio=config["strategy"]["knn_coreset_ratio"],
            optimizer=tr["optimizer"],
            lr_schedule=tr["lr_schedule"],
            drop_last=tr["drop_last"],
            nonfinite=tr["nonfinite"],
            loss_ceiling=tr["loss_ceiling"],
            max_skipped_share=tr["max_skipped_share"],
            tail_k_rounding=tr["tail_k_rounding"],
            ewc_fisher=config["strategy"]["ewc_fisher"],
            ewc_fisher_images=config["strategy"]["ewc_fisher_images"],
        )

    def loss(self) -> TailAwareLoss:
        """The training objective these settings describe."""
        return TailAwareLoss(
            self.tail_weight, self.top_k_ratio, self.logdet_reg, self.nll_reduction, self.tail_k_rounding
        )

    def steps_per_epoch(self, n: int) -> int:
        """Optimiser steps per epoch over ``n`` training images (``drop_last``: full batches only, at least one)."""
        return max(1, n // self.batch_size) if self.drop_last else math.ceil(n / self.batch_size)

    def batch_seed(self, task: int) -> int:
        """Seed of task ``task``'s batch order (and of the kNN reference's coreset)."""
        return self.seed * 1_000_003 + task


@dataclass(frozen=True)
class ScoreSettings:
    """How patch scores become image scores, maps and metrics (``scoring.*``, ``evaluation.batch_size``)."""

    input_size: int  # side of the anomaly maps, the cropped input's (features.input_size)
    image_top_k: int
    map_sigma: float
    aupro_fpr_limit: float
    batch_size: int
    map_padding: str = "reflect"
    nonfinite_scores: str = "diverged"

    @classmethod
    def from_config(cls, config: Config) -> ScoreSettings:
        sc = config["scoring"]
        return cls(
            input_size=config["features"]["input_size"],
            image_top_k=sc["image_top_k"],
            map_sigma=sc["map_sigma"],
            aupro_fpr_limit=sc["aupro_fpr_limit"],
            batch_size=config["evaluation"]["batch_size"],
            map_padding=sc["map_padding"],
            nonfinite_scores=config["evaluation"]["nonfinite_scores"],
        )


@dataclass(frozen=True)
class RouterSettings:
    """The Mahalanobis router's estimator (``router.*``)."""

    covariance: str
    ridge: float
    precision: str  # float32 | float64
    prototype_images: str  # all | drop_last

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self.precision == "float32" else torch.float64

    @classmethod
    def from_config(cls, config: Config) -> RouterSettings:
        r = config["router"]
        return cls(r["covariance"], r["ridge"], r["precision"], r["prototype_images"])


@dataclass(frozen=True)
class LearnerSettings:
    """What the continual learner reads of a run (its model, router, strategy and seeds), built once.

    ``model`` is model number 0's :class:`ModelConfig`; :meth:`model_config` gives model number
    ``salt``'s (its own coupling permutations, ``model.permutations: seed``).
    """

    seed: int
    model: ModelConfig
    permutations: str
    router: RouterSettings
    batch_size: int  # training.batch_size: the router's drop_last prototype rows
    strategy: str
    strategy_options: Mapping[str, Any]  # the strategy section, read by the strategy object
    ewc_lambda: float
    knn_bank: str

    @classmethod
    def from_config(cls, config: Config, dim: int) -> LearnerSettings:
        st = config["strategy"]
        return cls(
            seed=config["seed"],
            model=model_config(config, dim),
            permutations=config["model"]["permutations"],
            router=RouterSettings.from_config(config),
            batch_size=config["training"]["batch_size"],
            strategy=st["name"],
            strategy_options=dict(st),
            ewc_lambda=float(st["ewc_lambda"]),
            knn_bank=st["knn_bank"],
        )

    def model_config(self, salt: int) -> ModelConfig:
        """Model number ``salt``'s settings: model 0's with its own permutation seeds."""
        seeds = seeds_of(self.permutations, self.model.permutation_seed, self.model.coupling_blocks, self.seed, salt)
        return replace(self.model, permutation_seeds=seeds)
