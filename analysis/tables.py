"""Builders of the paper's tables from the tidy run table (see :mod:`analysis.collect`).

Cells are mean +- std over seeds of each run's mean over its categories (routed
metrics: the deployed setting). Diverged and missing runs are left out of the
statistics; a cell with none left says ``diverged`` or stays missing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis import sweeps
from analysis.literature import load, reported
from analysis.mixed import category_model, category_values
from analysis.interaction import interaction_table
from analysis.render import NOT_APPLICABLE, Cell, TableSpec, ordered
from analysis.stats import delta_cell

PAPER_FM = "FM (paper)"  # R[i,i] - R[T-1,i]: the only definition compared with the paper's reported FM
CHAUDHRY = "FM (Chaudhry et al.): mean over earlier tasks of the drop from their best earlier value to the final one; it can be negative."
METRIC_LABELS = {"image_auroc": "I-AUROC", "pixel_auroc": "P-AUROC", "pixel_ap": "P-AP", "aupro": "AUPRO"}


def run_level(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, variant, dataset, run): routed means over categories and run-level fields."""
    metric_cols = [f"{m}_routed" for m in METRIC_LABELS]
    keys = ["study", "variant", "dataset", "run_id", "seed", "order", "status", "strategy"]
    extra = [c for c in frame.columns
             if c.startswith(("forgetting_", "routing_", "params_", "overhead", "memory_", "rescored_", "cfg.")) or c.endswith("_just_trained")]
    grouped = frame.groupby(keys, dropna=False, sort=False)
    out = grouped[metric_cols].mean()
    for column in extra:
        out[column] = grouped[column].first()
    return out.reset_index()


def _caption(runs: pd.DataFrame, what: str) -> str:
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    return (f"{what} Mean and standard deviation over seeds {seeds} (n per cell = finished runs) of each run's "
            "mean over its categories, routed; -- = missing.")


def main_method(frame: pd.DataFrame) -> pd.DataFrame:
    """The main study's rows of its first variant (MoLE-Flow; later variants, e.g. the kNN reference, are compared with it)."""
    sub = frame[frame["study"] == "main"]
    if sub.empty:
        return sub
    return sub[sub["variant"] == ordered(sub["variant"])[0]]


def variant_table(runs: pd.DataFrame, study: str, dataset: str, table_id: str, paper_table: str, title: str,
                  columns: dict[str, str], delta_of: str | tuple[str, ...] = (), integer_columns: tuple[str, ...] = (),
                  column_digits: dict[str, int] | None = None) -> TableSpec:
    """Rows = the study's variants; ``columns`` maps run-level column -> label; deltas against the first row."""
    sub = runs[(runs["study"] == study) & (runs["dataset"] == dataset)]
    rows = ordered(sub["variant"])
    labels = list(columns.values())
    digits = {**{c: 0 for c in integer_columns}, **(column_digits or {})}
    spec = TableSpec(table_id, paper_table, f"{title} ({dataset})", _caption(sub, title + "."), rows, labels,
                     better={label: ("min" if col.startswith(("forgetting", "params", "memory")) else "max")
                             for col, label in columns.items()}, row_header="variant", column_digits=digits)
    for row in rows:
        group = sub[sub["variant"] == row]
        for column, label in columns.items():
            spec.cells[(row, label)] = Cell.from_runs(group[column], group["status"])
    for column in ((delta_of,) if isinstance(delta_of, str) else delta_of):
        if not rows:
            break
        label = f"Δ {columns[column]}"
        spec.columns.append(label)
        reference = sub[sub["variant"] == rows[0]]
        for row in rows[1:]:
            spec.cells[(row, label)] = delta_cell(sub[sub["variant"] == row], reference, column)
    if any(c.startswith("Δ ") for c in spec.columns):
        spec.caption += (f" Δ: paired by seed against {rows[0]} over the seeds both finished (n = pairs), with a 95% "
                         "t interval of the mean difference.")
    return spec


def per_category_table(frame: pd.DataFrame, dataset: str, metric: str, table_id: str, paper_table: str,
                       literature_kind: str | None = None) -> TableSpec:
    """Tables 3-6: each main-study variant's routed ``metric`` per category, its mean and FM, over seeds.

    The main study's first variant is MoLE-Flow; later ones (the ``knn`` reference of the
    embedded default) are own-run rows too, labelled ``(this harness)``. With
    ``literature_kind`` (``mvtec``/``visa``, real data only) the paper's reported rows for
    that dataset follow, labelled as reported (see :mod:`analysis.literature`).
    """
    sub = frame[(frame["study"] == "main") & (frame["dataset"] == dataset) & frame["category"].notna()]
    categories = sorted(set(sub["category"]))
    variants = ordered(sub["variant"])
    ours = {f"{v} (this harness)": v for v in variants}
    label = METRIC_LABELS[metric]
    literature = reported(literature_kind, metric) if literature_kind else pd.DataFrame()
    if not literature.empty and not set(categories) & set(literature.columns):
        literature = pd.DataFrame()  # none of the paper's categories: nothing to compare with
    rows = list(ours) + [f"{m} (reported)" for m in literature.index]
    columns = categories + ["mean", PAPER_FM]
    caption = _caption(sub.drop_duplicates("run_id"), f"Per-category {label}; {PAPER_FM} = the paper's forgetting, mean over "
                       "earlier tasks of R[i,i] - R[T-1,i], for own and reported rows alike.")
    if not literature.empty:
        every = load()
        source = sorted(set(every[(every["dataset"] == literature_kind) & (every["metric"] == metric)]["paper_table"]))
        caption += (f" Rows marked reported are the values the MoLE-Flow paper reports (Table {', '.join(source)}) on the real "
                    f"{literature_kind} data with pretrained weights: cited, not reproduced here. Their mean is the paper's "
                    "average when the table has all of the paper's categories, else the mean of the same categories "
                    "(missing if one is not reported).")
    spec = TableSpec(table_id, paper_table, f"Per-category {label} ({dataset})", caption, rows, columns,
                     better={**{c: "max" for c in categories + ["mean"]}, PAPER_FM: "min"}, row_header="method")
    everything = frame[(frame["study"] == "main") & (frame["dataset"] == dataset)]
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
    columns = {"image_auroc_routed": "I-AUROC", "forgetting_fm_image_auroc": "FM I-AUROC",
               "forgetting_paper_image_auroc": "FM I-AUROC (paper)",
               "memory_pct_of_base": "memory/task (% base)", "memory_mb_per_task": "memory/task (MB)"}
    spec = variant_table(sub, study, dataset, f"T1_dilemma_{dataset}", "1", "Isolation-efficiency dilemma", columns,
                         column_digits={"memory/task (% base)": 1})
    spec.caption += (" Memory per task: what each new task adds to what the strategy keeps (float32 parameters; Full-Copy a "
                     "whole model, the others the task's adapters, Replay also its buffer of float16 feature maps; EWC keeps "
                     "its Fisher and anchor once; the kNN reference its memory bank of float32 patch vectors and no base; DNE its Gaussian of the image embeddings, "
                     "float64, and no base; the joint flow every task's training feature maps, float16, since it trains on all of "
                     "them at once, its one model counted as the base). Zero FM = forgetting exactly 0 for every metric in every finished run. "
                     f"{CHAUDHRY}; FM (paper): mean over earlier tasks of R[i,i] - R[T-1,i].")
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


def configuration_table(configs: dict[str, dict[str, Any]], main_runs: dict[str, str]) -> TableSpec:
    """Table 2: the configuration of each dataset's main MoLE-Flow run (``main_runs``: dataset -> run id)."""
    rows = list(CONFIG_ROWS)
    columns = list(main_runs)
    spec = TableSpec("T2_configuration", "2", "Configuration", "The resolved configuration of each dataset's main-study "
                     "MoLE-Flow run (seed 0's; the seeds differ only in `seed`).", rows, columns, row_header="parameter")
    for dataset, run_id in main_runs.items():
        config = configs[run_id]
        for row, (path, fmt) in CONFIG_ROWS.items():
            value: Any = config
            for key in path.split("."):
                value = value[key]
            spec.cells[(row, dataset)] = Cell(text=fmt(value))
    return spec


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return "--" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


CONFIG_ROWS: dict[str, tuple[str, Any]] = {
    "Backbone": ("features.backbone", _plain), "Pretrained weights": ("features.pretrained", _plain),
    "Layers": ("features.layers", _plain), "Input size": ("features.input_size", _plain),
    "Patch dimension D": ("features.embed_dim", _plain), "Grid": ("features.grid", lambda v: "first layer" if v is None else str(v)),
    "MoLE blocks": ("model.coupling_blocks", _plain), "DIA blocks": ("model.dia_blocks", _plain),
    "LoRA rank": ("model.lora_rank", _plain), "LoRA alpha": ("model.lora_alpha", _plain),
    "Learning rate": ("training.lr", _plain), "Epochs per task": ("training.epochs", _plain),
    "Batch size": ("training.batch_size", _plain), "Tail weight": ("training.tail_weight", _plain),
    "Tail top-k ratio": ("training.top_k_ratio", _plain), "LogDet weight": ("training.logdet_reg", _plain),
    "Score aggregation top-K": ("scoring.image_top_k", _plain), "Scale context kernel": ("model.context_kernel", _plain),
    "Spatial context kernel": ("model.mixer_kernel", _plain), "Router covariance": ("router.covariance", _plain),
    "Strategy": ("strategy.name", _plain), "Device": ("device", _plain),
}


def forgetting_table(frame: pd.DataFrame, dataset: str, table_id: str) -> TableSpec:
    """Table 15: per task, routed I-AUROC and P-AP at the end, and the run's forgetting (FM), of MoLE-Flow."""
    sub = main_method(frame)
    sub = sub[(sub["dataset"] == dataset) & sub["category"].notna()]
    rows = ordered(sub.sort_values("task_index")["category"])
    spec = TableSpec(table_id, "15", f"Forgetting ({dataset})",
                     _caption(sub.drop_duplicates("run_id"), f"Final metrics per task and the run's forgetting. {CHAUDHRY}"),
                     rows, ["I-AUROC", "P-AP", "FM I-AUROC", "FM P-AP"], better={}, row_header="task")
    for row in rows:
        group = sub[sub["category"] == row]
        spec.cells[(row, "I-AUROC")] = Cell.from_runs(group["image_auroc_routed"], group["status"])
        spec.cells[(row, "P-AP")] = Cell.from_runs(group["pixel_ap_routed"], group["status"])
    runs = run_level(sub)
    spec.rows.append("run")
    spec.cells[("run", "FM I-AUROC")] = Cell.from_runs(runs["forgetting_fm_image_auroc"], runs["status"])
    spec.cells[("run", "FM P-AP")] = Cell.from_runs(runs["forgetting_fm_pixel_ap"], runs["status"])
    return spec


def dataset_summary(runs: pd.DataFrame) -> TableSpec:
    """Table 16: per dataset, the main study's four metrics and routing accuracy (MoLE-Flow)."""
    sub = main_method(runs)
    rows = ordered(sub["dataset"])
    columns = {**{f"{m}_routed": label for m, label in METRIC_LABELS.items()}, "routing_accuracy": "Routing"}
    spec = TableSpec("T16_summary", "16", "Dataset summary", _caption(sub, "MoLE-Flow per dataset."), rows,
                     list(columns.values()), row_header="dataset")
    for row in rows:
        group = sub[sub["dataset"] == row]
        for column, label in columns.items():
            spec.cells[(row, label)] = Cell.from_runs(group[column], group["status"])
    return spec


def category_model_table(frame: pd.DataFrame) -> TableSpec:
    """Table 16b: per dataset and metric, MoLE-Flow's mean with categories as a random effect (:mod:`analysis.mixed`).

    ``frame``: the per-category rows. The interval covers a category drawn like these,
    not only these categories under new seeds (Table 16's standard deviation).
    """
    sub = main_method(frame)
    sub = sub[sub["category"].notna()]
    rows = [f"{dataset} {label}" for dataset in ordered(sub["dataset"]) for label in METRIC_LABELS.values()]
    columns = ["mean", "95% CI", "SD categories", "SD seeds", "categories", "seeds", "values", "note"]
    spec = TableSpec("T16b_category_model", "16b", "Main study with categories as a random effect",
                     "MoLE-Flow's routed metrics, per category and seed, fitted as y = mu + u[category] + e (REML, "
                     "categories as random intercepts, seeds as replicates): mean = mu; 95% CI = t interval on "
                     "categories - 1 df (it covers a category drawn like these, so it is wider than Table 16's "
                     "seed-only standard deviation); SD categories / SD seeds = the square roots of the two variance "
                     "components; a normal model on a bounded metric, so an interval may pass 1. Finished runs only.", rows, columns, row_header="dataset metric",
                     column_digits={"categories": 0, "seeds": 0, "values": 0})
    for dataset in ordered(sub["dataset"]):
        for metric, label in METRIC_LABELS.items():
            row = f"{dataset} {label}"
            found = category_model(category_values(sub, dataset, f"{metric}_routed"))
            if found.fitted:
                spec.cells[(row, "mean")] = Cell(mean=found.mean, n=found.values)
                spec.cells[(row, "95% CI")] = Cell(text=f"[{found.interval[0]:.3f}, {found.interval[1]:.3f}]")
                spec.cells[(row, "SD categories")] = Cell(mean=found.sd_category, n=found.values)
                spec.cells[(row, "SD seeds")] = Cell(mean=found.sd_seed, n=found.values)
            for column, value in (("categories", found.categories), ("seeds", found.seeds), ("values", found.values)):
                spec.cells[(row, column)] = Cell(mean=float(value), n=1)
            spec.cells[(row, "note")] = Cell(text=found.note or "")
    return spec


def literature_kinds(plan: dict[str, Any] | None) -> dict[str, str | None]:
    """Dataset name -> ``mvtec``/``visa`` for real copies; None for generated data (no literature rows).

    ``plan``: the plan record (or the workflow configuration: both name the datasets the same way).
    """
    if not plan:
        return {}
    return {name: (None if spec.get("generate") else spec.get("kind")) for name, spec in plan.get("datasets", {}).items()}


def main_runs(runs: pd.DataFrame) -> dict[str, str]:
    """Dataset -> the run id of its main-study MoLE-Flow run with the lowest seed."""
    sub = main_method(runs).sort_values(["seed", "run_id"])
    return {dataset: group["run_id"].iloc[0] for dataset, group in sub.groupby("dataset", sort=False)}


def build_all(frame: pd.DataFrame, plan: dict[str, Any] | None = None,
              configs: dict[str, dict[str, Any]] | None = None) -> list[TableSpec]:
    """Every table the collected runs support (a study without runs gives no table).

    ``plan`` (the record of the plan behind the runs) tells real datasets from
    generated ones (literature rows only for real MVTec AD / VisA); ``configs`` (run id ->
    resolved config) gives Table 2.
    """
    runs = run_level(frame[frame["status"].notna()])
    kinds = literature_kinds(plan)
    metrics = {f"{m}_routed": label for m, label in METRIC_LABELS.items()}
    specs: list[TableSpec] = []
    studies = set(runs["study"])
    if configs and "main" in studies:
        specs.append(configuration_table(configs, main_runs(runs)))
    for dataset in ordered(runs["dataset"]):
        present = set(runs[runs["dataset"] == dataset]["study"])
        if "main" in present:
            specs.append(per_category_table(frame, dataset, "image_auroc", f"T3_image_auroc_{dataset}", "3/5", kinds.get(dataset)))
            specs.append(per_category_table(frame, dataset, "pixel_ap", f"T4_pixel_ap_{dataset}", "4/6", kinds.get(dataset)))
            specs.append(forgetting_table(frame, dataset, f"T15_forgetting_{dataset}"))
        if "pilot" in present or "strategies" in present:
            specs.append(dilemma_table(runs, dataset, "pilot" if "pilot" in present else "strategies"))
        if "strategies" in present:
            specs.append(variant_table(runs, "strategies", dataset, f"T14_strategies_{dataset}", "14", "Training strategies",
                                       {"image_auroc_routed": "I-AUROC", "pixel_ap_routed": "P-AP"},
                                       delta_of=("image_auroc_routed", "pixel_ap_routed")))
        if "ablation" in present:
            specs.append(variant_table(runs, "ablation", dataset, f"T7_ablation_{dataset}", "7", "Component ablation",
                                       metrics, delta_of=("image_auroc_routed", "pixel_ap_routed")))
        if "depth" in present:
            specs.append(variant_table(runs, "depth", dataset, f"T9_depth_{dataset}", "9", "Depth (MoLE and DIA blocks)",
                                       {"image_auroc_routed": "I-AUROC", "pixel_ap_routed": "P-AP"}))
        if "sensitivity" in present:
            specs.extend(sweeps.build(runs, dataset))
        if "order" in present:
            sub = runs[(runs["study"] == "order") & (runs["dataset"] == dataset)].copy()
            sub["variant"] = sub["order"]
            specs.append(variant_table(sub, "order", dataset, f"order_{dataset}", "order", "Class-order sensitivity",
                                       {"image_auroc_routed": "I-AUROC", "pixel_ap_routed": "P-AP",
                                        "forgetting_fm_image_auroc": "FM I-AUROC"}))
            specs[-1].caption += f" {CHAUDHRY}"
        for study in sorted(s for s in present if s == "interaction" or s.startswith("interaction_")):
            specs.append(interaction_table(runs, dataset, study=study))
    if "main" in studies:
        specs.append(dataset_summary(runs))
        specs.append(category_model_table(frame[frame["status"].notna()]))
    return specs
