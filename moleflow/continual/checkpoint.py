"""Checkpoints, the commit record and the run folder's checks: what makes a killed run resumable.

The commit record (:class:`RunState`, ``checkpoints/progress.json``) holds what a run has committed so far: its
accuracy matrices, routing, per-task records and timings; :mod:`moleflow.continual.summary` turns it into the
run's record.

After task ``t`` the run writes what the task changed (``frozen_base``/``knn``: the base
once at task 0, then ``task_<t>.pt``; other strategies: the whole learner as
``learner_<t>.pt``), then ``checkpoints/progress.json``: the commit point. A process
killed at any moment leaves the last committed state readable, and a rerun resumes
after it with exactly the parameters an uninterrupted run had.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
import yaml

from moleflow.config import Config, config_hash, differing_keys
from moleflow.continual.learner import Learner
from moleflow.continual.strategies import Strategy
from moleflow.errors import MoleflowError
from moleflow.io import atomic_path, ensure_writable_dir, write_json_atomic
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
        """The committed state at ``path`` (its configuration was checked by :func:`check_run_dir`)."""
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


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    buffer = io.BytesIO()  # serialised in memory, so that a full disk is an OSError naming the file, not torch's own
    torch.save({k: v.cpu() for k, v in tensors.items()}, buffer)
    with atomic_path(path, suffix=".pt") as tmp:
        tmp.write_bytes(buffer.getvalue())


def save_checkpoint(learner: Learner, ckpt: Path, task: int) -> None:
    """Write what task ``task`` changed, under names no committed state reads (see the module docstring)."""
    if learner.strategy.per_task_checkpoints:
        if task == 0:
            _save_tensors(ckpt / "base.pt", learner.base_state())
        _save_tensors(ckpt / f"task_{task}.pt", learner.task_state(task))
    else:
        state = dict(learner.state_dict())
        state.update({f"ewc.{k}": v for k, v in learner.ewc_state().items()})
        _save_tensors(ckpt / f"learner_{task}.pt", state)


def committed_files(strategy: Strategy, completed: int) -> list[str]:
    """The checkpoint files (under ``checkpoints/``) that the state committed after ``completed`` tasks is read from."""
    if strategy.per_task_checkpoints:
        return ["base.pt", *(f"task_{t}.pt" for t in range(completed))]
    return [f"learner_{completed - 1}.pt"]


def restore(learner: Learner, ckpt: Path, completed: int) -> None:
    """Load the state committed after ``completed`` tasks into ``learner`` (which has their tasks added)."""
    full = learner.state_dict()
    files = committed_files(learner.strategy, completed)
    if learner.strategy.per_task_checkpoints:
        for name in files:  # the base, then each task's own tensors
            full.update(torch.load(ckpt / name))
    else:
        saved = torch.load(ckpt / files[0])
        learner.load_ewc_state({k[4:]: v for k, v in saved.items() if k.startswith("ewc.")})
        full.update({k: v for k, v in saved.items() if not k.startswith("ewc.")})
    learner.load_state_dict(full)


def _previous_config(out: Path) -> Config | None:
    try:
        return yaml.safe_load((out / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None


def check_run_dir(out: Path, config: Config) -> None:
    """Before any work: ``out`` must be a writable folder holding nothing or a run of the same configuration.

    Raises:
        MoleflowError: one line naming the folder and why (a file, read-only, another
            configuration: with the keys that differ).
    """
    ensure_writable_dir(out, "--out")
    cfg_hash = config_hash(config)
    for record in (out / "checkpoints" / "progress.json", out / "summary.json"):
        try:
            held = json.loads(record.read_text())["config_hash"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if held != cfg_hash:
            previous = _previous_config(out)
            keys = differing_keys(previous, config) if previous else []
            which = f"differing in {', '.join(keys)}" if keys else f"hash {held}, this one {cfg_hash}"
            raise MoleflowError(f"{out} holds a run of another configuration ({which}); use a new --out or delete it")


def write_status(out: Path, status: str, message: str = "") -> None:
    """``RUN_DIR/status.json``: ``running``, ``ok``, ``diverged``, ``failed`` or ``interrupted`` and why.

    On a full disk the atomic write (a new file) can fail where rewriting the existing
    file in place still fits in its blocks: then the status is rewritten in place, so a
    run stopped by a full disk does not go on saying ``running``.
    """
    record = {"status": status, "message": message}
    try:
        write_json_atomic(out / "status.json", record)
    except OSError:
        if status == "running" or not (out / "status.json").is_file():
            raise
        with open(out / "status.json", "r+", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.truncate()
