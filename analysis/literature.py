"""The literature rows of Tables 3-6: values the MoLE-Flow paper reports, never reproduced here.

``analysis/literature.csv`` holds every row of the paper's Tables 3-6 (MVTec AD and VisA;
image AUROC and pixel AP; joint-training upper bounds, fine-tuning lower bounds,
continual methods and the paper's own MoLE-Flow row), one value per method and
category, with the source table in each row. Two rows of the paper are misaligned
(their reported average disagrees with their categories); they are kept with a
note and left out of the tables.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

GROUP_ORDER = ("ours", "continual", "joint", "fine-tuning")


def load() -> pd.DataFrame:
    """Every reported value: ``paper_table, dataset, metric, group, method, category, value, note, source``."""
    with resources.files("analysis").joinpath("literature.csv").open(encoding="utf-8") as handle:
        frame = pd.read_csv(
            handle, dtype={"paper_table": str, "note": str}, keep_default_na=False, na_values={"value": [""]}
        )
    return frame


def reported(kind: str, metric: str) -> pd.DataFrame:
    """Usable reported values for a dataset kind (``mvtec``/``visa``) and metric: method x category (+ avg, FM)."""
    frame = load()
    sub = frame[(frame["dataset"] == kind) & (frame["metric"] == metric) & (frame["note"] == "")]
    if sub.empty:
        return pd.DataFrame()
    order = sorted(
        dict.fromkeys(sub["method"]),
        key=lambda m: (GROUP_ORDER.index(sub[sub["method"] == m]["group"].iloc[0]), list(sub["method"]).index(m)),
    )
    table = sub.pivot_table(index="method", columns="category", values="value", aggfunc="first", sort=False)
    return table.reindex(order)
