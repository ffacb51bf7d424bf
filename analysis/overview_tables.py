"""The tables that describe the runs rather than compare methods: Table 2 (each dataset's configuration), Table 15 (forgetting per strategy), Table 16 (what each dataset's main runs are) and 16b (per-category model of the main study's means)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.mixed import category_model, category_values
from analysis.render import Cell, TableSpec, ordered
from analysis.table_frames import CHAUDHRY, METRIC_LABELS, main_method, run_level, table_caption


def configuration_table(configs: dict[str, dict[str, Any]], main_runs: dict[str, str]) -> TableSpec:
    """Table 2: the configuration of each dataset's main MoLE-Flow run (``main_runs``: dataset -> run id)."""
    rows = list(CONFIG_ROWS)
    columns = list(main_runs)
    spec = TableSpec(
        "T2_configuration",
        "2",
        "Configuration",
        "The resolved configuration of each dataset's main-study "
        "MoLE-Flow run (seed 0's; the seeds differ only in `seed`).",
        rows,
        columns,
        row_header="parameter",
    )
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
    "Backbone": ("features.backbone", _plain),
    "Pretrained weights": ("features.pretrained", _plain),
    "Layers": ("features.layers", _plain),
    "Input size": ("features.input_size", _plain),
    "Patch dimension D": ("features.embed_dim", _plain),
    "Grid": ("features.grid", lambda v: "first layer" if v is None else str(v)),
    "MoLE blocks": ("model.coupling_blocks", _plain),
    "DIA blocks": ("model.dia_blocks", _plain),
    "LoRA rank": ("model.lora_rank", _plain),
    "LoRA alpha": ("model.lora_alpha", _plain),
    "Learning rate": ("training.lr", _plain),
    "Epochs per task": ("training.epochs", _plain),
    "Batch size": ("training.batch_size", _plain),
    "Tail weight": ("training.tail_weight", _plain),
    "Tail top-k ratio": ("training.top_k_ratio", _plain),
    "LogDet weight": ("training.logdet_reg", _plain),
    "Score aggregation top-K": ("scoring.image_top_k", _plain),
    "Scale context kernel": ("model.context_kernel", _plain),
    "Spatial context kernel": ("model.mixer_kernel", _plain),
    "Router covariance": ("router.covariance", _plain),
    "Strategy": ("strategy.name", _plain),
    "Device": ("device", _plain),
}


def forgetting_table(frame: pd.DataFrame, dataset: str, table_id: str, study: str = "main") -> TableSpec:
    """Table 15: per task, routed I-AUROC and P-AP at the end, and the run's forgetting (FM), of MoLE-Flow."""
    sub = main_method(frame, study)
    sub = sub[(sub["dataset"] == dataset) & sub["category"].notna()]
    rows = ordered(sub.sort_values("task_index")["category"])
    spec = TableSpec(
        table_id,
        "15",
        f"Forgetting ({dataset})",
        table_caption(sub.drop_duplicates("run_id"), f"Final metrics per task and the run's forgetting. {CHAUDHRY}"),
        rows,
        ["I-AUROC", "P-AP", "FM I-AUROC", "FM P-AP"],
        better={},
        row_header="task",
    )
    for row in rows:
        group = sub[sub["category"] == row]
        spec.cells[(row, "I-AUROC")] = Cell.from_runs(group["image_auroc_routed"], group["status"])
        spec.cells[(row, "P-AP")] = Cell.from_runs(group["pixel_ap_routed"], group["status"])
    runs = run_level(sub)
    spec.rows.append("run")
    spec.cells[("run", "FM I-AUROC")] = Cell.from_runs(runs["forgetting_fm_image_auroc"], runs["status"])
    spec.cells[("run", "FM P-AP")] = Cell.from_runs(runs["forgetting_fm_pixel_ap"], runs["status"])
    return spec


def dataset_summary(runs: pd.DataFrame, study: str = "main") -> TableSpec:
    """Table 16: per dataset, the main study's four metrics and routing accuracy (MoLE-Flow)."""
    sub = main_method(runs, study)
    rows = ordered(sub["dataset"])
    columns = {**{f"{m}_routed": label for m, label in METRIC_LABELS.items()}, "routing_accuracy": "Routing"}
    spec = TableSpec(
        "T16_summary",
        "16",
        "Dataset summary",
        table_caption(sub, "MoLE-Flow per dataset."),
        rows,
        list(columns.values()),
        row_header="dataset",
    )
    for row in rows:
        group = sub[sub["dataset"] == row]
        for column, label in columns.items():
            spec.cells[(row, label)] = Cell.from_runs(group[column], group["status"])
    return spec


def category_model_table(frame: pd.DataFrame, study: str = "main") -> TableSpec:
    """Table 16b: per dataset and metric, MoLE-Flow's mean with categories as a random effect (:mod:`analysis.mixed`).

    ``frame``: the per-category rows. The mean's interval covers the mean of categories drawn like these (not
    only these categories under new seeds, Table 16's standard deviation); the prediction interval a new one.
    """
    sub = main_method(frame, study)
    sub = sub[sub["category"].notna()]
    rows = [f"{dataset} {label}" for dataset in ordered(sub["dataset"]) for label in METRIC_LABELS.values()]
    columns = [
        "mean",
        "mean's 95% CI",
        "new category's 95% PI",
        "SD categories",
        "SD seeds",
        "categories",
        "seeds",
        "values",
        "note",
    ]
    spec = TableSpec(
        "T16b_category_model",
        "16b",
        "Main study with categories as a random effect",
        "MoLE-Flow's routed metrics, per category and seed, fitted as y = mu + u[category] + e (REML, "
        "categories as random intercepts, seeds as replicates): mean = mu; mean's 95% CI = its t interval on "
        "categories - 1 df, for the mean of categories drawn like these (wider than Table 16's seed-only "
        "standard deviation; a normal model on a bounded metric, so it may pass 1); new category's 95% PI = the "
        "prediction interval of one new category's mean over as many seeds, from the categories' means on the "
        "logit scale (m ± t sd sqrt(1 + 1/c), clipped to [0.001, 0.999] and back-transformed: it stays in (0, 1) and "
        "pools no seed variance, so a category at the ceiling of 1.000 does not borrow another's); SD categories / "
        "SD seeds = the square roots of the two variance components. Finished runs only.",
        rows,
        columns,
        row_header="dataset metric",
        column_digits={"categories": 0, "seeds": 0, "values": 0},
    )
    for dataset in ordered(sub["dataset"]):
        for metric, label in METRIC_LABELS.items():
            row = f"{dataset} {label}"
            found = category_model(category_values(sub, dataset, f"{metric}_routed"))
            if found.fitted:
                spec.cells[(row, "mean")] = Cell(mean=found.mean, n=found.values)
                spec.cells[(row, "mean's 95% CI")] = Cell(text=f"[{found.interval[0]:.3f}, {found.interval[1]:.3f}]")
                spec.cells[(row, "new category's 95% PI")] = Cell(
                    text=f"[{found.prediction[0]:.3f}, {found.prediction[1]:.3f}]"
                )
                spec.cells[(row, "SD categories")] = Cell(mean=found.sd_category, n=found.values)
                spec.cells[(row, "SD seeds")] = Cell(mean=found.sd_seed, n=found.values)
            for column, value in (("categories", found.categories), ("seeds", found.seeds), ("values", found.values)):
                spec.cells[(row, column)] = Cell(mean=float(value), n=1)
            spec.cells[(row, "note")] = Cell(text=found.note or "")
    return spec
