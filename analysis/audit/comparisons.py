"""Checks that compare variants: paired differences, ratios, orderings of strategies, the ranking of
ablations, and the 2 x 2 interaction designs (Table 8)."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from analysis.audit.context import MARGIN, Context, label_of, paired_diff, shortfall, step, with_shortfall
from analysis.audit.designs import sweep_best
from analysis.audit.evidence import (
    NAN,
    NO_VARIANCE,
    Part,
    contrast_part,
    equivalence_test,
    exact,
    kendall_agreement,
    sign_test,
)
from analysis.blocked import Contrast, contrasts, design_frame


def _without_random_choice(ctx: Context, run_ids: list[str]) -> bool:
    """Whether these runs make no random choice, so one run stands for every seed: a memory-bank reference
    (``knn``) that keeps its whole bank (no coreset drawn)."""
    configs = [(ctx.summaries.get(r) or {}).get("config") or {} for r in run_ids]
    return bool(configs) and all(
        c.get("strategy", {}).get("name") == "knn" and c.get("strategy", {}).get("knn_coreset_ratio", 1.0) >= 1.0
        for c in configs
    )


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
        diff, why = paired_diff(ctx, study, variant, reference, column)
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
                margin, note = ctx.margin(study, column, spec.get("margin", 0.0 if threshold else MARGIN))
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

    Contradicted only when ``b``'s drop is significantly the larger one (no margin: an order, not an effect size).
    """
    diff, why = paired_diff(ctx, study, a, b, column)
    return with_shortfall(sign_test(f"{label_of(column)}: {a} below {b}", diff, "<", 0.0, 0.0), why)


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
        worst = 0.0
        for run_id in ok["run_id"]:
            oracle = (ctx.summaries.get(run_id) or {}).get("forgetting_oracle") or {}
            worst = max([worst] + [abs(v[k]) for v in oracle.values() for k in ("fm", "paper") if v[k] == v[k]])
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
    column, order = check["metric"], check["order"]
    drops = []
    for variant in order:
        diff, _ = paired_diff(ctx, check["study"], variant, check["reference"], column)
        drops.append(-float(np.mean(diff)) if len(diff) else NAN)
    paper_rank = [float(r) for r in range(len(order), 0, -1)]  # the paper's order: first = largest drop
    part = kendall_agreement(f"Kendall tau (paper order vs mean {label_of(column)} drops)", paper_rank, drops)
    return [part, _top_drops(ctx, check, drops)]


def _top_drops(ctx: Context, check: dict[str, Any], drops: list[float]) -> Part:
    """The paper's first ``top`` ablations are the ``top`` largest drops, decided by paired tests.

    Supported when each of them costs significantly more than each other ablation (an
    intersection-union test: the largest of those one-sided p-values); contradicted when
    none of them is among the largest: there are ``top`` other ablations that each cost
    significantly more than every one of them (the smallest, over such sets, of the largest p).
    """
    study, column, order, k = check["study"], check["metric"], check["order"], check["top"]
    named, others = order[:k], order[k:]
    label = f"{' and '.join(named)} the {k} largest drops"
    finite = [(d, v) for d, v in zip(drops, order) if np.isfinite(d)]
    if len(finite) < len(order):
        return Part(label, reason="an ablation has no finished pair")
    p = {(a, b): _larger_drop(ctx, study, column, a, b).p_support for a in order for b in order if a != b}
    largest = ", ".join(v for _, v in sorted(finite, reverse=True)[:k])
    mean = dict(zip(order, drops))
    # estimate: the smallest named drop minus the largest other one (> 0 when the named ones lead)
    part = Part(
        label,
        n=len(paired_diff(ctx, study, order[0], check["reference"], column)[0]),
        estimate=min(mean[v] for v in named) - max(mean[v] for v in others),
    )
    support = [p[(a, b)] for a in named for b in others]
    against = [max(p[(z, a)] for z in chosen for a in named) for chosen in combinations(others, k)]
    if not all(np.isfinite(v) for v in support + against):
        part.reason = f"fewer than 2 seeds or no variance in a pair (largest mean drops: {largest})"
        return part
    part.p_support, part.p_contradict = max(support), min(against)
    return part


# ---------------------------------------------------------------------------------------- interaction (Table 8)
def _contrasts(ctx: Context, study: str, component: str, column: str) -> dict[str, Contrast]:
    """The component's blocked contrasts (:mod:`analysis.blocked`): the same numbers as Table 8's."""
    rows = ctx.rows(study)
    rows = rows[rows["variant"].str.startswith(f"{component}|")]
    return contrasts(design_frame(rows, column).dropna()) if not rows.empty else {}


def interaction(ctx: Context, check: dict[str, Any]) -> list[Part]:
    label = f"{check['component']}: interaction contrast ({label_of(check['metric'])}) " + (
        "> 0" if check["kind"] == "Integral" else f"within ±{check['margin']:g}"
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
            label = f"{component}: effect with the {base} base > 0"
            effect = found.get(f"simple:{base}")
            if effect is None or effect.n == 0:
                parts.append(Part(label, reason="a cell has no finished run"))
                continue
            part = Part(label, estimate=effect.estimate, n=effect.n, sd=effect.se * np.sqrt(effect.n))
            if effect.n < 2:
                part.reason = "n = 1: no interval"
            elif not effect.testable:
                part.reason = NO_VARIANCE
            else:
                part.low, part.high = effect.interval()
                part.p_support, part.p_contradict = effect.p_greater(0.0), effect.p_less(MARGIN)
            parts.append(part)
    return parts
