"""Collect run summaries into one tidy table (``results/runs.csv``).

One row per run x study membership x category, in the configuration's variant order:
study, variant, dataset, strategy,
seed, task order, status, every config key whose value varies across the runs,
routed and oracle metrics, the run's forgetting, routing accuracy and parameter
counts. Runs that the plan names but that have no summary yet are listed with
status ``missing`` (never silently dropped).

Runs are looked up by configuration: a run of another study whose resolved configuration
equals a variant's but for the seed (same dataset, task order and every other key) is that
variant's replicate too, so a study reads every seed that exists of the configurations it
compares (the interaction study's seed 2 of MoLE-Flow is the ablation's too). Such rows carry
the studies that planned the run in ``planned_by`` (empty for the study's own runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from moleflow.config import config_hash, flat_strings
from moleflow.continual.summary_file import read_summary
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


def configuration_key(config: dict[str, Any]) -> str:
    """The hash of a resolved configuration without its seed: runs that differ in the seed alone share it."""
    return config_hash({k: v for k, v in config.items() if k != "seed"})


def memberships(runs: dict[str, RecordedRun]) -> list[tuple[RecordedRun, str, str, str]]:
    """``(run, study, variant, planned_by)`` for every membership, with the runs of other studies that share a
    variant's configuration (all but the seed) added to it; ``planned_by`` names their studies (empty for the
    variant's own runs). Each run appears once per (study, variant)."""
    by_key: dict[tuple[str, str], list[RecordedRun]] = {}
    for run in runs.values():
        by_key.setdefault((run.dataset, configuration_key(run.config)), []).append(run)
    out = []
    for run in runs.values():
        for study, variant in run.memberships:
            out.append((run, study, variant, ""))
    own = {(study, variant, run.run_id) for run, study, variant, _ in out}
    variant_keys: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for run, study, variant, _ in list(out):
        variant_keys.setdefault((study, variant), set()).add((run.dataset, configuration_key(run.config)))
    for (study, variant), keys in variant_keys.items():
        for key in sorted(keys):
            for other in by_key[key]:
                if (study, variant, other.run_id) not in own:
                    lenders = ", ".join(sorted({s for s, _ in other.memberships}))
                    out.append((other, study, variant, lenders))
                    own.add((study, variant, other.run_id))
    return out


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
        "planned_by",
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
        out[run_id] = _own_summary(path, run_id) if path.is_file() else None
    return out


def _own_summary(path: Path, run_id: str) -> dict[str, Any]:
    """The summary at ``path``, refused in one line when it records another configuration than its folder's
    (its ``config_hash`` is not the folder's run id: a summary copied from another run)."""
    from moleflow.errors import MoleflowError

    summary = read_summary(path)
    held = summary.get("config_hash")
    if held != run_id:
        raise MoleflowError(
            f"{path}: the summary of another configuration (config_hash {held}) in the folder of run {run_id}; "
            f"delete it and rerun that run (its folder resumes)"
        )
    return summary


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
        configs[run.run_id] = flat_strings(run.config)
    for run, study, variant, planned_by in memberships(runs):
        for row in _rows_of(run, summaries.get(run.run_id), study, variant):
            row["variant_index"] = variant_index[(study, variant)]
            row["planned_by"] = planned_by
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
