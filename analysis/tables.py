"""Builders of the paper's tables from the tidy run table (see :mod:`analysis.collect`).

Cells are mean +- std over seeds of each run's mean over its categories (routed
metrics: the deployed setting). Diverged and missing runs are left out of the
statistics; a cell with none left says ``diverged`` or stays missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.literature import load, reported
from analysis.render import NOT_APPLICABLE, Cell, TableSpec, ordered
from analysis.stats import delta_cell
from analysis.table_frames import (
    CHAUDHRY,
    METRIC_LABELS,
    PAPER_FM,
    collapse_flags,
    main_method,
    run_level,
    table_caption,
)


def variant_table(
    runs: pd.DataFrame,
    study: str,
    dataset: str,
    table_id: str,
    paper_table: str,
    title: str,
    columns: dict[str, str],
    delta_of: str | tuple[str, ...] = (),
    integer_columns: tuple[str, ...] = (),
    column_digits: dict[str, int] | None = None,
) -> TableSpec:
    """Rows = the study's variants; ``columns`` maps run-level column -> label; deltas against the first row."""
    sub = runs[(runs["study"] == study) & (runs["dataset"] == dataset)]
    rows = ordered(sub["variant"])
    labels = list(columns.values())
    digits = {**{c: 0 for c in integer_columns}, **(column_digits or {})}
    spec = TableSpec(
        table_id,
        paper_table,
        f"{title} ({dataset})",
        table_caption(sub, title + "."),
        rows,
        labels,
        better={
            label: ("min" if col.startswith(("forgetting", "params", "memory")) else "max")
            for col, label in columns.items()
        },
        row_header="variant",
        column_digits=digits,
    )
    for row in rows:
        group = sub[sub["variant"] == row]
        for column, label in columns.items():
            spec.cells[(row, label)] = Cell.from_runs(group[column], group["status"])
    spec.flagged = collapse_flags(sub, {row: row for row in rows})
    for column in (delta_of,) if isinstance(delta_of, str) else delta_of:
        if not rows:
            break
        label = f"Δ {columns[column]}"
        spec.columns.append(label)
        reference = sub[sub["variant"] == rows[0]]
        for row in rows[1:]:
            spec.cells[(row, label)] = delta_cell(sub[sub["variant"] == row], reference, column)
    if any(c.startswith("Δ ") for c in spec.columns):
        spec.caption += (
            f" Δ: paired by seed against {rows[0]} over the seeds both finished (n = pairs), with a 95% "
            "t interval of the mean difference."
        )
    return spec


def per_category_table(
    frame: pd.DataFrame,
    dataset: str,
    metric: str,
    table_id: str,
    paper_table: str,
    literature_kind: str | None = None,
    study: str = "main",
) -> TableSpec:
    """Tables 3-6: each main-study variant's routed ``metric`` per category, its mean and FM, over seeds.

    The main study's first variant is MoLE-Flow; later ones (the ``knn`` reference of the
    embedded default) are own-run rows too, labelled ``(this harness)``. With
    ``literature_kind`` (``mvtec``/``visa``, real data only) the paper's reported rows for
    that dataset follow, labelled as reported (see :mod:`analysis.literature`).
    """
    sub = frame[(frame["study"] == study) & (frame["dataset"] == dataset) & frame["category"].notna()]
    categories = sorted(set(sub["category"]))
    variants = ordered(sub["variant"])
    ours = {f"{v} (this harness)": v for v in variants}
    label = METRIC_LABELS[metric]
    literature = reported(literature_kind, metric) if literature_kind else pd.DataFrame()
    if not literature.empty and not set(categories) & set(literature.columns):
        literature = pd.DataFrame()  # none of the paper's categories: nothing to compare with
    rows = list(ours) + [f"{m} (reported)" for m in literature.index]
    columns = categories + ["mean", PAPER_FM]
    caption = table_caption(
        sub.drop_duplicates("run_id"),
        f"Per-category {label}; {PAPER_FM} = the paper's forgetting, mean over "
        "earlier tasks of R[i,i] - R[T-1,i], for own and reported rows alike.",
    )
    if not literature.empty:
        every = load()
        source = sorted(set(every[(every["dataset"] == literature_kind) & (every["metric"] == metric)]["paper_table"]))
        caption += (
            f" Rows marked reported are the values the MoLE-Flow paper reports (Table {', '.join(source)}) on the real "
            f"{literature_kind} data with pretrained weights: cited, not reproduced here. Their mean is the paper's "
            "average when the table has all of the paper's categories, else the mean of the same categories "
            "(missing if one is not reported)."
        )
    spec = TableSpec(
        table_id,
        paper_table,
        f"Per-category {label} ({dataset})",
        caption,
        rows,
        columns,
        better={**{c: "max" for c in categories + ["mean"]}, PAPER_FM: "min"},
        row_header="method",
    )
    everything = frame[(frame["study"] == study) & (frame["dataset"] == dataset)]
    spec.flagged = collapse_flags(everything, ours)
    for row, variant in ours.items():
        own = sub[sub["variant"] == variant]
        planned = int(everything[everything["variant"] == variant]["run_id"].nunique())  # missing runs included
        for category in categories:
            group = own[own["category"] == category]
            spec.cells[(row, category)] = Cell.from_runs(group[f"{metric}_routed"], group["status"], planned)
        means = run_level(own)
        spec.cells[(row, "mean")] = Cell.from_runs(means[f"{metric}_routed"], means["status"], planned)
        spec.cells[(row, PAPER_FM)] = Cell.from_runs(means[f"forgetting_paper_{metric}"], means["status"], planned)
    for method in literature.index:
        values = literature.loc[method]
        for column in [c for c in categories if c in values.index]:
            if np.isfinite(values.get(column, np.nan)):
                spec.cells[(f"{method} (reported)", column)] = Cell(mean=float(values[column]), n=1)
        if np.isfinite(values.get("FM", np.nan)):
            spec.cells[(f"{method} (reported)", PAPER_FM)] = Cell(mean=float(values["FM"]), n=1)
        # the reported average covers the paper's categories; over a subset, the mean of the same categories
        same = [values.get(c, np.nan) for c in categories]
        if set(categories) == set(literature.columns) - {"avg", "FM"} and np.isfinite(values.get("avg", np.nan)):
            spec.cells[(f"{method} (reported)", "mean")] = Cell(mean=float(values["avg"]), n=1)
        elif all(np.isfinite(same)):
            spec.cells[(f"{method} (reported)", "mean")] = Cell(mean=float(np.mean(same)), n=1)
    return spec


def dilemma_table(runs: pd.DataFrame, dataset: str, study: str = "strategies") -> TableSpec:
    """Table 1, the isolation-efficiency dilemma: accuracy, forgetting and memory per task of each strategy.

    ``study``: ``pilot`` (the paper's five-task pilot) where the plan has one, else ``strategies``.
    """
    sub = runs[(runs["study"] == study) & (runs["dataset"] == dataset)].copy()
    sub["memory_mb_per_task"] = sub["memory_bytes_per_task"] / 1e6
    columns = {
        "image_auroc_routed": "I-AUROC",
        "forgetting_fm_image_auroc": "FM I-AUROC",
        "forgetting_paper_image_auroc": "FM I-AUROC (paper)",
        "memory_pct_of_base": "memory/task (% base)",
        "memory_mb_per_task": "memory/task (MB)",
    }
    spec = variant_table(
        sub,
        study,
        dataset,
        f"T1_dilemma_{dataset}",
        "1",
        "Isolation-efficiency dilemma",
        columns,
        column_digits={"memory/task (% base)": 1},
    )
    spec.caption += (
        " Memory per task: what each new task adds to what the strategy keeps (float32 parameters; Full-Copy a "
        "whole model, the others the task's adapters, Replay also its buffer of float16 feature maps; EWC keeps "
        "its Fisher and anchor once; the kNN reference its memory bank of float32 patch vectors and no base; DNE its Gaussian of the image embeddings, "
        "float64, and no base; the joint flow every task's training feature maps, float16, since it trains on all of "
        "them at once, its one model counted as the base). Zero FM = forgetting exactly 0 for every metric in every finished run. "
        f"{CHAUDHRY}; FM (paper): mean over earlier tasks of R[i,i] - R[T-1,i]."
    )
    spec.columns.append("zero FM")
    forgetting = [c for c in sub.columns if c.startswith("forgetting_fm_")]
    for row in spec.rows:
        values = sub[(sub["variant"] == row) & (sub["status"] == "ok")][forgetting].to_numpy(dtype=float)
        if values.size == 0:
            continue
        if np.isnan(values).all():  # finished runs without forgetting: the joint flow, trained once
            spec.cells[(row, "zero FM")] = Cell(text=NOT_APPLICABLE)
            continue
        values = values[:, ~np.isnan(values).all(axis=0)]  # a metric no run of the variant makes (DNE's pixel ones)
        if np.isnan(values).any():  # a finished run without a forgetting value: not evidence of zero
            spec.cells[(row, "zero FM")] = Cell(text="incomplete")
        else:
            spec.cells[(row, "zero FM")] = Cell(text="yes" if bool((values == 0).all()) else "no")
    return spec


def objective_table(runs: pd.DataFrame, dataset: str, study: str = "objective") -> TableSpec:
    """The flow's objective: the input maps' Jacobian excluded or included, at 1x, 2x and 4x the schedule.

    Rows: the objective study's variants (``OBJECTIVE|SCHEDULE``). Besides the routed metrics, the
    input-collapse diagnostic's separation (defect patches' mean NLL above normal ones', in normal-patch
    SDs) and the maps' log-volume per patch, each a mean over the run's categories.
    """
    spec = variant_table(
        runs,
        study,
        dataset,
        f"objective_{dataset}",
        "objective",
        "The flow's objective: the input maps' Jacobian excluded (the paper's) or included, at 1x, 2x and 4x the schedule",
        {
            "image_auroc_routed": "I-AUROC",
            "pixel_auroc_routed": "P-AUROC",
            "pixel_ap_routed": "P-AP",
            "collapse_separation": "separation",
            "collapse_input_logdet": "log-volume / patch",
        },
        column_digits={"separation": 2, "log-volume / patch": 1},
    )
    spec.better.pop("log-volume / patch", None)
    spec.caption += (
        " Separation: defect patches' mean NLL minus normal test patches', in units of the normal patches' SD, "
        "under the run's own objective (input_collapse in each task's record). Log-volume / patch: the log-determinant "
        "per patch of the trainable maps in front of the flow (whitening affine and mixer), which the bounded "
        "objective adds to log p and the paper's leaves out. Claims O1 and O2 test 4x against 1x within each objective."
    )
    return spec


def literature_kinds(plan: dict[str, Any] | None) -> dict[str, str | None]:
    """Dataset name -> ``mvtec``/``visa`` for real copies; None for generated data (no literature rows).

    ``plan``: the plan record (or the workflow configuration: both name the datasets the same way).
    """
    if not plan:
        return {}
    return {
        name: (None if spec.get("generate") else spec.get("kind")) for name, spec in plan.get("datasets", {}).items()
    }


def main_runs(runs: pd.DataFrame, study: str = "main") -> dict[str, str]:
    """Dataset -> the run id of its main-study MoLE-Flow run with the lowest seed."""
    sub = main_method(runs, study).sort_values(["seed", "run_id"])
    return {dataset: group["run_id"].iloc[0] for dataset, group in sub.groupby("dataset", sort=False)}
