"""Builders of the paper's tables from the tidy run table (see :mod:`analysis.collect`).

Cells are mean +- std over seeds of each run's mean over its categories (routed
metrics: the deployed setting). Diverged and missing runs are left out of the
statistics; a cell with none left says ``diverged`` or stays missing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.render import Cell, TableSpec
from analysis.stats import holm, two_way_anova
from moleflow.errors import MoleflowError

METRIC_LABELS = {"image_auroc": "I-AUROC", "pixel_auroc": "P-AUROC", "pixel_ap": "P-AP", "aupro": "AUPRO"}


def run_level(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, variant, dataset, run): routed means over categories and run-level fields."""
    metric_cols = [f"{m}_routed" for m in METRIC_LABELS]
    keys = ["study", "variant", "dataset", "run_id", "seed", "order", "status", "strategy"]
    extra = [c for c in frame.columns if c.startswith(("forgetting_", "routing_", "params_", "overhead"))]
    grouped = frame.groupby(keys, dropna=False, sort=False)
    out = grouped[metric_cols].mean()
    for column in extra:
        out[column] = grouped[column].first()
    return out.reset_index()


def _cell(values: pd.Series, statuses: pd.Series) -> Cell:
    ok = values[(statuses == "ok") & values.notna()]
    if ok.empty:
        return Cell(text="diverged") if (statuses == "diverged").any() else Cell()
    return Cell(mean=float(ok.mean()), std=float(ok.std(ddof=1)) if len(ok) > 1 else None, n=int(len(ok)))


def _ordered(values: pd.Series) -> list[str]:
    return list(dict.fromkeys(values.tolist()))


def _caption(runs: pd.DataFrame, what: str) -> str:
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    return (f"{what} Mean and standard deviation over seeds {seeds} (n per cell = finished runs) of each run's "
            "mean over its categories, routed; -- = missing.")


def variant_table(runs: pd.DataFrame, study: str, dataset: str, table_id: str, paper_table: str, title: str,
                  columns: dict[str, str], delta_of: str | None = None, integer_columns: tuple[str, ...] = ()) -> TableSpec:
    """Rows = the study's variants; ``columns`` maps run-level column -> label."""
    sub = runs[(runs["study"] == study) & (runs["dataset"] == dataset)]
    rows = _ordered(sub["variant"])
    labels = list(columns.values())
    spec = TableSpec(table_id, paper_table, f"{title} ({dataset})", _caption(sub, title + "."), rows, labels,
                     better={label: ("min" if col.startswith("forgetting") or col.startswith("params") else "max")
                             for col, label in columns.items()}, row_header="variant",
                     column_digits={c: 0 for c in integer_columns})
    for row in rows:
        group = sub[sub["variant"] == row]
        for column, label in columns.items():
            spec.cells[(row, label)] = _cell(group[column], group["status"])
    if delta_of and rows:
        label = f"Δ {columns[delta_of]}"
        spec.columns.append(label)
        reference = spec.cell(rows[0], columns[delta_of])
        for row in rows:
            current = spec.cell(row, columns[delta_of])
            if not current.missing and not reference.missing and current.text is None and reference.text is None:
                spec.cells[(row, label)] = Cell(mean=current.mean - reference.mean, n=current.n)
    return spec


def per_category_table(frame: pd.DataFrame, dataset: str, metric: str, table_id: str, paper_table: str) -> TableSpec:
    """Rows = categories (+ mean), column = MoLE-Flow's routed ``metric`` in the main study."""
    sub = frame[(frame["study"] == "main") & (frame["dataset"] == dataset) & frame["category"].notna()]
    rows = sorted(set(sub["category"]))
    label = f"MoLE-Flow {METRIC_LABELS[metric]}"
    spec = TableSpec(table_id, paper_table, f"Per-category {METRIC_LABELS[metric]} ({dataset})",
                     _caption(sub.drop_duplicates("run_id"), f"Per-category {METRIC_LABELS[metric]}."),
                     rows + ["mean"], [label], better={}, row_header="category")
    for row in rows:
        group = sub[sub["category"] == row]
        spec.cells[(row, label)] = _cell(group[f"{metric}_routed"], group["status"])
    means = run_level(sub)
    spec.cells[("mean", label)] = _cell(means[f"{metric}_routed"], means["status"])
    return spec


def forgetting_table(frame: pd.DataFrame, dataset: str, table_id: str) -> TableSpec:
    """Table 15: per task, routed I-AUROC and P-AP at the end, and the run's forgetting (FM)."""
    sub = frame[(frame["study"] == "main") & (frame["dataset"] == dataset) & frame["category"].notna()]
    rows = _ordered(sub.sort_values("task_index")["category"])
    spec = TableSpec(table_id, "15", f"Forgetting ({dataset})",
                     _caption(sub.drop_duplicates("run_id"), "Final metrics per task and max-based forgetting FM of the run."),
                     rows, ["I-AUROC", "P-AP", "FM I-AUROC", "FM P-AP"], better={}, row_header="task")
    for row in rows:
        group = sub[sub["category"] == row]
        spec.cells[(row, "I-AUROC")] = _cell(group["image_auroc_routed"], group["status"])
        spec.cells[(row, "P-AP")] = _cell(group["pixel_ap_routed"], group["status"])
    runs = run_level(sub)
    spec.rows.append("run")
    spec.cells[("run", "FM I-AUROC")] = _cell(runs["forgetting_fm_image_auroc"], runs["status"])
    spec.cells[("run", "FM P-AP")] = _cell(runs["forgetting_fm_pixel_ap"], runs["status"])
    return spec


def dataset_summary(runs: pd.DataFrame) -> TableSpec:
    """Table 16: per dataset, the main study's four metrics and routing accuracy."""
    sub = runs[runs["study"] == "main"]
    rows = _ordered(sub["dataset"])
    columns = {**{f"{m}_routed": label for m, label in METRIC_LABELS.items()}, "routing_accuracy": "Routing"}
    spec = TableSpec("T16_summary", "16", "Dataset summary", _caption(sub, "MoLE-Flow per dataset."), rows,
                     list(columns.values()), row_header="dataset")
    for row in rows:
        group = sub[sub["dataset"] == row]
        for column, label in columns.items():
            spec.cells[(row, label)] = _cell(group[column], group["status"])
    return spec


def interaction_table(runs: pd.DataFrame, dataset: str, alpha: float = 0.05) -> TableSpec:
    """Table 8: two-way ANOVA per component and response (variants named ``COMPONENT|BASE|on/off``)."""
    sub = runs[(runs["study"] == "interaction") & (runs["dataset"] == dataset)].copy()
    malformed = [v for v in _ordered(sub["variant"]) if len(str(v).split("|")) != 3]
    if malformed:
        raise MoleflowError(f"studies.interaction: variant {malformed[0]!r} is not named COMPONENT|BASE|LEVEL (e.g. WA|frozen|on)")
    parts = sub["variant"].str.split("|", expand=True)
    sub["component_name"], sub["base"], sub["component"] = parts[0], parts[1], parts[2]
    responses = {"pixel_ap_routed": "P-AP", "image_auroc_routed": "I-AUROC"}
    results = []
    for name in _ordered(sub["component_name"]):
        for column, label in responses.items():
            data = sub[sub["component_name"] == name].copy()
            data.loc[data["status"] != "ok", column] = np.nan
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = two_way_anova(data, name, column)
            for w in caught:
                warnings.warn(str(w.message), stacklevel=2)
            results.append((name, label, result))
    adjusted: dict[str, list[float]] = {}
    for label in responses.values():
        ps = [r.p_interaction for _, lab, r in results if lab == label]
        adjusted[label] = holm(ps)
    columns = ["F base", "p base", "F comp.", "p comp.", "F inter.", "p inter.", "η²p inter.", "Holm p inter.", "verdict", "note"]
    rows = [f"{name} / {label}" for name, label, _ in results]
    df_res = next((r.df_residual for _, _, r in results if r.valid), float("nan"))
    spec = TableSpec(f"T8_interaction_{dataset}", "8", f"Interaction analysis ({dataset})",
                     "Two-way ANOVA (statsmodels OLS, y ~ C(base) * C(component), type II sums of squares) per component "
                     f"and response, replicates = seeds (residual df {df_res:g}); partial eta squared of the interaction; "
                     f"Holm-adjusted interaction p across components; Integral if interaction p < {alpha}.",
                     rows, columns, row_header="component / response",
                     p_columns=("p base", "p comp.", "p inter.", "Holm p inter."))
    counters = {label: 0 for label in responses.values()}
    for (name, label, result), row in zip(results, rows):
        holm_p = adjusted[label][counters[label]]
        counters[label] += 1
        values = [result.f_base, result.p_base, result.f_component, result.p_component, result.f_interaction,
                  result.p_interaction, result.eta2_interaction, holm_p]
        for column, value in zip(columns[:8], values):
            spec.cells[(row, column)] = Cell(mean=value, n=result.n) if np.isfinite(value) else Cell()
        spec.cells[(row, "verdict")] = Cell(text=result.verdict(alpha))
        spec.cells[(row, "note")] = Cell(text=result.note or "")
    return spec


def build_all(frame: pd.DataFrame) -> list[TableSpec]:
    """Every table the collected runs support (a study without runs gives no table)."""
    runs = run_level(frame[frame["status"].notna()])
    metrics = {f"{m}_routed": label for m, label in METRIC_LABELS.items()}
    specs: list[TableSpec] = []
    studies = set(runs["study"])
    for dataset in _ordered(runs["dataset"]):
        present = set(runs[runs["dataset"] == dataset]["study"])
        if "main" in present:
            specs.append(per_category_table(frame, dataset, "image_auroc", f"T3_image_auroc_{dataset}", "3/5"))
            specs.append(per_category_table(frame, dataset, "pixel_ap", f"T4_pixel_ap_{dataset}", "4/6"))
            specs.append(forgetting_table(frame, dataset, f"T15_forgetting_{dataset}"))
        if "ablation" in present:
            specs.append(variant_table(runs, "ablation", dataset, f"T7_ablation_{dataset}", "7", "Component ablation",
                                       metrics, delta_of="pixel_ap_routed"))
        if "strategies" in present:
            specs.append(variant_table(runs, "strategies", dataset, f"T14_strategies_{dataset}", "1/14", "Training strategies",
                                       {"image_auroc_routed": "I-AUROC", "pixel_ap_routed": "P-AP",
                                        "forgetting_fm_image_auroc": "FM I-AUROC", "forgetting_fm_pixel_ap": "FM P-AP",
                                        "params_per_task": "params/task"}, integer_columns=("params/task",)))
        if "depth" in present:
            specs.append(variant_table(runs, "depth", dataset, f"T9_depth_{dataset}", "9", "Depth (MoLE and DIA blocks)",
                                       {"image_auroc_routed": "I-AUROC", "pixel_ap_routed": "P-AP"}))
        if "sensitivity" in present:
            specs.append(variant_table(runs, "sensitivity", dataset, f"T11_13_sensitivity_{dataset}", "10-13",
                                       "Hyper-parameter sweeps", {"image_auroc_routed": "I-AUROC", "pixel_ap_routed": "P-AP"},
                                       delta_of="pixel_ap_routed"))
        if "order" in present:
            sub = runs[(runs["study"] == "order") & (runs["dataset"] == dataset)].copy()
            sub["variant"] = sub["order"]
            specs.append(variant_table(sub, "order", dataset, f"order_{dataset}", "order", "Class-order sensitivity",
                                       {"image_auroc_routed": "I-AUROC", "pixel_ap_routed": "P-AP",
                                        "forgetting_fm_image_auroc": "FM I-AUROC"}))
        if "interaction" in present:
            specs.append(interaction_table(runs, dataset))
    if "main" in studies:
        specs.append(dataset_summary(runs))
    return specs
