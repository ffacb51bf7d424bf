"""What the audit's evaluators read: run-level rows of one dataset, the summaries, and paired values.

Replicates are seeds (and task orders), paired on ``(seed, order)``; a check names its
study and variants, and a variant's rows are every run of its configuration, whatever study
planned it (:mod:`analysis.collect`); a shortfall (missing, diverged or failed runs) travels
with the values so that an undecided part says why, and the runs read are recorded so that
each part says which entered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.audit.evidence import Part, sign_test
from analysis.collect import Summaries

STUDY_FALLBACK = {"pilot": "strategies"}  # the default's strategies study is the five-task pilot
MARGIN = 0.005  # smallest effect of interest of a directional claim on a metric (0.5 pp), unless the entry sets one
LABELS = {
    "image_auroc_routed": "I-AUROC",
    "pixel_ap_routed": "P-AP",
    "pixel_auroc_routed": "P-AUROC",
    "forgetting_paper_image_auroc": "FM (paper) I-AUROC",
    "routing_accuracy": "routing accuracy",
}


@dataclass
class Context:
    """What an evaluator reads: run-level rows of one dataset and the summaries."""

    runs: pd.DataFrame
    summaries: Summaries
    dataset: str
    reads: list[tuple[str, str]] = field(default_factory=list)  # (study, variant) read since the last clear

    def rows(self, study: str, variant: str | None = None) -> pd.DataFrame:
        """Run-level rows of ``study`` (``pilot`` falls back to ``strategies`` where no pilot is planned)."""
        mine = self.runs[self.runs["dataset"] == self.dataset]
        if study in STUDY_FALLBACK and (mine["study"] == study).sum() == 0:
            study = STUDY_FALLBACK[study]
        sub = mine[mine["study"] == study]
        return sub if variant is None else sub[sub["variant"] == variant]

    def resolution(self, study: str, column: str) -> float:
        """The smallest change an image-level AUROC mean can show in ``study``'s runs: one swapped pair of a
        normal and an anomalous test image in the category with the fewest pairs, over the categories averaged
        (``1 / (C x normal x anomalous)``); 0 for pixel metrics (thousands of pixels) or when the runs do not
        record their test counts (summaries written before they did)."""
        if not column.startswith("image_auroc"):
            return 0.0
        worst = 0.0
        for run_id in self.rows(study)["run_id"]:
            counts = ((self.summaries.get(run_id) or {}).get("dataset") or {}).get("test_counts") or {}
            steps = [
                1.0 / (len(counts) * c["normal"] * c["anomalous"])
                for c in counts.values()
                if c["normal"] and c["anomalous"]
            ]
            worst = max([worst] + steps)
        return worst

    def margin(self, study: str, column: str, margin: float) -> tuple[float, str]:
        """The smallest effect of interest: ``margin``, raised to the metric's :meth:`resolution` when that is
        coarser (the registry's convention; it draws a region's boundary away from 0, never past a stated
        threshold); and a note saying so."""
        step = self.resolution(study, column)
        if step > margin:
            return step, f" (margin raised from {margin:g} to the metric's resolution {step:.4f})"
        return margin, ""

    def describe_reads(self) -> str:
        """The runs read since :attr:`reads` was cleared, per variant: ``w/o WA: seeds 0, 1, 2 (...)``."""
        seen = list(dict.fromkeys(self.reads))
        return "; ".join(f"{study}/{variant}: {describe(self.rows(study, variant))}" for study, variant in seen)

    def values(self, study: str, variant: str, column: str) -> tuple[pd.Series, str]:
        """Per replicate ``(seed, order)``, ``column`` of the finished runs; and what is missing or diverged."""
        rows = self.rows(study, variant)
        self.reads.append((study, variant))
        ok = rows[rows["status"] == "ok"]
        series = ok.set_index(["seed", "order"])[column].astype(float) if column in ok else pd.Series(dtype=float)
        return series, shortfall(rows, study, variant)


def shortfall(rows: pd.DataFrame, study: str, variant: str) -> str:
    """``"study/variant: 1 of 3 planned runs missing, 1 diverged"`` or ``""``."""
    if rows.empty:
        return f"{study}/{variant}: not planned"
    counts = rows["status"].value_counts()
    notes = [f"{counts[s]} of {len(rows)} planned run(s) {s}" for s in ("missing", "diverged", "failed") if s in counts]
    return f"{study}/{variant}: " + ", ".join(notes) if notes else ""


def label_of(column: str) -> str:
    return LABELS.get(column, column)


def with_shortfall(part: Part, *reasons: str) -> Part:
    """Add what is missing or diverged behind a part to its reason (shown when the part is undecided)."""
    extra = "; ".join(r for r in reasons if r)
    if extra:
        part.reason = "; ".join(r for r in (part.reason, extra) if r)
    return part


def paired_diff(ctx: Context, study: str, variant: str, reference: str, column: str) -> tuple[np.ndarray, str]:
    """``variant - reference`` per common replicate, and the shortfall of either."""
    a, why_a = ctx.values(study, variant, column)
    b, why_b = ctx.values(study, reference, column)
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    return (both["a"] - both["b"]).to_numpy(dtype=float), "; ".join(w for w in (why_a, why_b) if w)


def step(
    ctx: Context, study: str, higher: str, lower: str, column: str, margin: float = MARGIN, label: str | None = None
) -> Part:
    """``higher > lower`` on ``column``, paired (a one-sided step of an ordering)."""
    diff, why = paired_diff(ctx, study, higher, lower, column)
    margin, note = ctx.margin(study, column, margin)
    part = sign_test((label or f"{label_of(column)}: {higher} > {lower}") + note, diff, ">", 0.0, margin)
    return with_shortfall(part, why)


def worst_oracle_drop(ctx: Context, run_ids: Iterable[str]) -> float:
    """The largest oracle forgetting of these runs: ``|FM|`` of Chaudhry's and of the paper's definition over every
    category of each run's oracle matrix (a NaN entry is no value), 0 when none is recorded."""
    worst = 0.0
    for run_id in run_ids:
        oracle = (ctx.summaries.get(run_id) or {}).get("forgetting_oracle") or {}
        worst = max([worst] + [abs(v[k]) for v in oracle.values() for k in ("fm", "paper") if v[k] == v[k]])
    return worst


def run_values(ctx: Context, check: dict[str, Any], column: str) -> tuple[np.ndarray, str]:
    series, why = ctx.values(check["study"], check["variant"], column)
    return series.to_numpy(dtype=float), why


def describe(rows: pd.DataFrame) -> str:
    """``seeds 0, 1, 2 (seed 2 planned by interaction, sensitivity)``: the finished runs of some rows."""
    ok = rows[rows["status"] == "ok"].drop_duplicates("run_id")
    if ok.empty:
        return "no finished run"
    seeds = sorted({int(s) for s in ok["seed"]})
    text = "seeds " + ", ".join(str(s) for s in seeds)
    orders = sorted({str(o) for o in ok["order"].dropna()})
    if len(orders) > 1:
        text += f" x orders {', '.join(orders)}"
    if "planned_by" in ok:
        lent = ok[ok["planned_by"].fillna("") != ""]
        if not lent.empty:
            by = "; ".join(
                f"seed {int(seed)} planned by {lenders}" for seed, lenders in zip(lent["seed"], lent["planned_by"])
            )
            text += f" ({by})"
    return text
