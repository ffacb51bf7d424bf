"""The continual strategies, one module each, found by importing every module of this package.

A strategy is a subclass of :class:`~moleflow.continual.strategies.base.Strategy` with a ``name``; defining it
registers it. Its name becomes a valid ``strategy.name`` once it is listed in the run schema's enum
(``moleflow/schemas/config.schema.yaml``, the one file the command line and Snakemake validate against; a test
checks the two lists agree). Nothing outside this package compares a strategy's name: the learner, the loop,
checkpoints, accounting and the planner ask the strategy object.
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


def value_only_keys() -> tuple[str, ...]:
    """Every strategy's config keys that change values only (never a shape or the code that runs)."""
    return tuple(sorted({k for cls in REGISTRY.values() for k in cls.value_only_keys}))


__all__ = ["METHOD", "STRATEGIES", "Strategy", "strategy_for", "strategy_named", "value_only_keys"]
