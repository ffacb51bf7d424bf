"""Continual training and evaluation: strategies, the training loop, checkpoints and run summaries.

The names below load their modules (torch, FrEIA, the model) on first use, so that a process
that only reads run folders (the MLflow mirror, the analysis) does not pay for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moleflow.continual.experiment import run
    from moleflow.continual.learner import Learner
    from moleflow.continual.strategies import STRATEGIES, parameter_counts

_HOMES = {
    "run": "moleflow.continual.experiment",
    "Learner": "moleflow.continual.learner",
    "STRATEGIES": "moleflow.continual.strategies",
    "parameter_counts": "moleflow.continual.strategies",
}

__all__ = ["Learner", "STRATEGIES", "parameter_counts", "run"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
