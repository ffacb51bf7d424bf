"""The model's typed settings built once from a validated run config (:class:`moleflow.model.ModelConfig`), and the
seeds its random parts draw from."""

from __future__ import annotations

import numpy as np

from moleflow.config import Config
from moleflow.model import ModelConfig, SubnetConfig

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
