"""What every table reads: the run-level frame (one row per run), the main study's rows, the common caption and the metric labels."""

from __future__ import annotations

import pandas as pd

from analysis.render import ordered

PAPER_FM = "FM (paper)"  # R[i,i] - R[T-1,i]: the only definition compared with the paper's reported FM


CHAUDHRY = "FM (Chaudhry et al.): mean over earlier tasks of the drop from their best earlier value to the final one; it can be negative."


METRIC_LABELS = {"image_auroc": "I-AUROC", "pixel_auroc": "P-AUROC", "pixel_ap": "P-AP", "aupro": "AUPRO"}


def run_level(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, variant, dataset, run): routed means over categories and run-level fields."""
    # the routed metrics and the per-task input-collapse figures are means over the run's categories
    metric_cols = [f"{m}_routed" for m in METRIC_LABELS] + [c for c in frame.columns if c.startswith("collapse_")]
    keys = ["study", "variant", "dataset", "run_id", "seed", "order", "status", "strategy"]
    extra = [
        c
        for c in frame.columns
        if c.startswith(("forgetting_", "routing_", "params_", "overhead", "memory_", "rescored_", "cfg."))
        or c.endswith("_just_trained")
        or c == "collapsed"
    ]
    grouped = frame.groupby(keys, dropna=False, sort=False)
    out = grouped[metric_cols].mean()
    for column in extra:
        out[column] = grouped[column].first()
    return out.reset_index()


def table_caption(runs: pd.DataFrame, what: str) -> str:
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    return (
        f"{what} Mean and standard deviation over seeds {seeds} (n per cell = finished runs) of each run's "
        "mean over its categories, routed; -- = missing."
    )


def main_method(frame: pd.DataFrame, study: str = "main") -> pd.DataFrame:
    """The main study's rows of its first variant (MoLE-Flow; later variants, e.g. the kNN reference, are compared with it)."""
    sub = frame[frame["study"] == study]
    if sub.empty:
        return sub
    return sub[sub["variant"] == ordered(sub["variant"])[0]]


def collapse_flags(frame: pd.DataFrame, rows: dict[str, str]) -> dict[str, str]:
    """Table rows (label -> variant) some of whose finished runs the input-collapse diagnostic flagged.

    Returns label -> ``"k of n runs"`` (n: the row's finished flow runs), for the rows with k > 0.
    """
    if "collapsed" not in frame:
        return {}
    out = {}
    for label, variant in rows.items():
        runs = frame[(frame["variant"] == variant) & (frame["status"] == "ok")].drop_duplicates("run_id")
        flagged = runs["collapsed"].map(lambda v: v is True or v == 1.0)
        diagnosed = int(runs["collapsed"].notna().sum())
        if flagged.any():
            out[label] = f"{int(flagged.sum())} of {diagnosed} run{'s' if diagnosed != 1 else ''}"
    return out
