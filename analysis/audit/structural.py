"""Checks of one variant's runs, and of the paper's own numbers: forgetting, fingerprints, invertibility,
backbone passes, parameter counts, routing, class orders, the headline numbers and the paper's bold rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from analysis.audit.context import (
    MARGIN,
    Context,
    label_of,
    run_values,
    shortfall,
    with_shortfall,
    worst_oracle_drop,
)
from analysis.audit.evidence import NAN, Part, exact, sign_test, t_part, welch_vs_paper
from analysis.stats import one_way_anova
from moleflow.metrics.continual import METRICS


def zero_forgetting(ctx: Context, check: dict[str, Any]) -> list[Part]:
    rows = ctx.rows(check["study"], check["variant"])
    ok = rows[rows["status"] == "ok"]
    differing, cells, routed_fm, misrouted = 0, 0, [], []
    for run_id in ok["run_id"]:
        summary = ctx.summaries.get(run_id) or {}
        matrices = summary.get("accuracy_matrix_oracle") or {}
        for metric in METRICS:
            R = matrices.get(metric) or []
            for i in range(len(R)):
                for j in range(i + 1, len(R)):
                    if R[j][i] is None:
                        continue
                    cells += 1
                    differing += int(R[j][i] != R[i][i])
        routed_fm.append(
            max(abs(v["fm"]) for v in summary["forgetting"].values() if v["fm"] == v["fm"]) if summary else NAN
        )
        misrouted.append(1.0 - float(summary.get("routing_accuracy") or 1.0))
    detail = (
        f"{cells} later oracle cells of {len(ok)} run(s), {differing} differ from the cell right after training; "
        f"largest routed |FM| {np.nanmax(routed_fm) if routed_fm else NAN:.4f} with misrouted share up to "
        f"{max(misrouted) if misrouted else NAN:.4f}"
    )
    if not cells:
        return [
            with_shortfall(
                Part("oracle R[j][i] = R[i][i] for j > i", reason="no finished run with two tasks or more"),
                shortfall(rows, check["study"], check["variant"]),
            )
        ]
    parts = [exact("oracle R[j][i] = R[i][i] for j > i", differing == 0, float(differing), len(ok), detail, paper=0.0)]
    unexplained = [fm for fm, miss in zip(routed_fm, misrouted) if fm > 0 and miss == 0]
    parts.append(
        exact(
            "routed forgetting only with misrouted images",
            not unexplained,
            float(len(unexplained)),
            len(ok),
            f"{len(unexplained)} of {len(ok)} run(s) forget when routed without misrouting an image",
        )
    )
    return parts


def fingerprints_unchanged(ctx: Context, check: dict[str, Any]) -> list[Part]:
    ids = ctx.runs[
        (ctx.runs["dataset"] == ctx.dataset)
        & (ctx.runs["strategy"] == check["strategy"])
        & (ctx.runs["status"] == "ok")
    ]["run_id"].unique()
    changed, checked, runs = [], 0, 0
    for run_id in ids:
        records = [t.get("fingerprints") for t in (ctx.summaries.get(run_id) or {}).get("per_task", [])]
        if len(records) < 2 or any(r is None for r in records):
            continue
        runs += 1
        for j, record in enumerate(records[1:], start=1):
            checked += 1 + j
            if record["base"] != records[0]["base"]:
                changed.append(f"{run_id}: base after task {j}")
            changed += [
                f"{run_id}: task {t} after task {j}" for t in range(j) if record["tasks"][t] != records[t]["tasks"][t]
            ]
    if not runs:
        return [
            Part("base and earlier tasks' digests unchanged", reason="no finished multi-task run with fingerprints")
        ]
    detail = f"{checked} digests re-checked over {runs} run(s)" + (
        f"; changed: {', '.join(changed[:3])}" if changed else ""
    )
    return [exact("base and earlier tasks' digests unchanged", not changed, float(len(changed)), runs, detail)]


def invertible(ctx: Context, check: dict[str, Any]) -> list[Part]:
    tol = float(check["tolerance"])
    ids = ctx.runs[(ctx.runs["dataset"] == ctx.dataset) & (ctx.runs["status"] == "ok")]["run_id"].unique()
    worst = {"round trip (relative)": 0.0, "log-det f + log-det f^-1": 0.0, "log-det vs autograd (relative)": 0.0}
    tasks = 0
    for run_id in ids:
        for record in (ctx.summaries.get(run_id) or {}).get("per_task", []):
            inv = record.get("invertibility")
            if not inv:
                continue
            tasks += 1
            worst["round trip (relative)"] = max(worst["round trip (relative)"], inv["max_relative_reconstruction"])
            worst["log-det f + log-det f^-1"] = max(worst["log-det f + log-det f^-1"], inv["max_inverse_logdet"])
            worst["log-det vs autograd (relative)"] = max(
                worst["log-det vs autograd (relative)"], inv["relative_logdet_autograd"]
            )
    if not tasks:
        return [Part("invertibility checks", reason="no finished run recorded them")]
    return [
        exact(f"{name} <= {tol:g}", value <= tol, value, tasks, f"largest {value:.2e} over {tasks} task checks")
        for name, value in worst.items()
    ]


def single_pass(ctx: Context, check: dict[str, Any]) -> list[Part]:
    ok = ctx.rows(check["study"])
    ok = ok[ok["status"] == "ok"]
    passes = [
        ((ctx.summaries.get(r) or {}).get("inference") or {}).get("backbone_passes_per_test_image")
        for r in ok["run_id"]
    ]
    known = [p for p in passes if p is not None]
    if not known:
        return [
            Part(
                "backbone passes per test image = 1",
                reason="no run recorded the count (features cached before it was kept)",
            )
        ]
    return [
        exact(
            "backbone passes per test image = 1",
            all(p == 1.0 for p in known),
            max(known),
            len(known),
            f"{min(known):g} to {max(known):g} over {len(known)} run(s)",
            paper=1.0,
        )
    ]


def parameter_overhead(ctx: Context, check: dict[str, Any]) -> list[Part]:
    from analysis.audit.paper_values import overhead_at_table2

    counts = overhead_at_table2(check["ranks"])
    pct = counts["overhead_pct"]
    parts = [
        exact(
            f"per-task / base parameters in [{check['low']}, {check['high']}]%",
            check["low"] <= pct <= check["high"],
            pct,
            1,
            f"{counts['per_task']:,} / {counts['base']:,} = {pct:.1f}% (without DIA {counts['without_dia_pct']:.1f}%)",
            paper=8.0,
        )
    ]
    parts.append(
        exact(
            "per-task parameters affine in the rank",
            counts["affine"],
            NAN,
            len(check["ranks"]),
            "per-task counts at ranks " + ", ".join(f"{r}: {c:,}" for r, c in counts["by_rank"].items()),
        )
    )
    return parts


# ---------------------------------------------------------------------------------------- headline numbers
def welch_paper(ctx: Context, check: dict[str, Any]) -> list[Part]:
    values, why = run_values(ctx, check, check["metric"])
    m = check["margin"]
    part = welch_vs_paper(
        f"|{label_of(check['metric'])} - {check['mean']}| < {m:g} (paper: ± {check['sd']}, n={check['n']})",
        values,
        check["mean"],
        check["sd"],
        check["n"],
        m,
    )
    return [with_shortfall(part, why)]


def interval_contains(ctx: Context, check: dict[str, Any]) -> list[Part]:
    """Each metric's mean against the paper's value ± tolerance: region ``(paper - tol, paper + tol)``.

    Supported when the deciding interval lies inside it (the harness pins the value to the paper's within
    the tolerance), contradicted when it lies entirely outside, undecided otherwise: fewer or noisier runs
    (a wider interval) can never add support.
    """
    parts = []
    for column, paper in check["values"].items():
        values, why = run_values(ctx, check, column)
        tol = check["tolerance"][column]
        label = f"{label_of(column)} within {paper} ± {tol:g}"
        parts.append(with_shortfall(t_part(label, values, (paper - tol, paper + tol), paper=paper, margin=tol), why))
    return parts


def interval_lower_at_least(ctx: Context, check: dict[str, Any]) -> list[Part]:
    values, why = run_values(ctx, check, check["metric"])
    part = sign_test(f"{label_of(check['metric'])} > {check['minimum']}", values, ">", check["minimum"], 0.0)
    return [with_shortfall(part, why)]


def routing_at_least(ctx: Context, check: dict[str, Any]) -> list[Part]:
    values, why = run_values(ctx, check, "routing_accuracy")
    if not len(values):
        return [Part(f"routing accuracy >= {check['minimum']}", reason=why or "no finished run")]
    return [
        exact(
            f"routing accuracy >= {check['minimum']} in every run",
            bool(np.all(values >= check["minimum"])),
            float(values.min()),
            len(values),
            f"lowest {values.min():.4f}",
            paper=check["minimum"],
        )
    ]


def router_ablation(ctx: Context, check: dict[str, Any]) -> list[Part]:
    maha, why = run_values(ctx, check, "routing_accuracy")
    eucl, _ = run_values(ctx, check, "routing_accuracy_euclidean")
    label = "Δ routing accuracy (Mahalanobis - Euclidean) > 0"
    if len(maha) and len(eucl) == len(maha) and np.all(maha == 1.0) and np.all(eucl == 1.0):
        return [
            Part(
                label,
                estimate=0.0,
                n=len(maha),
                reason="both routers route every test image correctly: no room to differ",
                paper=0.04,
            )
        ]
    return [
        with_shortfall(
            sign_test(label, maha - eucl if len(eucl) == len(maha) else np.array([]), ">", 0.0, MARGIN, paper=0.04), why
        )
    ]


def order_robust(ctx: Context, check: dict[str, Any]) -> list[Part]:
    rows = ctx.rows(check["study"])
    orders = sorted(set(rows["order"].dropna()))
    ok = rows[rows["status"] == "ok"]
    worst = worst_oracle_drop(ctx, ok["run_id"])
    parts = [exact("oracle forgetting 0 in every order", worst == 0.0, worst, len(ok), f"{len(orders)} order(s)")]
    if len(orders) < check["minimum_orders"]:
        parts.append(
            Part(
                f"at least {check['minimum_orders']} orders",
                n=len(orders),
                reason=f"{len(orders)} order(s) planned (rule: {check['minimum_orders']})",
            )
        )
    return parts


def order_note(ctx: Context, check: dict[str, Any]) -> str:
    ok = ctx.rows(check["study"])
    ok = ok[ok["status"] == "ok"]
    if ok["order"].nunique() < 2:
        return ""
    p, why = one_way_anova(ok, "order", check["metric"])
    return (
        f"one-way ANOVA of {label_of(check['metric'])} on the order: p {p:.3f}"
        if np.isfinite(p)
        else f"ANOVA on the order: {why}"
    )


def paper_best(ctx: Context, check: dict[str, Any]) -> list[Part]:
    from analysis.audit.paper_values import best_continual

    parts = []
    for table in check["tables"]:
        found = best_continual(table)
        if found is None:
            continue
        ours, best_method, best_value = found
        parts.append(
            exact(
                f"Table {table}: Ours' average ({ours:.3f}) the highest continual average",
                ours >= best_value,
                ours - best_value,
                1,
                f"{best_method} {best_value:.3f} (the paper's own rows)",
                paper=ours,
            )
        )
    return parts
