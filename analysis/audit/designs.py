"""Checks over designs of several levels: depths (Table 9), the sensitivity sweeps, image top-k
re-scored from the same models, and the sensitivity classes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from analysis.audit.context import MARGIN, Context, label_of, paired_diff, run_values, shortfall, step, with_shortfall
from analysis.audit.evidence import NAN, Part, equivalence_test, exact, sign_test, slope_test
from analysis.stats import one_way_anova
from analysis.sweeps import sweep_frames

ALPHA = 0.05


def _depths(ctx: Context, study: str) -> dict[tuple[int, int], str]:
    out = {}
    for variant in dict.fromkeys(ctx.rows(study)["variant"]):
        try:
            m, n = (int(token[1:]) for token in str(variant).split())
        except ValueError:
            continue
        out[(m, n)] = variant
    return out


def depth_best(ctx: Context, check: dict[str, Any]) -> list[Part]:
    study, column = check["study"], check["metric"]
    depths = _depths(ctx, study)
    main = ctx.rows("main")
    reference = None
    cfg = [c for c in ("cfg.model.coupling_blocks", "cfg.model.dia_blocks") if c in main]
    if len(cfg) == 2 and not main[main["strategy"] == "frozen_base"].empty:
        row = main[main["strategy"] == "frozen_base"].iloc[0]
        reference = depths.get((int(row[cfg[0]]), int(row[cfg[1]])))
    if reference is None:  # the main study's depth is the schema default when no run varies it
        reference = next((v for (m, n), v in depths.items() if (m, n) == (6, 2)), None)
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
    for other in depths.values():
        if other != reference and other not in rivals:  # can only contradict: a depth significantly above the reference
            diff, _ = paired_diff(ctx, study, other, reference, column)
            part = sign_test(f"{label_of(column)}: {other} not above {reference}", diff, ">", 0.0, MARGIN)
            part.p_support, part.p_contradict, part.guard = NAN, part.p_support, True
            parts.append(part)
    if not rivals:
        parts.append(
            Part("an all-coupling or all-DIA rival is planned", reason="no variant M+N/0 or 0/N in the depth study")
        )
    return parts


def collapse(ctx: Context, check: dict[str, Any]) -> list[Part]:
    depths = _depths(ctx, check["study"])
    variants = [v for (m, _), v in depths.items() if m == check["coupling_blocks"]]
    label = (
        f"{check['coupling_blocks']} coupling blocks diverge or score {label_of(check['metric'])} < {check['below']}"
    )
    if not variants:
        return [Part(label, reason=f"no variant with {check['coupling_blocks']} coupling blocks planned")]
    rows = ctx.rows(check["study"], variants[0])
    finished = rows[rows["status"].isin(["ok", "diverged"])]
    if finished.empty:
        return [Part(label, reason=shortfall(rows, check["study"], variants[0]))]
    if len(finished) < 2:  # one run cannot tell a collapse from a bad seed, nor a survivor from a lucky one
        return [
            Part(
                label,
                n=1,
                reason=f"n = 1: {variants[0]} {finished['status'].iloc[0]} once; a single run decides nothing",
            )
        ]
    collapsed = [
        (s == "diverged") or (v < check["below"]) for s, v in zip(finished["status"], finished[check["metric"]])
    ]
    values = finished[check["metric"]].astype(float)
    if all(collapsed):
        return [exact(label, True, float(values.mean()), len(finished), f"{variants[0]}: {list(finished['status'])}")]
    if not any(collapsed):
        return [
            exact(
                label,
                False,
                float(values.mean()),
                len(finished),
                f"{variants[0]}: every run finished above {check['below']}",
            )
        ]
    return [Part(label, estimate=float(values.mean()), n=len(finished), reason="some runs collapsed, some did not")]


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
    return {v.replace(" (default)", ""): var for v, var in dict(zip(rows["value"], rows["variant"])).items()}


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
        diff = other - ref if len(other) == len(ref) else np.array([])
        m = check["margin"]
        parts.append(
            with_shortfall(
                equivalence_test(f"|Δ I-AUROC (image top-k {level} - {check['reference']})| < {m:g}", diff, -m, m), why
            )
        )
    return parts


def sensitivity_classes(ctx: Context, check: dict[str, Any]) -> list[Part]:
    frames = sweep_frames(ctx.runs, ctx.dataset)
    label = "spreads ordered " + " > ".join(check["classes"])
    spreads, thin = {}, []
    for cls, sweeps in check["classes"].items():
        for sweep in sweeps:
            rows = frames.get(sweep)
            if rows is None or rows["value"].nunique() < 2:
                return [Part(label, reason=f"sweep {sweep} has fewer than two values planned")]
            ok = rows[rows["status"] == "ok"]
            if ok.groupby("value").size().min() < 2:
                thin.append(sweep)
            means = ok.groupby("value")[check["metric"]].mean()
            spreads[(cls, sweep)] = float(means.max() - means.min())
    detail = ", ".join(f"{s} {v:.4f}" for (_, s), v in spreads.items())
    if thin:
        return [Part(label, reason=f"fewer than 2 seeds per value in {', '.join(thin)} ({detail})")]
    # whether a sweep's spread is more than seed noise: its one-way ANOVA over the values (seeds as replicates)
    real = {}
    for _cls, sweep in spreads:
        ok = frames[sweep][frames[sweep]["status"] == "ok"]
        p, _ = one_way_anova(ok, "value", check["metric"])
        real[sweep] = bool(np.isfinite(p) and p < ALPHA)
    classes = list(check["classes"])
    reversed_pairs = [
        (hi_s, lo_s)
        for hi, lo in zip(classes, classes[1:])
        for (c_hi, hi_s), v_hi in spreads.items()
        if c_hi == hi
        for (c_lo, lo_s), v_lo in spreads.items()
        if c_lo == lo and v_lo >= v_hi
    ]
    detail += "; spread beyond seed noise (one-way ANOVA p < 0.05): " + (
        ", ".join(s for s, r in real.items() if r) or "none"
    )
    if not reversed_pairs and all(real[s] for (c, s) in spreads if c == classes[0]):
        return [exact(label, True, NAN, len(spreads), detail)]
    if any(real[lo_s] for _, lo_s in reversed_pairs):  # a lower class's sweep varies for real at least as much
        return [exact(label, False, NAN, len(spreads), detail)]
    return [Part(label, n=len(spreads), reason=f"the spreads' order is not backed by their tests ({detail})")]
