"""Checks that compare variants: paired differences, ratios, orderings of strategies, the ranking of
ablations, and the 2 x 2 interaction designs (Table 8)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.audit.context import MARGIN, Context, label_of, with_shortfall, paired_diff, shortfall, step
from analysis.audit.designs import sweep_best
from analysis.audit.evidence import (NAN, Part, contrast_part, equivalence_test, exact, interaction_contrast,
                                     kendall_agreement, sign_test)


def ratio(ctx: Context, check: dict[str, Any]) -> list[Part]:
    a, why_a = ctx.values(check["study"], check["numerator"], check["metric"])
    b, why_b = ctx.values(check["study"], check["denominator"], check["metric"])
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    ratios = (both["a"] / both["b"]).to_numpy(dtype=float)
    part = equivalence_test(f"{label_of(check['metric'])} ratio {check['numerator']} / {check['denominator']} in "
                            f"[{check['low']}, {check['high']}]", ratios, check["low"], check["high"], paper=0.987)
    part.origin = 1.0
    return [with_shortfall(part, why_a, why_b)]


def paired(ctx: Context, check: dict[str, Any]) -> list[Part]:
    study, reference = check["study"], check["reference"]
    parts = []
    for spec in check["parts"]:
        column, variant = spec["metric"], spec["variant"]
        if spec.get("one_sample"):
            values, why = ctx.values(study, variant, column)
            part = sign_test(f"{label_of(column)} of {variant} {spec['direction']} 0", values.to_numpy(), spec["direction"], 0.0,
                             spec.get("margin", MARGIN), paper=spec.get("paper", NAN))
        else:
            diff, why = paired_diff(ctx, study, variant, reference, column)
            name = f"Δ {label_of(column)} ({variant} - {reference})"
            if "equivalence" in spec:
                m = spec["equivalence"]
                part = equivalence_test(f"|{name}| < {m:g}", diff, -m, m, paper=spec.get("paper", NAN))
            elif "region" in spec:
                lo, hi = spec["region"]
                part = equivalence_test(f"{name} in [{lo:g}, {hi:g}]", diff, lo, hi, paper=spec.get("paper", NAN))
            else:
                threshold = spec.get("threshold", 0.0)
                part = sign_test(f"{name} {spec['direction']} {threshold:g}", diff, spec["direction"], threshold,
                                 spec.get("margin", 0.0 if threshold else MARGIN), paper=spec.get("paper", NAN))
        parts.append(with_shortfall(part, why))
    if "best" in check:
        parts += sweep_best(ctx, check["best"])
    if "largest_of" in check:
        parts.append(_largest_drop(ctx, check, check["parts"][0]))
    return parts


def _largest_drop(ctx: Context, check: dict[str, Any], spec: dict[str, Any]) -> Part:
    column = spec["metric"]
    mine, _ = paired_diff(ctx, check["study"], spec["variant"], check["reference"], column)
    others = {v: paired_diff(ctx, check["study"], v, check["reference"], column)[0] for v in check["largest_of"]}
    means = {v: float(np.mean(d)) for v, d in others.items() if len(d)}
    label = f"mean Δ {label_of(column)} of {spec['variant']} below every other ablation's"
    if not len(mine) or len(means) < len(others):
        return Part(label, reason="an ablation has no finished pair")
    return exact(label, all(float(np.mean(mine)) < m for m in means.values()), float(np.mean(mine)), len(mine),
                 "largest other drop " + f"{min(means.values()):+.4f} ({min(means, key=means.get)})")


def forgetting_order(ctx: Context, check: dict[str, Any]) -> list[Part]:
    study, column = check["study"], check["metric"]
    parts = []
    for variant in check["zero"]:
        rows = ctx.rows(study, variant)
        ok = rows[rows["status"] == "ok"]
        if ok.empty:
            parts.append(Part(f"oracle forgetting of {variant} = 0", reason=shortfall(rows, study, variant) or "no finished run"))
            continue
        worst = 0.0
        for run_id in ok["run_id"]:
            oracle = (ctx.summaries.get(run_id) or {}).get("forgetting_oracle") or {}
            worst = max([worst] + [abs(v[k]) for v in oracle.values() for k in ("fm", "paper") if v[k] == v[k]])
        parts.append(exact(f"oracle forgetting of {variant} = 0", worst == 0.0, worst, len(ok), paper=0.0))
    order = check["order"]
    for higher, lower in zip(order, order[1:]):
        parts.append(step(ctx, study, higher, lower, column))
    values, why = ctx.values(study, order[-1], column)
    parts.append(with_shortfall(sign_test(f"{label_of(column)} of {order[-1]} > 0", values.to_numpy(), ">", 0.0, MARGIN), why))
    return parts


def strategy_order(ctx: Context, check: dict[str, Any]) -> list[Part]:
    study, column = check["study"], check["metric"]
    diff, why = paired_diff(ctx, study, check["reference"], check["equivalent"], column)
    m = check["margin"]
    parts = [with_shortfall(equivalence_test(f"|Δ {label_of(column)} ({check['reference']} - {check['equivalent']})| < {m:g}",
                                              diff, -m, m), why)]
    order = check["order"]
    parts += [step(ctx, study, higher, lower, column) for higher, lower in zip(order, order[1:])]
    return parts


def ranking(ctx: Context, check: dict[str, Any]) -> list[Part]:
    column, order = check["metric"], check["order"]
    drops = []
    for variant in order:
        diff, _ = paired_diff(ctx, check["study"], variant, check["reference"], column)
        drops.append(-float(np.mean(diff)) if len(diff) else NAN)
    paper_rank = list(range(len(order), 0, -1))  # the paper's order: first = largest drop
    part = kendall_agreement(f"Kendall tau (paper order vs mean {label_of(column)} drops)", paper_rank, drops)
    finite = [(d, v) for d, v in zip(drops, order) if np.isfinite(d)]
    top = [v for _, v in sorted(finite, reverse=True)[: check["top"]]]
    top_part = Part(f"{' and '.join(order[: check['top']])} the {check['top']} largest drops", reason="an ablation has no finished pair")
    if len(finite) == len(order):
        top_part = exact(top_part.label, set(top) == set(order[: check["top"]]), NAN, len(order),
                         "largest: " + ", ".join(top))
    return [part, top_part]


# ---------------------------------------------------------------------------------------- interaction (Table 8)
def _design(ctx: Context, study: str, component: str, column: str) -> pd.DataFrame:
    rows = ctx.rows(study)
    rows = rows[rows["variant"].str.startswith(f"{component}|") & (rows["status"] == "ok")]
    parts = rows["variant"].str.split("|", expand=True)
    if rows.empty:
        return pd.DataFrame(columns=["base", "component", "y"])
    return pd.DataFrame({"base": parts[1].to_numpy(), "component": parts[2].to_numpy(), "y": rows[column].to_numpy(dtype=float)})


def interaction(ctx: Context, check: dict[str, Any]) -> list[Part]:
    data = _design(ctx, check["study"], check["component"], check["metric"])
    label = (f"{check['component']}: interaction contrast ({label_of(check['metric'])}) "
             + ("> 0" if check["kind"] == "Integral" else f"within ±{check['margin']:g}"))
    contrast = interaction_contrast(data) if len(data) else None
    return [contrast_part(label, contrast, check["kind"], check["margin"])]


def simple_effects_parts(ctx: Context, check: dict[str, Any]) -> list[Part]:
    parts = []
    arms = {name: ["frozen"] for name in check["integral"]} | {name: ["frozen", "trainable"] for name in check["generic"]}
    for component, bases in arms.items():
        data = _design(ctx, check["study"], component, check["metric"])
        for base in bases:
            label = f"{component}: effect with the {base} base > 0"
            arm = data[data["base"] == base]
            on, off = arm[arm["component"] == "on"]["y"].to_numpy(), arm[arm["component"] == "off"]["y"].to_numpy()
            if not len(on) or not len(off):
                parts.append(Part(label, reason="a cell has no finished run"))
                continue
            # pooled within-cell variance of the whole 2 x 2 design (the two-way model's residual)
            groups = [g["y"].to_numpy() for _, g in data.groupby(["base", "component"])]
            df = sum(len(g) - 1 for g in groups)
            part = Part(label, estimate=float(on.mean() - off.mean()), n=len(on) + len(off))
            if df <= 0:
                part.reason = "no replicate within a cell: no residual variance"
            else:
                from scipy import stats

                mse = sum(((g - g.mean()) ** 2).sum() for g in groups) / df
                se = float(np.sqrt(mse * (1 / len(on) + 1 / len(off))))
                if se == 0:
                    part.reason = "zero residual variance"
                else:
                    q = float(stats.t.ppf(0.975, df))
                    part.low, part.high = part.estimate - q * se, part.estimate + q * se
                    part.p_support = float(stats.t.sf(part.estimate / se, df))
                    part.p_contradict = float(stats.t.cdf((part.estimate - MARGIN) / se, df))
            parts.append(part)
    return parts
