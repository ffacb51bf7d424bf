"""The continual strategies, one module each, found by importing every module of this package.

A strategy is a subclass of :class:`~moleflow.continual.strategies.base.Strategy` with a ``name``; defining it
registers it. Its name becomes a valid ``strategy.name`` once it is listed in the run schema's enum
(``moleflow/schemas/config.schema.yaml``, the one file the command line and Snakemake validate against; a test
checks the two lists agree). Nothing outside this package compares a strategy's name: the learner, the loop,
checkpoints, accounting and the planner ask the strategy object; :func:`parameter_counts` and
:func:`memory_per_task` are Table 1's accounting of the strategy a run config names.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from moleflow.config import Config
from moleflow.continual.strategies.base import REGISTRY, Strategy

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

#: The method itself (MoLE-Flow), the strategy the paper's main rows and the audit's depth reference read.
METHOD = "frozen_base"
#: Every strategy's name, sorted.
STRATEGIES: tuple[str, ...] = tuple(sorted(REGISTRY))


def strategy_named(name: str, options: dict[str, Any] | None = None) -> Strategy:
    """The strategy ``name`` with the run config's ``strategy`` section ``options``."""
    if name not in REGISTRY:
        raise KeyError(f"strategy.name: {name!r} is not a strategy (known: {', '.join(sorted(REGISTRY))})")
    return REGISTRY[name](options or {})


def strategy_for(config: Config) -> Strategy:
    """The strategy a validated run config names."""
    return strategy_named(config["strategy"]["name"], config["strategy"])


def parameter_counts(config: Config, dim: int) -> dict[str, float]:
    """Base and per-task parameter counts of the configured model.

    ``per_task`` counts a task ``t >= 1``'s adapters (LoRA, task biases, whitening, DIA);
    ``per_task_without_dia`` leaves DIA out; ``overhead_pct = 100 * per_task / base``.
    The ``knn`` reference and DNE have no parameters (their memory is counted by :func:`memory_per_task`);
    the joint flow has the base and one set of adapters, task 0's, serving every task: ``per_task`` is 0.
    """
    return strategy_for(config).parameter_counts(config, dim)


def memory_per_task(config: Config, dim: int, patches_per_image: int, train_images: int = 0) -> dict[str, float]:
    """What each new task adds to what the strategy must keep, in parameters and bytes.

    Strategy-aware (Table 1's "memory per task"): ``separated`` keeps a whole model per
    task (the parameters a task >= 1's model trains: without the mixer when it is task 0's,
    with the blocks' global affine when it is trained; the fixed channel permutations are
    not counted, as in ``base``); ``frozen_base``, ``sequential`` and
    ``ewc`` keep the task's adapters (LoRA, task biases, whitening, DIA), ``replay``
    those plus ``replay_images`` feature maps
    of ``patches_per_image`` float16 ``dim``-vectors. ``fixed_bytes`` is kept once,
    whatever the number of tasks (EWC's Fisher diagonal and anchor). Every strategy also
    keeps one router prototype per task (mean and precision, float64):
    ``router_bytes_per_task``. Parameters are float32; ``pct_of_base`` is
    ``100 * bytes_per_task / base bytes``. ``knn`` keeps its memory bank
    (``ceil(knn_coreset_ratio * train_images * patches_per_image)`` float32 vectors per
    task, counted for ``train_images``) and has no base, so ``pct_of_base`` is NaN; with
    ``knn_bank: replaced`` it holds one bank at a time (``fixed_bytes``; the learner keeps
    the earlier ones only for its checkpoints and never reads them), and with ``joint`` or
    ``replaced`` it needs no router prototype. DNE keeps per task its Gaussian (count, mean
    and covariance of ``D_r``-vectors, float64, with the density fitted after it: mean and
    precision), and a router prototype only with ``dne_density: routed``. The joint flow
    keeps every task's training feature maps (float16, like Replay's buffer: it must train
    on all of them at once) and no router prototype; its model is counted as the base.
    """
    return strategy_for(config).memory_per_task(config, dim, patches_per_image, train_images)


def value_only_keys() -> tuple[str, ...]:
    """Every strategy's config keys that change values only (never a shape or the code that runs)."""
    return tuple(sorted({k for cls in REGISTRY.values() for k in cls.value_only_keys}))


__all__ = [
    "METHOD",
    "STRATEGIES",
    "Strategy",
    "memory_per_task",
    "parameter_counts",
    "strategy_for",
    "strategy_named",
    "value_only_keys",
]
