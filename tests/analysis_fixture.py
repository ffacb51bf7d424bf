"""The analysis tests' fixture: a workflow of every study on two categories and a results folder of generated run summaries, with a variant never run and some runs diverged (a real effect of the tail weight and of whitening with a frozen base, so that the statistics have something to find)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from moleflow.planning import plan_runs

CATEGORIES = ["cap", "tile"]


WORKFLOW = {
    "results": "results",
    "cache": "results/cache/features",
    "seeds": [0, 1, 2],
    "base": {"profile": "cpu", "set": {}},
    "datasets": {"synth": {"kind": "mvtec", "root": "data/synth", "categories": CATEGORIES}},
    "studies": {
        "main": {
            "tables": ["T2", "T3", "T4", "T15", "T16"],
            "variants": [{"name": "MoLE-Flow"}, {"name": "kNN", "set": {"strategy.name": "knn"}}],
        },
        "ablation": {
            "tables": ["T7"],
            "variants": [
                {"name": "MoLE-Flow"},
                {"name": "w/o TAL", "set": {"training.tail_weight": 0.0}},
                {"name": "w/o DIA", "set": {"model.dia_blocks": 0}},
            ],
        },
        "strategies": {
            "tables": ["T1", "T14"],
            "variants": [
                {"name": "MoLE-Flow", "set": {"strategy.name": "frozen_base"}},
                {"name": "Sequential", "set": {"strategy.name": "sequential"}},
            ],
        },
        "sensitivity": {
            "tables": ["T10", "T11", "T12", "T13"],
            "variants": [
                {"name": "default"},
                {"name": "tail_weight 0.3", "set": {"training.tail_weight": 0.3}},
                {"name": "tail_weight 1.0", "set": {"training.tail_weight": 1.0}},
                {"name": "lora_rank 4", "set": {"model.lora_rank": 4}},
            ],
        },
        "depth": {
            "tables": ["T9"],
            "variants": [{"name": "M4 N2"}, {"name": "M16 N2", "set": {"model.coupling_blocks": 16}}],
        },
        "interaction": {
            "tables": ["T8"],
            "variants": [
                {"name": "WA|frozen|on", "set": {"strategy.name": "frozen_base"}},
                {"name": "WA|frozen|off", "set": {"strategy.name": "frozen_base", "model.whitening": False}},
                {"name": "WA|trainable|on", "set": {"strategy.name": "sequential"}},
                {"name": "WA|trainable|off", "set": {"strategy.name": "sequential", "model.whitening": False}},
            ],
        },
    },
}


def summary_of(run, rng: np.random.Generator, status: str = "ok") -> dict:
    done = len(CATEGORIES) if status == "ok" else 1
    level = 0.9 if run.config["strategy"]["name"] == "frozen_base" else 0.6
    level += 0.05 * run.config["training"]["tail_weight"]  # a real effect for the sensitivity summary
    level -= 0.1 * (not run.config["model"]["whitening"]) * (run.config["strategy"]["name"] == "frozen_base")
    metrics = ("image_auroc", "pixel_ap", "pixel_auroc", "aupro")
    matrix: dict[str, list[list[float | None]]] = {m: [[None] * 2 for _ in range(2)] for m in metrics}
    for m in metrics:
        for j in range(done):
            for i in range(j + 1):
                matrix[m][j][i] = float(level + rng.normal(0, 0.02))
    final = {
        c: {mode: {m: matrix[m][done - 1][i] for m in metrics} for mode in ("routed", "oracle")}
        for i, c in enumerate(CATEGORIES[:done])
    }
    lost = 0.0 if run.config["strategy"]["name"] == "frozen_base" else 0.2
    forgetting = {m: {"fm": lost, "paper": lost / 2, "bwt": -lost} for m in metrics}  # two kinds that differ
    memory = {
        "params_per_task": 100,
        "bytes_per_task": 400.0,
        "pct_of_base": 10.0,
        "fixed_bytes": 0.0,
        "router_bytes_per_task": 64.0,
    }
    return {
        "status": status,
        "config": run.config,
        "config_hash": run.run_id,
        "seed": run.seed,
        "strategy": run.config["strategy"]["name"],
        "tasks": CATEGORIES,
        "tasks_completed": done,
        "final": final,
        "accuracy_matrix": matrix,
        "accuracy_matrix_oracle": matrix,
        "forgetting": forgetting,
        "routing_accuracy": 1.0,
        "routing_confusion": [[10, 0], [1, 9]],
        "params": {"base": 1000, "per_task": 100, "per_task_without_dia": 50, "overhead_pct": 10.0},
        "memory": memory,
        "per_task": [],
        "mean": {},
    }


def write_results(tmp_path: Path) -> Path:
    """The fixture's results folder: every planned run's summary, one variant never run, some diverged."""
    rng = np.random.default_rng(0)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(WORKFLOW))
    for run in plan_runs(WORKFLOW).values():
        variants = {v for _, v in run.memberships}
        if "w/o DIA" in variants:
            continue  # never ran: a missing cell
        status = "diverged" if "M16 N2" in variants else "ok"
        if "w/o TAL" in variants and run.seed == 2:
            status = "diverged"  # one seed of a variant diverged
        folder = tmp_path / "results" / "runs" / run.run_id
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps(summary_of(run, rng, status)))
    return tmp_path
