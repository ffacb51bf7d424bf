"""Collect run summaries into one tidy table (``results/runs.csv``).

One row per run x study membership x category, in the configuration's variant order:
study, variant, dataset, strategy,
seed, task order, status, every config key whose value varies across the runs,
routed and oracle metrics, the run's forgetting, routing accuracy and parameter
counts. Runs that the plan names but that have no summary yet are listed with
status ``missing`` (never silently dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moleflow.config import flat_strings
from moleflow.continual.summary import read_summary
from moleflow.metrics.continual import METRICS


@dataclass(frozen=True)
class RecordedRun:
    """One planned run as ``results/plan.json`` records it."""

    run_id: str
    dataset: str
    seed: int
    order: str
    memberships: list[tuple[str, str]]
    config: dict[str, Any]


def recorded_runs(plan: dict[str, Any]) -> dict[str, RecordedRun]:
    """The runs of a plan record (``WorkflowPlan.record()``), by run id, in planning order."""
    return {
        r["run_id"]: RecordedRun(
            r["run_id"], r["dataset"], int(r["seed"]), r["order"], [(s, v) for s, v in r["memberships"]], r["config"]
        )
        for r in plan["runs"]
    }


#: Per task, the input-collapse diagnostic's figures copied into its category's row (``collapse_<key>``).
COLLAPSE_COLUMNS = ("input_logdet", "mixer_logdet", "eig_median_ratio", "separation", "nll_good", "nll_defect")


def _base_row(run, study: str, variant: str) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "study": study,
        "variant": variant,
        "dataset": run.dataset,
        "strategy": run.config["strategy"]["name"],
        "seed": run.seed,
        "order": run.order,
    }


def _columns() -> list[str]:
    """Every column a run with a summary gives its rows: a folder where no planned run has finished
    yet (every run ``missing``) still gets them all, empty."""
    cols = [
        "status",
        "tasks_completed",
        "n_tasks",
        "routing_accuracy",
        "params_base",
        "params_per_task",
        "params_per_task_without_dia",
        "overhead_pct",
        "routing_accuracy_euclidean",
        "collapsed",
        "category",
        "task_index",
        *(f"collapse_{key}" for key in COLLAPSE_COLUMNS),
    ]
    cols += [
        f"memory_{k}"
        for k in ("params_per_task", "bytes_per_task", "pct_of_base", "fixed_bytes", "router_bytes_per_task")
    ]
    for metric in METRICS:
        cols += [f"forgetting_{kind}_{metric}" for kind in ("fm", "paper", "bwt")]
        cols += [f"{metric}_just_trained", f"{metric}_routed", f"{metric}_oracle"]
    return cols


def _rows_of(run, summary: dict[str, Any] | None, study: str, variant: str) -> list[dict[str, Any]]:
    base = _base_row(run, study, variant)
    if summary is None:
        return [{**base, "status": "missing", "category": None}]
    run_level = {
        "status": summary["status"],
        "tasks_completed": summary["tasks_completed"],
        "n_tasks": len(summary["tasks"]),
        "routing_accuracy": summary["routing_accuracy"],
        "params_base": summary["params"]["base"],
        "params_per_task": summary["params"]["per_task"],
        "params_per_task_without_dia": summary["params"]["per_task_without_dia"],
        "overhead_pct": summary["params"]["overhead_pct"],
    }
    run_level["routing_accuracy_euclidean"] = summary.get("routing_accuracy_euclidean")
    diagnostic = summary.get("input_collapse")  # flows only; summaries written before it lack it
    run_level["collapsed"] = diagnostic["collapsed"] if diagnostic else None
    rescored = (summary.get("rescored") or {}).get("mean") or {}  # image top-k re-aggregated from the same scores
    for k, value in rescored.items():
        run_level[f"rescored_image_auroc_top{k}"] = value
    memory = summary.get("memory") or {}  # summaries written before memory accounting lack it: missing cells
    for key in ("params_per_task", "bytes_per_task", "pct_of_base", "fixed_bytes", "router_bytes_per_task"):
        run_level[f"memory_{key}"] = memory.get(key)
    for metric in METRICS:
        for kind in ("fm", "paper", "bwt"):
            run_level[f"forgetting_{kind}_{metric}"] = summary["forgetting"][metric][kind]
        # each task right after its own training (the diagonal R[i, i]), before anything later could change it
        diagonal = [row[i] for i, row in enumerate(summary["accuracy_matrix"][metric][: summary["tasks_completed"]])]
        finite = [v for v in diagonal if v is not None and np.isfinite(v)]
        run_level[f"{metric}_just_trained"] = (
            float(np.mean(finite)) if finite and len(finite) == len(diagonal) else None
        )
    rows = []
    for index, category in enumerate(summary["tasks"]):
        row = {**base, **run_level, "category": category, "task_index": index}
        tasks = summary.get("per_task") or []
        figures = (tasks[index].get("input_collapse") if index < len(tasks) else None) or {}
        for key in COLLAPSE_COLUMNS:
            row[f"collapse_{key}"] = figures.get(key)
        final = summary["final"].get(category)
        for metric in METRICS:
            for mode in ("routed", "oracle"):
                row[f"{metric}_{mode}"] = final[mode][metric] if final else None
        rows.append(row)
    return rows


Summaries = dict[str, "dict[str, Any] | None"]  # run id -> its summary, None when it has none yet


def load_summaries(plan: dict[str, Any], results: str | Path) -> Summaries:
    """Every planned run's ``summary.json``, read once (``None`` for a run without one)."""
    out: Summaries = {}
    for run_id in recorded_runs(plan):
        path = Path(results) / "runs" / run_id / "summary.json"
        out[run_id] = read_summary(path) if path.is_file() else None
    return out


def run_configs(
    plan: dict[str, Any], results: str | Path, summaries: Summaries | None = None
) -> dict[str, dict[str, Any]]:
    """Resolved configuration of every planned run: its summary's, else the planned one."""
    summaries = load_summaries(plan, results) if summaries is None else summaries
    return {
        run.run_id: (summaries.get(run.run_id) or {}).get("config") or run.config
        for run in recorded_runs(plan).values()
    }


def collect(plan: dict[str, Any], results: str | Path, summaries: Summaries | None = None) -> pd.DataFrame:
    """The tidy table of every planned run of a plan record (see module docstring)."""
    runs = recorded_runs(plan)
    summaries = load_summaries(plan, results) if summaries is None else summaries
    variant_index = {(study, name): i for study, names in plan["studies"].items() for i, name in enumerate(names)}
    rows: list[dict[str, Any]] = []
    configs = {}
    for run in runs.values():
        summary = summaries.get(run.run_id)
        configs[run.run_id] = flat_strings(run.config)
        for study, variant in run.memberships:
            for row in _rows_of(run, summary, study, variant):
                row["variant_index"] = variant_index[(study, variant)]
                rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    for column in _columns():
        if column not in frame:
            frame[column] = None
    keys = sorted({k for c in configs.values() for k in c})
    varying = [k for k in keys if len({c.get(k) for c in configs.values()}) > 1 and k not in ("seed",)]
    for key in varying:
        frame[f"cfg.{key}"] = frame["run_id"].map(lambda rid, k=key: configs[rid].get(k))
    order = ["study", "dataset", "variant_index", "order", "seed", "task_index"]
    return frame.sort_values(order, na_position="last", kind="stable").reset_index(drop=True)
