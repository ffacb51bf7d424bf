"""The paper's own numbers (analysis/paper_tables.csv) and the arithmetic the self-checks apply to them: the
best continual average of a table, the per-task overhead at Table 2's configuration, the residual degrees of
freedom an F and p imply."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis import literature


@dataclass
class SelfCheck:
    """One recomputed quantity of the paper."""

    what: str
    tables: str
    printed: str
    computed: str
    consistent: bool


def paper_values() -> pd.DataFrame:
    """``paper_table, row, column, value, text, source`` of ``analysis/paper_tables.csv``."""
    with resources.files("analysis").joinpath("paper_tables.csv").open(encoding="utf-8") as handle:
        return pd.read_csv(
            handle,
            dtype={"paper_table": str, "row": str, "text": str},
            keep_default_na=False,
            na_values={"value": [""]},
        )


def value(frame: pd.DataFrame, table: str, row: str, column: str) -> float:
    hit = frame[(frame["paper_table"] == table) & (frame["row"] == row) & (frame["column"] == column)]
    if hit.empty:
        raise KeyError(f"analysis/paper_tables.csv has no Table {table} / {row} / {column}")
    return float(hit["value"].iloc[0])


def best_continual(table: str) -> tuple[float, str, float] | None:
    """``(ours, best continual method, its average)`` of one of Tables 3-6, from the printed averages."""
    frame = literature.load()
    avg = frame[(frame["paper_table"] == table) & (frame["category"] == "avg")]
    ours = avg[avg["group"] == "ours"]["value"]
    rivals = avg[avg["group"] == "continual"].dropna(subset=["value"])
    if ours.empty or rivals.empty:
        return None
    best = rivals.loc[rivals["value"].idxmax()]
    return float(ours.iloc[0]), str(best["method"]), float(best["value"])


def overhead_at_table2(ranks: list[int]) -> dict[str, Any]:
    """Base and per-task parameters of the model this harness builds at Table 2's configuration.

    The configuration's defaults are the paper's (6 coupling + 2 DIA blocks, rank 64, D = 768);
    the per-task count is also taken at each of ``ranks`` to test that it is affine in the rank.
    """
    from moleflow.config import defaults
    from moleflow.continual.strategies import METHOD, parameter_counts

    config = defaults()
    config["strategy"]["name"] = METHOD
    dim = int(config["features"]["embed_dim"])
    counts = parameter_counts(config, dim)
    by_rank = {}
    for rank in ranks:
        config["model"]["lora_rank"] = rank
        by_rank[rank] = int(parameter_counts(config, dim)["per_task"])
    r = np.asarray(list(by_rank), dtype=float)
    c = np.asarray(list(by_rank.values()), dtype=float)
    slope, intercept = np.polyfit(r, c, 1)
    affine = bool(np.all(np.abs(slope * r + intercept - c) < 0.5))
    return {
        "base": int(counts["base"]),
        "per_task": int(counts["per_task"]),
        "overhead_pct": float(counts["overhead_pct"]),
        "without_dia_pct": float(counts["overhead_without_dia_pct"]),
        "by_rank": by_rank,
        "affine": affine,
    }


def averages(table: str) -> list[str]:
    """Rows of one of Tables 3-6 whose printed average differs from their categories' mean by more than rounding."""
    frame = literature.load()
    sub = frame[frame["paper_table"] == table]
    out = []
    for method, rows in sub.groupby("method", sort=False):
        cats = rows[~rows["category"].isin(["avg", "FM"])]["value"].dropna()
        printed = rows[rows["category"] == "avg"]["value"].dropna()
        if printed.empty or cats.empty:
            continue
        computed = float(cats.mean())
        if (
            abs(computed - float(printed.iloc[0])) > 0.001
        ):  # 3-decimal values: 0.0005 from the average, 0.0005 from its terms
            out.append(f"{method} {float(printed.iloc[0]):.3f} vs {computed:.4f}")
    return out


def reference_row(pv: pd.DataFrame, table: str) -> str:
    """The row of a sweep table that the others' Δ columns are taken against (the one without a Δ)."""
    rows = pv[pv["paper_table"] == table]
    with_delta = set(rows[rows["column"].str.startswith("Δ")]["row"])
    (reference,) = sorted(set(rows["row"]) - with_delta)
    return reference


def half_unit(printed: float) -> float:
    """Half a unit of the last printed decimal of ``printed`` (0.008 -> 0.0005, 8.47 -> 0.005)."""
    decimals = len(repr(float(printed)).split(".")[1].rstrip("0") or "0")
    return 0.5 * 10.0**-decimals


def dfs_for(f_value: float, p_value: float, largest: int = 200) -> list[int]:
    """Residual df (1 to ``largest``) for which some F(1, df) that rounds to ``f_value`` has a p that rounds to
    ``p_value`` as printed (each to its own number of decimals).

    p falls as F rises, so the F's within rounding give p in ``[sf(F + h), sf(F - h)]``; a df fits when that
    range meets the printed p's ``[p - h', p + h')``.
    """
    half_f, half_p = half_unit(f_value), half_unit(p_value)
    fits = []
    for df in range(1, largest + 1):
        p_low, p_high = stats.f.sf(f_value + half_f, 1, df), stats.f.sf(max(f_value - half_f, 0.0), 1, df)
        if p_low < p_value + half_p and p_high >= p_value - half_p:
            fits.append(df)
    return fits


def ranges(values: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out: list[str] = []
    for v in values:
        if out and v == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{v}"
        else:
            out.append(str(v))
    return ", ".join(out) if out else "none"
