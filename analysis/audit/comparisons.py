"""Checks that compare variants: paired differences, ratios, orderings of strategies, the ranking of
ablations, and the 2 x 2 interaction designs (Table 8)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from analysis.audit.context import (
    MARGIN,
    Context,
    label_of,
    paired_diff,
    shortfall,
    step,
    with_shortfall,
    worst_oracle_drop,
)
from analysis.audit.designs import sweep_best
from analysis.audit.evidence import (
    INF,
    NAN,
    Part,
    contrast_part,
    equivalence_test,
    exact,
    pivot_part,
    sign_test,
    t_part,
)
from analysis.blocked import Contrast, contrasts, design_frame
from moleflow.continual.strategies import STRATEGIES, strategy_named


def _without_random_choice(ctx: Context, run_ids: list[str]) -> bool:
    """Whether these runs make no random choice, so one run stands for every seed: a memory-bank reference
    (``knn``) that keeps its whole bank (no coreset drawn)."""
    configs = [(ctx.summaries.get(r) or {}).get("config") or {} for r in run_ids]
    return bool(configs) and all(not _draws_at_random(c.get("strategy", {})) for c in configs)


def _draws_at_random(options: dict[str, Any]) -> bool:
    """Whether a run with this ``strategy`` config section makes a random choice (an unknown strategy: yes)."""
    name = options.get("name")
    return name not in STRATEGIES or strategy_named(name, options).draws_at_random()


def against_bound(ctx: Context, check: dict[str, Any]) -> list[Part]:
    """``variant - reference > -margin`` on ``metric``: the variant matches (or beats) a reference upper bound.

    Paired by replicate when the reference ran every seed the variant ran; otherwise, when the
    reference makes no random choice (its single value holds for every seed), each of the
    variant's replicates against that value (one-sample). Supported when the mean difference
    is significantly above ``-margin``; contradicted when significantly below it.
    """
    study, variant, reference, column = check["study"], check["variant"], check["reference"], check["metric"]
    margin, note = ctx.margin(study, column, check["margin"])
    label = f"Δ {label_of(column)} ({variant} - {reference}) > -{margin:g}{note}"
    values, why = ctx.values(study, variant, column)
    bound, why_ref = ctx.values(study, reference, column)
    if bound.empty:
        return [with_shortfall(Part(label, reason=f"no finished {reference} run"), why_ref)]
    if set(values.index) <= set(bound.index):
        diff, why = paired_diff(ctx, study, variant, reference, column)  # its shortfall names both sides
        why_ref = ""
    else:
        ids = list(ctx.rows(study, reference)["run_id"])
        if bound.nunique() != 1 or not _without_random_choice(ctx, ids):
            return [
                with_shortfall(
                    Part(
                        label,
                        reason=f"{reference} did not run every seed of {variant} and makes "
                        "random choices: no value to compare each seed with",
                    ),
                    why,
                )
            ]
        diff = values.to_numpy(dtype=float) - float(bound.iloc[0])
        label += f" (one-sample: {reference} makes no random choice, one run)"
    part = sign_test(label, diff, ">", -margin, 0.0, paper=check.get("paper", NAN))
    return [with_shortfall(part, why, why_ref)]


def ratio(ctx: Context, check: dict[str, Any]) -> list[Part]:
    a, why_a = ctx.values(check["study"], check["numerator"], check["metric"])
    b, why_b = ctx.values(check["study"], check["denominator"], check["metric"])
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    ratios = (both["a"] / both["b"]).to_numpy(dtype=float)
    part = equivalence_test(
        f"{label_of(check['metric'])} ratio {check['numerator']} / {check['denominator']} in "
        f"[{check['low']}, {check['high']}]",
        ratios,
        check["low"],
        check["high"],
        paper=0.987,
    )
    part.origin = 1.0
    return [with_shortfall(part, why_a, why_b)]


def paired(ctx: Context, check: dict[str, Any]) -> list[Part]:
    study, reference = check["study"], check["reference"]
    parts = []
    for spec in check["parts"]:
        column, variant = spec["metric"], spec["variant"]
        if spec.get("one_sample"):
            values, why = ctx.values(study, variant, column)
            part = sign_test(
                f"{label_of(column)} of {variant} {spec['direction']} 0",
                values.to_numpy(),
                spec["direction"],
                0.0,
                spec.get("margin", MARGIN),
                paper=spec.get("paper", NAN),
            )
        else:
            diff, why = paired_diff(ctx, study, variant, reference, column)
            name = f"Δ {label_of(column)} ({variant} - {reference})"
            if "equivalence" in spec:
                m, note = ctx.margin(study, column, spec["equivalence"])
                part = equivalence_test(f"|{name}| < {m:g}{note}", diff, -m, m, paper=spec.get("paper", NAN))
            elif "region" in spec:
                lo, hi = spec["region"]
                part = equivalence_test(f"{name} in [{lo:g}, {hi:g}]", diff, lo, hi, paper=spec.get("paper", NAN))
            else:
                threshold = spec.get("threshold", 0.0)
                # a stated threshold is the boundary itself; against 0 the smallest effect of interest draws it
                margin, note = (0.0, "") if threshold else ctx.margin(study, column, spec.get("margin", MARGIN))
                part = sign_test(
                    f"{name} {spec['direction']} {threshold:g}{note}",
                    diff,
                    spec["direction"],
                    threshold,
                    margin,
                    paper=spec.get("paper", NAN),
                )
        parts.append(with_shortfall(part, why))
    if "best" in check:
        parts += sweep_best(ctx, check["best"])
    if "largest_of" in check:
        parts += _largest_drop(ctx, check, check["parts"][0])
    return parts


def _larger_drop(ctx: Context, study: str, column: str, a: str, b: str) -> Part:
    """``a`` costs more than ``b`` (both ablations of one reference): ``a - b < 0`` per seed, paired.

    Region: beyond the smallest effect of interest (an order smaller than it is no order); contradicted when
    ``b``'s drop is not smaller by more than it.
    """
    diff, why = paired_diff(ctx, study, a, b, column)
    margin, note = ctx.margin(study, column, MARGIN)
    return with_shortfall(sign_test(f"{label_of(column)}: {a} below {b}{note}", diff, "<", 0.0, margin), why)


def _largest_drop(ctx: Context, check: dict[str, Any], spec: dict[str, Any]) -> list[Part]:
    """The variant's drop exceeds every other ablation's: one paired test against each (supported only if all are)."""
    return [_larger_drop(ctx, check["study"], spec["metric"], spec["variant"], other) for other in check["largest_of"]]


def forgetting_order(ctx: Context, check: dict[str, Any]) -> list[Part]:
    study, column = check["study"], check["metric"]
    parts = []
    for variant in check["zero"]:
        rows = ctx.rows(study, variant)
        ok = rows[rows["status"] == "ok"]
        if ok.empty:
            parts.append(
                Part(f"oracle forgetting of {variant} = 0", reason=shortfall(rows, study, variant) or "no finished run")
            )
            continue
        worst = worst_oracle_drop(ctx, ok["run_id"])
        parts.append(exact(f"oracle forgetting of {variant} = 0", worst == 0.0, worst, len(ok), paper=0.0))
    order = check["order"]
    for higher, lower in zip(order, order[1:]):
        parts.append(step(ctx, study, higher, lower, column))
    values, why = ctx.values(study, order[-1], column)
    parts.append(
        with_shortfall(sign_test(f"{label_of(column)} of {order[-1]} > 0", values.to_numpy(), ">", 0.0, MARGIN), why)
    )
    return parts


def strategy_order(ctx: Context, check: dict[str, Any]) -> list[Part]:
    study, column = check["study"], check["metric"]
    diff, why = paired_diff(ctx, study, check["reference"], check["equivalent"], column)
    m, _ = ctx.margin(study, column, check["margin"])
    parts = [
        with_shortfall(
            equivalence_test(
                f"|Δ {label_of(column)} ({check['reference']} - {check['equivalent']})| < {m:g}", diff, -m, m
            ),
            why,
        )
    ]
    order = check["order"]
    parts += [step(ctx, study, higher, lower, column) for higher, lower in zip(order, order[1:])]
    return parts


def ranking(ctx: Context, check: dict[str, Any]) -> list[Part]:
    """The paper's ranking of the ablations against the runs'.

    Kendall's tau between the paper's order and the drops, computed within each replicate (seed, task
    order) and averaged: the replicates carry the ranking's uncertainty (a tau of means would treat the
    means as exact); region tau > 0. Then the paper's first ``top`` ablations as the largest drops: each
    of them against each other ablation, one paired part per pair (supported when each named one costs
    more than each other; contradicted when another costs more than a named one, which cannot then be
    among the ``top``).
    """
    column, order, study = check["metric"], check["order"], check["study"]
    drops = {}
    for variant in order:
        a, _ = ctx.values(study, variant, column)
        b, _ = ctx.values(study, check["reference"], column)
        drops[variant] = (b - a).dropna()  # per replicate: how much removing the component costs
    common = sorted(set.intersection(*(set(d.index) for d in drops.values()))) if drops else []
    paper_rank = [float(r) for r in range(len(order), 0, -1)]  # the paper's order: first = largest drop
    taus = [float(stats.kendalltau(paper_rank, [drops[v][rep] for v in order]).statistic) for rep in common]
    label = f"Kendall tau (paper order vs {label_of(column)} drops), per replicate"
    part = t_part(label, np.asarray([t for t in taus if np.isfinite(t)]), (0.0, INF))
    part.units = "replicates (a tau each)"
    k = check["top"]
    named, others = order[:k], order[k:]
    return [part] + [_larger_drop(ctx, study, column, a, b) for a in named for b in others]


# ---------------------------------------------------------------------------------------- interaction (Table 8)
def _contrasts(ctx: Context, study: str, component: str, column: str) -> dict[str, Contrast]:
    """The component's blocked contrasts (:mod:`analysis.blocked`): the same numbers as Table 8's."""
    rows = ctx.rows(study)
    rows = rows[rows["variant"].str.startswith(f"{component}|")]
    ctx.reads.extend((study, variant) for variant in dict.fromkeys(rows["variant"]))
    return contrasts(design_frame(rows, column).dropna()) if not rows.empty else {}


def interaction(ctx: Context, check: dict[str, Any]) -> list[Part]:
    label = f"{check['component']}: interaction contrast ({label_of(check['metric'])}) " + (
        f"> {check['margin']:g}" if check["kind"] == "Integral" else f"within ±{check['margin']:g}"
    )
    found = _contrasts(ctx, check["study"], check["component"], check["metric"])
    return [contrast_part(label, found.get("interaction"), check["kind"], check["margin"])]


def simple_effects_parts(ctx: Context, check: dict[str, Any]) -> list[Part]:
    """Each component's effect (on - off) within a base arm, from that arm's own per-seed differences."""
    parts = []
    arms = {name: ["frozen"] for name in check["integral"]} | {
        name: ["frozen", "trainable"] for name in check["generic"]
    }
    for component, bases in arms.items():
        found = _contrasts(ctx, check["study"], component, check["metric"])
        for base in bases:
            margin, note = ctx.margin(check["study"], check["metric"], MARGIN)
            label = f"{component}: effect with the {base} base > {margin:g}"
            effect = found.get(f"simple:{base}")
            if effect is None or effect.n == 0:
                parts.append(Part(label, reason="a cell has no finished run"))
                continue
            if effect.n < 2:
                parts.append(Part(label, estimate=effect.estimate, n=effect.n, reason="n = 1: no interval"))
                continue
            part = pivot_part(
                label + note, effect.estimate, effect.se, effect.df, (margin, INF), effect.n, margin=margin
            )
            part.sd = effect.se * np.sqrt(effect.n)
            parts.append(part)
    return parts
