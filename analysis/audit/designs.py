"""Checks over designs of several levels: depths (Table 9), the sensitivity sweeps, image top-k
re-scored from the same models, and the sensitivity classes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.audit.context import MARGIN, Context, describe, label_of, paired_diff, run_values, step, with_shortfall
from analysis.audit.evidence import INF, NAN, Part, equivalence_test, exact, p_part, sign_test, slope_test, t_part
from analysis.sweeps import anova_tests, sweep_frames
from moleflow.continual.strategies import METHOD


def _depths(ctx: Context, study: str) -> dict[tuple[int, int], str]:
    out = {}
    for variant in dict.fromkeys(ctx.rows(study)["variant"]):
        try:
            m, n = (int(token[1:]) for token in str(variant).split())
        except ValueError:
            continue
        out[(m, n)] = variant
    return out


def _reference_depth(ctx: Context, depths: dict[tuple[int, int], str]) -> str | None:
    """The depth study's variant at the main study's depth (the schema's 6/2 when no run varies it)."""
    main = ctx.rows("main")
    cfg = [c for c in ("cfg.model.coupling_blocks", "cfg.model.dia_blocks") if c in main]
    if len(cfg) == 2 and not main[main["strategy"] == METHOD].empty:
        row = main[main["strategy"] == METHOD].iloc[0]
        return depths.get((int(row[cfg[0]]), int(row[cfg[1]])))
    return next((v for (m, n), v in depths.items() if (m, n) == (6, 2)), None)


def depth_best(ctx: Context, check: dict[str, Any]) -> list[Part]:
    """The reference depth above the all-coupling stack of its total depth and every all-DIA stack (paired
    steps), and no other depth above it: a non-inferiority guard per depth, region ``other - reference <
    margin``, supported only when the interval shows it."""
    study, column = check["study"], check["metric"]
    depths = _depths(ctx, study)
    reference = _reference_depth(ctx, depths)
    if reference is None:
        return [
            Part(
                "the reference depth is in the depth study",
                reason="the depth study has no variant at the main study's depth",
            )
        ]
    m0, n0 = next(k for k, v in depths.items() if v == reference)
    rivals = [v for (m, n), v in depths.items() if (m == m0 + n0 and n == 0) or (m == 0 and n > 0)]
    parts = [step(ctx, study, reference, rival, column) for rival in rivals]
    margin, note = ctx.margin(study, column, MARGIN)
    for other in depths.values():
        if other != reference and other not in rivals:
            diff, why = paired_diff(ctx, study, other, reference, column)
            label = f"{label_of(column)}: {other} not above {reference} by {margin:g} or more{note}"
            parts.append(with_shortfall(t_part(label, diff, (-INF, margin), margin=margin), why))
    if not rivals:
        parts.append(
            Part("an all-coupling or all-DIA rival is planned", reason="no variant M+N/0 or 0/N in the depth study")
        )
    return parts


def collapse(ctx: Context, check: dict[str, Any]) -> list[Part]:
    """``coupling_blocks`` coupling blocks collapse: their metric below the collapse level, scaled to the run's own
    reference depth as C35's depth is. The paper's collapse, ``below`` (0.70) against its reference
    ``paper_reference`` (0.979), lies a share ``(below - chance) / (paper_reference - chance)`` of the way from
    ``chance`` to the reference; per replicate the scaled level is ``chance`` plus that share of the way to the
    reference depth's value, and the part is the paired difference to it, region ``< 0``. Every run diverged
    (at least two): supported exactly."""
    study, column = check["study"], check["metric"]
    depths = _depths(ctx, study)
    variants = [v for (m, _), v in depths.items() if m == check["coupling_blocks"]]
    reference = _reference_depth(ctx, depths)
    share = (check["below"] - check["chance"]) / (check["paper_reference"] - check["chance"])
    label = f"{check['coupling_blocks']} coupling blocks below {share:.2f} of the way from chance to {reference}"
    if not variants or reference is None:
        return [
            Part(label, reason=f"no variant with {check['coupling_blocks']} coupling blocks, or no reference depth")
        ]
    rows = ctx.rows(study, variants[0])
    finished = rows[rows["status"].isin(["ok", "diverged"])]
    if len(finished) >= 2 and (finished["status"] == "diverged").all():
        return [exact(label, True, NAN, len(finished), f"{variants[0]}: every run diverged")]
    ours, why = ctx.values(study, variants[0], column)
    ref, why_ref = ctx.values(study, reference, column)
    both = pd.concat([ours.rename("a"), ref.rename("b")], axis=1, join="inner").dropna()
    levels = check["chance"] + share * (both["b"] - check["chance"])
    part = sign_test(label, (both["a"] - levels).to_numpy(dtype=float), "<", 0.0, 0.0)
    return [with_shortfall(part, why, why_ref)]


def _sweep(ctx: Context, name: str) -> tuple[pd.DataFrame | None, str]:
    frames = sweep_frames(ctx.runs, ctx.dataset)
    if name not in frames:
        return None, f"the sensitivity study has no {name} sweep"
    return frames[name], ""


def _level_variant(rows: pd.DataFrame, level: str) -> str | None:
    for value, variant in zip(rows["value"], rows["variant"]):
        clean = value.replace(" (default)", "")
        try:
            if float(clean) == float(level):
                return variant
        except ValueError:
            if clean == level:
                return variant
    return None


def _levels(rows: pd.DataFrame) -> dict[str, str]:
    """``{value: variant}`` in the rows' order; a variant planned at the default's own value is the default."""
    out: dict[str, str] = {}
    for value, variant in dict(zip(rows["value"], rows["variant"])).items():
        label = value.replace(" (default)", "")
        if value.endswith(" (default)") or label not in out:
            out[label] = variant
    return out


def sweep_best(ctx: Context, check: dict[str, Any]) -> list[Part]:
    rows, why = _sweep(ctx, check["sweep"])
    best = _level_variant(rows, check["best"]) if rows is not None else None
    if best is None:
        return [Part(f"{check['sweep']} {check['best']} best", reason=why or f"value {check['best']} not planned")]
    return [
        step(
            ctx,
            "sensitivity",
            best,
            other,
            check["metric"],
            label=f"{label_of(check['metric'])}: {check['sweep']} {check['best']} > {level}",
        )
        for level, other in _levels(rows).items()
        if other != best
    ]


def sweep_trend(ctx: Context, check: dict[str, Any]) -> list[Part]:
    rows, why = _sweep(ctx, check["sweep"])
    if rows is None:
        return [Part(f"{check['sweep']}: slope > 0", reason=why)]
    ok = rows[rows["status"] == "ok"]
    frame = pd.DataFrame(
        {
            "level": ok["value"].str.replace(" (default)", "", regex=False).astype(float),
            "block": ok["seed"].astype(str) + "/" + ok["order"].astype(str),
            "y": ok[check["metric"]].astype(float),
        }
    )
    return [slope_test(f"{label_of(check['metric'])}: slope on {check['sweep']} > 0", frame)] + sweep_best(ctx, check)


def sweep_order(ctx: Context, check: dict[str, Any]) -> list[Part]:
    rows, why = _sweep(ctx, check["sweep"])
    variants = [(_level_variant(rows, level) if rows is not None else None) for level in check["order"]]
    parts = []
    for (a, va), (b, vb) in zip(zip(check["order"], variants), list(zip(check["order"], variants))[1:]):
        label = f"{label_of(check['metric'])}: {check['sweep']} {a} > {b}"
        if va is None or vb is None:
            parts.append(Part(label, reason=why or f"value {a if va is None else b} not planned"))
        else:
            parts.append(step(ctx, "sensitivity", va, vb, check["metric"], label=label))
    return parts


def sweep_equivalent(ctx: Context, check: dict[str, Any]) -> list[Part]:
    rows, why = _sweep(ctx, check["sweep"])
    if rows is None:
        return [Part(f"{check['sweep']}: every value within ±{check['margin']:g} of the default", reason=why)]
    default = next(var for v, var in zip(rows["value"], rows["variant"]) if v.endswith("(default)"))
    m, parts = check["margin"], []
    for level, variant in _levels(rows).items():
        if variant == default:
            continue
        diff, short = paired_diff(ctx, "sensitivity", variant, default, check["metric"])
        parts.append(
            with_shortfall(
                equivalence_test(f"|Δ {label_of(check['metric'])} ({check['sweep']} {level})| < {m:g}", diff, -m, m),
                short,
            )
        )
    return parts or [Part(f"{check['sweep']}: a value besides the default", reason="only the default is planned")]


def rescored_equivalent(ctx: Context, check: dict[str, Any]) -> list[Part]:
    ref, why = run_values(ctx, check, f"rescored_image_auroc_top{check['reference']}")
    parts = []
    for level in check["levels"]:
        other, _ = run_values(ctx, check, f"rescored_image_auroc_top{level}")
        diff = other - ref if len(other) == len(ref) else np.array([])  # a column runs did not record: empty
        m, note = ctx.margin(check["study"], "image_auroc_routed", check["margin"])
        parts.append(
            with_shortfall(
                equivalence_test(
                    f"|Δ I-AUROC (image top-k {level} - {check['reference']})| < {m:g}{note}", diff, -m, m
                ),
                why,
            )
        )
    return parts


def _seed_spreads(rows: pd.DataFrame, column: str) -> pd.Series:
    """Per replicate ``(seed, order)`` with every value of the sweep finished: the spread (max - min) over the values."""
    ok = rows[rows["status"] == "ok"]
    table = ok.pivot_table(index=["seed", "order"], columns="value", values=column, aggfunc="first")
    table = table.dropna()
    return table.max(axis=1) - table.min(axis=1)


def sensitivity_classes(ctx: Context, check: dict[str, Any]) -> list[Part]:
    """The sweeps' spreads ordered by the paper's classes, each order tested; the highest class beyond seed noise.

    Per pair of adjacent classes, per sweep of the higher and sweep of the lower: the per-replicate spread
    (max - min over the sweep's values within a seed) of the higher minus the lower's, paired, region ``> 0``.
    Per sweep of the highest class: Table 10's test that it varies beyond seed noise (its one-way ANOVA p,
    Holm-adjusted across the sweeps as the table prints it), a part with that p for support.
    """
    frames = sweep_frames(ctx.runs, ctx.dataset)
    classes = check["classes"]
    for sweeps in classes.values():
        for sweep in sweeps:
            if sweep not in frames or frames[sweep]["value"].nunique() < 2:
                return [
                    Part(
                        "spreads ordered " + " > ".join(classes),
                        reason=f"sweep {sweep} has fewer than two values planned",
                    )
                ]
    spreads = {sweep: _seed_spreads(frames[sweep], check["metric"]) for sweeps in classes.values() for sweep in sweeps}
    parts = []
    names = list(classes)
    for high, low in zip(names, names[1:]):
        for a in classes[high]:
            for b in classes[low]:
                both = pd.concat([spreads[a].rename("a"), spreads[b].rename("b")], axis=1, join="inner").dropna()
                label = f"spread of {label_of(check['metric'])}: {a} ({high}) > {b} ({low})"
                part = sign_test(label, (both["a"] - both["b"]).to_numpy(dtype=float), ">", 0.0, 0.0)
                part.runs = f"{a}: {describe(frames[a])}; {b}: {describe(frames[b])}"
                parts.append(part)
    tests = anova_tests(frames)
    for sweep in classes[names[0]]:
        _, adjusted, note = tests.get(sweep, (NAN, NAN, "fewer than two values finished"))
        part = p_part(f"{sweep} varies beyond seed noise (Table 10's Holm-adjusted ANOVA p)", adjusted)
        part.reason, part.runs = note or part.reason, describe(frames[sweep])  # the ANOVA says why it is undefined
        parts.append(part)
    return parts
