"""The sensitivity study's sweeps (Tables 11-13 and the others) and their summary (Table 10).

Convention of the `sensitivity` study: one variant named ``default`` (the reference
configuration) and, per swept hyper-parameter, variants named ``"<sweep> <value>"``
(``tail_weight 0.3``, ``spatial kernel 5``). Each sweep is the default plus its own
variants; the default's value is read from its configuration (the key whose value
spells the variants' labels), so the table shows every value tested.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from analysis.render import Cell, TableSpec
from analysis.stats import delta_cell, holm, one_way_anova

DEFAULT = "default"
PAPER_TABLES = {"tail_weight": "11", "top_k_ratio": "12", "spatial kernel": "13"}
RESPONSE = "pixel_ap_routed"
# Sensitivity classes by the spread (max - min over the values) of mean P-AP, in percentage points
CLASSES = ((3.0, "High"), (1.0, "Medium"), (0.3, "Low"), (0.0, "Negligible"))  # for a significant sweep


def split_variants(variants: list[str]) -> dict[str, list[tuple[str, str]]]:
    """``{sweep: [(value label, variant), ...]}`` from variant names (the default left out)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name in variants:
        if name == DEFAULT:
            continue
        sweep, _, value = str(name).rpartition(" ")
        out.setdefault(sweep or str(name), []).append((value if sweep else str(name), str(name)))
    return out


def _default_label(frame: pd.DataFrame, members: list[tuple[str, str]]) -> str:
    """The default's value of the config key that spells the sweep's labels (``default`` if none does)."""
    if not (frame["variant"] == DEFAULT).any():
        return DEFAULT
    columns = [c for c in frame.columns if c.startswith("cfg.")]
    firsts = frame.groupby("variant", sort=False)[columns].first()  # per variant and key: its first value present

    def value(variant: str, column: str) -> object:
        found = firsts.at[variant, column] if variant in firsts.index else None
        return None if _missing(found) else found

    best, score = None, 0
    for column in columns:
        reference = value(DEFAULT, column)
        hits = sum(_matches(value(v, column), label) and not _matches(reference, label) for label, v in members)
        if hits > score:
            best, score = column, hits
    if best is None or value(DEFAULT, best) is None:
        return DEFAULT
    return _text(value(DEFAULT, best))


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and bool(np.isnan(value)))


def _matches(value: object, label: str) -> bool:
    return value is not None and _text(value) == _text(label)


def _text(value: object) -> str:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return str(value)
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    return f"{float(value):g}" if isinstance(value, (int, float, np.integer, np.floating)) else str(value)


def _key(label: str) -> tuple[int, float, str]:
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def sweep_frames(runs: pd.DataFrame, dataset: str, study: str = "sensitivity") -> dict[str, pd.DataFrame]:
    """Per sweep, the run-level rows of the default and the sweep's variants, with a ``value`` column."""
    sub = runs[(runs["study"] == study) & (runs["dataset"] == dataset)]
    out = {}
    for sweep, members in split_variants(list(dict.fromkeys(sub["variant"]))).items():
        labels = {variant: label for label, variant in members}
        labels[DEFAULT] = _default_label(sub, members) + " (default)"
        rows = sub[sub["variant"].isin(labels)].copy()
        rows["value"] = rows["variant"].map(labels)
        out[sweep] = rows
    return out


def ordered_values(rows: pd.DataFrame) -> list[str]:
    return sorted(dict.fromkeys(rows["value"]), key=lambda v: _key(v.replace(" (default)", "")))


def sweep_table(rows: pd.DataFrame, sweep: str, dataset: str) -> TableSpec:
    """One sweep: I-AUROC and P-AP per value (mean +- std over seeds), and the P-AP change from the default."""
    values = ordered_values(rows)
    paper = PAPER_TABLES.get(sweep, "10")
    slug = sweep.replace(" ", "_")
    seeds = sorted({int(s) for s in rows["seed"].dropna()})
    spec = TableSpec(
        f"T{paper}_sweep_{slug}_{dataset}" if paper != "10" else f"T10_sweep_{slug}_{dataset}",
        paper,
        f"Sensitivity to {sweep} ({dataset})",
        f"Sweep of {sweep}; mean and standard deviation over seeds {seeds} (n per cell = finished runs) of "
        "each run's mean over its categories, routed; Δ P-AP: paired by seed against the default over the "
        "seeds both finished (n = pairs), with a 95% t interval; -- = missing.",
        values,
        ["I-AUROC", "P-AP", "Δ P-AP"],
        better={"I-AUROC": "max", "P-AP": "max"},
        row_header=sweep,
    )
    for value in values:
        group = rows[rows["value"] == value]
        spec.cells[(value, "I-AUROC")] = Cell.from_runs(group["image_auroc_routed"], group["status"])
        spec.cells[(value, "P-AP")] = Cell.from_runs(group[RESPONSE], group["status"])
    default = next((v for v in values if v.endswith("(default)")), None)
    if default is not None:
        for value in values:
            if value != default:
                spec.cells[(value, "Δ P-AP")] = delta_cell(
                    rows[rows["value"] == value], rows[rows["value"] == default], RESPONSE
                )
    return spec


def _class(spread_pp: float) -> str:
    return next(name for limit, name in CLASSES if spread_pp >= limit)


def anova_tests(sweeps: dict[str, pd.DataFrame]) -> dict[str, tuple[float, float, str]]:
    """Per sweep with two finished values or more: the one-way ANOVA p of P-AP on the value (seeds as replicates),
    its Holm adjustment across these sweeps, and the test's note: what Table 10 prints and C43 reads."""
    raw: dict[str, tuple[float, str]] = {}
    for sweep, frame in sweeps.items():
        ok = frame[(frame["status"] == "ok") & frame[RESPONSE].notna()]
        if ok["value"].nunique() < 2:
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            raw[sweep] = one_way_anova(ok, "value", RESPONSE)
        for w in caught:
            warnings.warn(str(w.message), stacklevel=2)
    adjusted = dict(zip(raw, holm([p for p, _ in raw.values()])))
    return {sweep: (p, adjusted[sweep], note) for sweep, (p, note) in raw.items()}


def summary_table(sweeps: dict[str, pd.DataFrame], dataset: str, alpha: float = 0.05) -> TableSpec:
    """Table 10: per sweep, the best value, the spread of mean P-AP and I-AUROC over values, a one-way ANOVA.

    The sensitivity class is gated on evidence: ``none detected`` unless the sweep's one-way ANOVA
    p, Holm-adjusted across the table's sweeps, is below ``alpha``; only then does the
    spread of means choose High, Medium or Low. Without the gate, noise alone makes
    most null sweeps look Medium.
    """
    columns = [
        "values",
        "best (P-AP)",
        "spread P-AP (pp)",
        "spread I-AUROC (pp)",
        "ANOVA p (P-AP)",
        "Holm p (P-AP)",
        "sensitivity",
    ]
    rows = list(sweeps)
    limits = ", ".join(f"{name} >= {limit:g}" for limit, name in CLASSES[:-1])
    spec = TableSpec(
        f"T10_sensitivity_{dataset}",
        "10",
        f"Hyper-parameter sensitivity summary ({dataset})",
        "Per sweep (the default and its variants): the value with the highest mean P-AP over seeds (descriptive, "
        "on test data); the spread (max - min over the values) of mean P-AP and mean I-AUROC in percentage "
        "points; the p-value of a one-way ANOVA of P-AP on the value (statsmodels OLS, seeds as replicates) and "
        f"its Holm adjustment across the sweeps. Sensitivity: none detected unless the Holm p < {alpha}; then by the "
        f"P-AP spread ({limits} pp, else Negligible). Finished runs only.",
        rows,
        columns,
        row_header="hyper-parameter",
        column_digits={"spread P-AP (pp)": 1, "spread I-AUROC (pp)": 1},
        p_columns=("ANOVA p (P-AP)", "Holm p (P-AP)"),
    )
    spreads: dict[str, float] = {}
    for sweep, frame in sweeps.items():
        ok = frame[(frame["status"] == "ok") & frame[RESPONSE].notna()]
        values = ordered_values(frame)
        spec.cells[(sweep, "values")] = Cell(text=", ".join(v.replace(" (default)", "*") for v in values))
        means = ok.groupby("value")[[RESPONSE, "image_auroc_routed"]].mean()
        if len(means) < 2:
            spec.cells[(sweep, "sensitivity")] = Cell(text="fewer than 2 values finished")
            continue
        spread = 100 * (means[RESPONSE].max() - means[RESPONSE].min())
        spec.cells[(sweep, "best (P-AP)")] = Cell(text=str(means[RESPONSE].idxmax()).replace(" (default)", "*"))
        spec.cells[(sweep, "spread P-AP (pp)")] = Cell(mean=float(spread), n=len(ok))
        spec.cells[(sweep, "spread I-AUROC (pp)")] = Cell(
            mean=float(100 * (means["image_auroc_routed"].max() - means["image_auroc_routed"].min())), n=len(ok)
        )
        spreads[sweep] = float(spread)
    for sweep, (p_value, adjusted, note) in anova_tests(sweeps).items():
        n = int(((sweeps[sweep]["status"] == "ok") & sweeps[sweep][RESPONSE].notna()).sum())
        if not np.isfinite(p_value):
            spec.cells[(sweep, "sensitivity")] = Cell(text=f"untested ({note})" if note else "untested")
            continue
        spec.cells[(sweep, "ANOVA p (P-AP)")] = Cell(mean=p_value, n=n)
        spec.cells[(sweep, "Holm p (P-AP)")] = Cell(mean=adjusted, n=n)
        spec.cells[(sweep, "sensitivity")] = Cell(text=_class(spreads[sweep]) if adjusted < alpha else "none detected")
    return spec


def build(runs: pd.DataFrame, dataset: str, study: str = "sensitivity") -> list[TableSpec]:
    """Every sweep table of ``dataset`` and the summary (no sensitivity runs: no tables)."""
    sweeps = sweep_frames(runs, dataset, study)
    if not sweeps:
        return []
    return [sweep_table(rows, sweep, dataset) for sweep, rows in sweeps.items()] + [summary_table(sweeps, dataset)]
