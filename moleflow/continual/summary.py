"""The run's record: accuracy matrices, forgetting, routing, accounting and ``tasks.csv``.

``summary.json`` is the one record everything downstream reads (tracking, analysis).
``R[j][i]`` (a metric on task ``i`` after training task ``j``) is kept routed and
oracle; cells of untrained tasks are ``None``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import platform
from typing import Any

import numpy as np
import torch

from moleflow.config import Config
from moleflow.continual.checkpoint import MODES, Matrices, RunState
from moleflow.continual.strategies import memory_per_task, parameter_counts
from moleflow.continual.tasks import TaskData
from moleflow.metrics import backward_transfer, forgetting_diag, forgetting_max
from moleflow.metrics.continual import METRICS


def forgetting_of(matrix: list[list[float | None]], upto: int) -> dict[str, float]:
    """FM, the paper's diagonal forgetting and BWT over the first ``upto`` tasks (NaN for fewer than two)."""
    if upto == 0:
        return {"fm": float("nan"), "paper": float("nan"), "bwt": float("nan")}
    R = np.array([[np.nan if v is None else v for v in row[:upto]] for row in matrix[:upto]], dtype=float)
    return {"fm": forgetting_max(R), "paper": forgetting_diag(R), "bwt": backward_transfer(R)}


def _mean(values: list[float | None]) -> float | None:
    """The mean of one metric over the categories; ``None`` when there is none or it was not measured (no maps)."""
    measured = [v for v in values if v is not None]
    return float(np.mean(measured)) if values and len(measured) == len(values) else None


def build_summary(
    config: Config,
    cfg_hash: str,
    names: list[str],
    state: RunState,
    status: str,
    message: str,
    dim: int,
    patches_per_image: int,
    train_images: int,
    timings: dict[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    """The summary of a run whose committed state is ``state``."""
    done = state.completed
    finished = status == "ok" and done == len(names)
    final: dict[str, Any] = {}
    for i in range(done):
        final[names[i]] = {mode: {m: state.matrices[mode][m][done - 1][i] for m in METRICS} for mode in MODES}
    routing = state.routing[-1] if state.routing else None
    diagnosed = [t for t in state.tasks[:done] if "input_collapse" in t]
    return {
        "status": status,
        "message": message,
        "config": config,
        "config_hash": cfg_hash,
        "seed": config["seed"],
        "strategy": config["strategy"]["name"],
        "tasks": names,
        "tasks_completed": done,
        "final": final,
        "mean": {mode: {m: _mean([final[c][mode][m] for c in final]) for m in METRICS} for mode in MODES},
        "accuracy_matrix": state.matrices["routed"],
        "accuracy_matrix_oracle": state.matrices["oracle"],
        # forgetting is a property of the whole sequence: NaN for a run that stopped early, whose forgetting
        # over the tasks it finished is kept apart (never averaged with finished runs)
        "forgetting": {m: forgetting_of(state.matrices["routed"][m], done if finished else 0) for m in METRICS},
        "forgetting_oracle": {m: forgetting_of(state.matrices["oracle"][m], done if finished else 0) for m in METRICS},
        "forgetting_partial": None
        if finished
        else {m: forgetting_of(state.matrices["routed"][m], done) for m in METRICS},
        "routing_accuracy": routing["accuracy"] if routing else None,
        "routing_confusion": routing["confusion"] if routing else None,
        "routing_accuracy_after_task": [r["accuracy"] for r in state.routing],
        "routing_accuracy_euclidean": routing.get("accuracy_euclidean") if routing else None,
        "params": parameter_counts(config, dim),
        "memory": memory_per_task(config, dim, patches_per_image, train_images),
        "per_task": state.tasks,
        # a flow whose input collapsed on some task (moleflow.continual.structure): flagged, never a silent row
        "input_collapse": {
            "collapsed": any(t["input_collapse"]["collapsed"] for t in diagnosed),
            "flagged_tasks": [t["task"] for t in diagnosed if t["input_collapse"]["collapsed"]],
        }
        if diagnosed
        else None,
        "timings": timings,
        "environment": {
            "device": str(device),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
    }


def dataset_record(config: Config, tasks: list[TaskData]) -> dict[str, Any]:
    """What the run read: layout, root, categories in task order, the content fingerprint of each split
    (the feature cache's) with one digest of them all, and the test images per category."""
    prints = {
        t.category: {"train": t.train.meta["key"]["dataset"], "test": t.test.meta["key"]["dataset"]} for t in tasks
    }
    digest = hashlib.sha256(json.dumps(prints, sort_keys=True).encode()).hexdigest()[:16]
    # test images per category: the resolution of an image-level metric (one swapped pair moves an AUROC by
    # 1 / (normal x anomalous)), which the claims audit's margins must exceed
    labels = {t.category: np.asarray(t.test.labels) for t in tasks}
    counts = {c: {"normal": int((y == 0).sum()), "anomalous": int((y == 1).sum())} for c, y in labels.items()}
    return {
        "kind": config["dataset"]["kind"],
        "root": str(config["dataset"]["root"]),
        "categories": [t.category for t in tasks],
        "fingerprints": prints,
        "digest": digest,
        "test_counts": counts,
    }


def rescored_top_k(evaluations: list[Any], names: list[str]) -> dict[str, Any]:
    """Oracle image AUROC after the last task with the image top-k re-aggregated from the same patch scores.

    ``{"image_auroc": {k: {category: value}}, "mean": {k: mean over categories}}`` (keys are ``str(k)``).
    """
    by_k: dict[str, dict[str, float]] = {}
    for name, ev in zip(names, evaluations):
        for k, value in ev.image_auroc_by_top_k.items():
            by_k.setdefault(str(k), {})[name] = value
    return {"image_auroc": by_k, "mean": {k: float(np.mean(list(v.values()))) for k, v in by_k.items()}}


def tasks_csv(matrices: Matrices, names: list[str], completed: int) -> str:
    """Every filled cell of the accuracy matrices: ``after_task, task, category, mode, <metrics>``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["after_task", "task", "category", "mode", *METRICS])
    for j in range(completed):
        for i in range(j + 1):
            for mode in MODES:
                writer.writerow([j, i, names[i], mode, *[matrices[mode][m][j][i] for m in METRICS]])
    return buffer.getvalue()
