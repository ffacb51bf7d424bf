"""What a run has committed so far: its accuracy matrices, routing, per-task records and timings.

``checkpoints/progress.json`` holds it; :mod:`moleflow.continual.checkpoint` writes the tensors
beside it and :mod:`moleflow.continual.summary` turns it into the run's record.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moleflow.io import write_json_atomic
from moleflow.metrics.continual import METRICS

MODES = ("routed", "oracle")
Matrices = dict[str, dict[str, list[list[float | None]]]]  # mode -> metric -> R


def empty_matrices(n: int) -> Matrices:
    """``n x n`` matrices of ``None`` per mode and metric."""
    return {mode: {m: [[None] * n for _ in range(n)] for m in METRICS} for mode in MODES}


class RunState:
    """What a run has committed so far (``checkpoints/progress.json``)."""

    def __init__(self, n_tasks: int, cfg_hash: str) -> None:
        self.cfg_hash = cfg_hash
        self.completed = 0
        self.matrices = empty_matrices(n_tasks)
        self.routing: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.timings: dict[str, Any] = {"training": 0.0, "evaluation": 0.0, "training_per_task": []}

    def to_json(self) -> dict[str, Any]:
        return {
            "config_hash": self.cfg_hash,
            "completed": self.completed,
            "matrices": self.matrices,
            "routing": self.routing,
            "tasks": self.tasks,
            "timings": self.timings,
        }

    @classmethod
    def load(cls, path: Path, n_tasks: int, cfg_hash: str) -> RunState:
        """The committed state at ``path`` (its configuration was checked by :func:`moleflow.continual.checkpoint.check_run_dir`)."""
        state = cls(n_tasks, cfg_hash)
        if not path.is_file():
            return state
        data = json.loads(path.read_text())
        state.completed, state.matrices = data["completed"], data["matrices"]
        state.routing, state.tasks = data["routing"], data["tasks"]
        state.timings.update(data["timings"])
        return state

    def commit(self, ckpt: Path) -> None:
        """Write ``progress.json`` (the commit), then drop the whole-learner checkpoint it supersedes."""
        write_json_atomic(ckpt / "progress.json", self.to_json())
        (ckpt / f"learner_{self.completed - 2}.pt").unlink(missing_ok=True)
