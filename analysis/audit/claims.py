"""Evaluators of the registry's checks: from the runs to the :class:`Part` list of one claim.

Each evaluator reads what its registry entry names (study, variants, metric) from the
run-level table (one row per run: routed means over categories and run-level fields)
and the runs' summaries; replicates are seeds (and task orders), paired on
``(seed, order)``. An evaluator never decides a verdict: it returns the tested parts
(:mod:`analysis.audit.evidence`) and the verdict module decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from analysis.audit.evidence import (NAN, Part, contrast_part, equivalence_test, exact, interaction_contrast,
                                     kendall_agreement, sign_test, slope_test, welch_vs_paper)
from analysis.collect import Summaries
from analysis.stats import one_way_anova
from analysis.sweeps import sweep_frames
from moleflow.metrics.continual import METRICS

STUDY_FALLBACK = {"pilot": "strategies"}  # the default's strategies study is the five-task pilot
MARGIN = 0.005  # smallest effect of interest of a directional claim on a metric (0.5 pp), unless the entry sets one
LABELS = {"image_auroc_routed": "I-AUROC", "pixel_ap_routed": "P-AP", "pixel_auroc_routed": "P-AUROC",
          "forgetting_paper_image_auroc": "FM (paper) I-AUROC", "routing_accuracy": "routing accuracy"}


@dataclass
class Context:
    """What an evaluator reads: run-level rows of one dataset, the summaries, the plan record."""

    runs: pd.DataFrame
    summaries: Summaries
    plan: dict[str, Any]
    dataset: str

    def rows(self, study: str, variant: str | None = None) -> pd.DataFrame:
        """Run-level rows of ``study`` (``pilot`` falls back to ``strategies`` where no pilot is planned)."""
        mine = self.runs[self.runs["dataset"] == self.dataset]
        if study in STUDY_FALLBACK and (mine["study"] == study).sum() == 0:
            study = STUDY_FALLBACK[study]
        sub = mine[mine["study"] == study]
        return sub if variant is None else sub[sub["variant"] == variant]

    def values(self, study: str, variant: str, column: str) -> tuple[pd.Series, str]:
        """Per replicate ``(seed, order)``, ``column`` of the finished runs; and what is missing or diverged."""
        rows = self.rows(study, variant)
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


def _label(column: str) -> str:
    return LABELS.get(column, column)


def _with_shortfall(part: Part, *reasons: str) -> Part:
    extra = "; ".join(r for r in reasons if r)
    if extra and not part.status and (not np.isfinite(part.p_support) or part.reason):
        part.reason = "; ".join(r for r in (part.reason, extra) if r)
    elif extra:
        part.reason = "; ".join(r for r in (part.reason, extra) if r)
    return part


def paired_diff(ctx: Context, study: str, variant: str, reference: str, column: str) -> tuple[np.ndarray, str]:
    """``variant - reference`` per common replicate, and the shortfall of either."""
    a, why_a = ctx.values(study, variant, column)
    b, why_b = ctx.values(study, reference, column)
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    return (both["a"] - both["b"]).to_numpy(dtype=float), "; ".join(w for w in (why_a, why_b) if w)


def step(ctx: Context, study: str, higher: str, lower: str, column: str, margin: float = MARGIN,
         label: str | None = None) -> Part:
    """``higher > lower`` on ``column``, paired (a one-sided step of an ordering)."""
    diff, why = paired_diff(ctx, study, higher, lower, column)
    part = sign_test(label or f"{_label(column)}: {higher} > {lower}", diff, ">", 0.0, margin)
    return _with_shortfall(part, why)


# ---------------------------------------------------------------------------------------- forgetting and structure
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
        routed_fm.append(max(abs(v["fm"]) for v in summary["forgetting"].values() if v["fm"] == v["fm"]) if summary else NAN)
        misrouted.append(1.0 - float(summary.get("routing_accuracy") or 1.0))
    detail = (f"{cells} later oracle cells of {len(ok)} run(s), {differing} differ from the cell right after training; "
              f"largest routed |FM| {np.nanmax(routed_fm) if routed_fm else NAN:.4f} with misrouted share up to "
              f"{max(misrouted) if misrouted else NAN:.4f}")
    if not cells:
        return [_with_shortfall(Part("oracle R[j][i] = R[i][i] for j > i", reason="no finished run with two tasks or more"),
                                shortfall(rows, check["study"], check["variant"]))]
    parts = [exact("oracle R[j][i] = R[i][i] for j > i", differing == 0, float(differing), len(ok), detail, paper=0.0)]
    unexplained = [fm for fm, miss in zip(routed_fm, misrouted) if fm > 0 and miss == 0]
    parts.append(exact("routed forgetting only with misrouted images", not unexplained, float(len(unexplained)), len(ok),
                       f"{len(unexplained)} of {len(ok)} run(s) forget when routed without misrouting an image"))
    return parts


def fingerprints_unchanged(ctx: Context, check: dict[str, Any]) -> list[Part]:
    ids = ctx.runs[(ctx.runs["dataset"] == ctx.dataset) & (ctx.runs["strategy"] == check["strategy"])
                   & (ctx.runs["status"] == "ok")]["run_id"].unique()
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
            changed += [f"{run_id}: task {t} after task {j}" for t in range(j) if record["tasks"][t] != records[t]["tasks"][t]]
    if not runs:
        return [Part("base and earlier tasks' digests unchanged", reason="no finished multi-task run with fingerprints")]
    detail = f"{checked} digests re-checked over {runs} run(s)" + (f"; changed: {', '.join(changed[:3])}" if changed else "")
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
            worst["log-det vs autograd (relative)"] = max(worst["log-det vs autograd (relative)"], inv["relative_logdet_autograd"])
    if not tasks:
        return [Part("invertibility checks", reason="no finished run recorded them")]
    return [exact(f"{name} <= {tol:g}", value <= tol, value, tasks, f"largest {value:.2e} over {tasks} task checks")
            for name, value in worst.items()]


def single_pass(ctx: Context, check: dict[str, Any]) -> list[Part]:
    ok = ctx.rows(check["study"])
    ok = ok[ok["status"] == "ok"]
    passes = [((ctx.summaries.get(r) or {}).get("inference") or {}).get("backbone_passes_per_test_image") for r in ok["run_id"]]
    known = [p for p in passes if p is not None]
    if not known:
        return [Part("backbone passes per test image = 1", reason="no run recorded the count (features cached before it was kept)")]
    return [exact("backbone passes per test image = 1", all(p == 1.0 for p in known), max(known), len(known),
                  f"{min(known):g} to {max(known):g} over {len(known)} run(s)", paper=1.0)]


def parameter_overhead(ctx: Context, check: dict[str, Any]) -> list[Part]:
    from analysis.audit.paper_check import overhead_at_table2

    counts = overhead_at_table2(check["ranks"])
    pct = counts["overhead_pct"]
    parts = [exact(f"per-task / base parameters in [{check['low']}, {check['high']}]%", check["low"] <= pct <= check["high"],
                   pct, 1, f"{counts['per_task']:,} / {counts['base']:,} = {pct:.1f}% (without DIA {counts['without_dia_pct']:.1f}%)",
                   paper=8.0)]
    parts.append(exact("per-task parameters affine in the rank", counts["affine"], NAN, len(check["ranks"]),
                       "per-task counts at ranks " + ", ".join(f"{r}: {c:,}" for r, c in counts["by_rank"].items())))
    return parts


# ---------------------------------------------------------------------------------------- headline numbers
def _run_values(ctx: Context, check: dict[str, Any], column: str) -> tuple[np.ndarray, str]:
    series, why = ctx.values(check["study"], check["variant"], column)
    return series.to_numpy(dtype=float), why


def welch_paper(ctx: Context, check: dict[str, Any]) -> list[Part]:
    values, why = _run_values(ctx, check, check["metric"])
    part = welch_vs_paper(f"{_label(check['metric'])} vs {check['mean']} ± {check['sd']} (n={check['n']})", values,
                          check["mean"], check["sd"], check["n"])
    return [_with_shortfall(part, why)]


def interval_contains(ctx: Context, check: dict[str, Any]) -> list[Part]:
    parts = []
    for column, paper in check["values"].items():
        values, why = _run_values(ctx, check, column)
        tol = check["tolerance"][column]
        part = Part(f"{_label(column)} interval ± {tol:g} contains {paper}", n=len(values), paper=paper)
        if len(values) >= 2:
            part = sign_test(part.label, values, ">", paper - tol, paper=paper)  # for the interval only
            lo, hi = part.low - tol, part.high + tol
            part.p_support = part.p_contradict = NAN
            part.status = "supported" if lo <= paper <= hi else "contradicted"
        else:
            part.reason = "n < 2: no interval"
        parts.append(_with_shortfall(part, why))
    return parts


def interval_lower_at_least(ctx: Context, check: dict[str, Any]) -> list[Part]:
    values, why = _run_values(ctx, check, check["metric"])
    part = sign_test(f"{_label(check['metric'])} > {check['minimum']}", values, ">", check["minimum"], 0.0)
    return [_with_shortfall(part, why)]


def routing_at_least(ctx: Context, check: dict[str, Any]) -> list[Part]:
    values, why = _run_values(ctx, check, "routing_accuracy")
    if not len(values):
        return [Part(f"routing accuracy >= {check['minimum']}", reason=why or "no finished run")]
    return [exact(f"routing accuracy >= {check['minimum']} in every run", bool(np.all(values >= check["minimum"])),
                  float(values.min()), len(values), f"lowest {values.min():.4f}", paper=check["minimum"])]


def router_ablation(ctx: Context, check: dict[str, Any]) -> list[Part]:
    maha, why = _run_values(ctx, check, "routing_accuracy")
    eucl, _ = _run_values(ctx, check, "routing_accuracy_euclidean")
    label = "Δ routing accuracy (Mahalanobis - Euclidean) > 0"
    if len(maha) and len(eucl) == len(maha) and np.all(maha == 1.0) and np.all(eucl == 1.0):
        return [Part(label, estimate=0.0, n=len(maha), reason="both routers route every test image correctly: no room to differ",
                     paper=0.04)]
    return [_with_shortfall(sign_test(label, maha - eucl if len(eucl) == len(maha) else np.array([]), ">", 0.0, 0.0,
                                      paper=0.04), why)]


# ---------------------------------------------------------------------------------------- comparisons of variants
def ratio(ctx: Context, check: dict[str, Any]) -> list[Part]:
    a, why_a = ctx.values(check["study"], check["numerator"], check["metric"])
    b, why_b = ctx.values(check["study"], check["denominator"], check["metric"])
    both = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    ratios = (both["a"] / both["b"]).to_numpy(dtype=float)
    part = equivalence_test(f"{_label(check['metric'])} ratio {check['numerator']} / {check['denominator']} in "
                            f"[{check['low']}, {check['high']}]", ratios, check["low"], check["high"], paper=0.987)
    part.origin = 1.0
    return [_with_shortfall(part, why_a, why_b)]


def paired(ctx: Context, check: dict[str, Any]) -> list[Part]:
    study, reference = check["study"], check["reference"]
    parts = []
    for spec in check["parts"]:
        column, variant = spec["metric"], spec["variant"]
        if spec.get("one_sample"):
            values, why = ctx.values(study, variant, column)
            part = sign_test(f"{_label(column)} of {variant} {spec['direction']} 0", values.to_numpy(), spec["direction"], 0.0,
                             spec.get("margin", MARGIN), paper=spec.get("paper", NAN))
        else:
            diff, why = paired_diff(ctx, study, variant, reference, column)
            name = f"Δ {_label(column)} ({variant} - {reference})"
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
        parts.append(_with_shortfall(part, why))
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
    label = f"mean Δ {_label(column)} of {spec['variant']} below every other ablation's"
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
    parts.append(_with_shortfall(sign_test(f"{_label(column)} of {order[-1]} > 0", values.to_numpy(), ">", 0.0, MARGIN), why))
    return parts


def strategy_order(ctx: Context, check: dict[str, Any]) -> list[Part]:
    study, column = check["study"], check["metric"]
    diff, why = paired_diff(ctx, study, check["reference"], check["equivalent"], column)
    m = check["margin"]
    parts = [_with_shortfall(equivalence_test(f"|Δ {_label(column)} ({check['reference']} - {check['equivalent']})| < {m:g}",
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
    part = kendall_agreement(f"Kendall tau (paper order vs mean {_label(column)} drops)", paper_rank, drops)
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
    label = (f"{check['component']}: interaction contrast ({_label(check['metric'])}) "
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


# ---------------------------------------------------------------------------------------- depth and sweeps
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
        return [Part("the reference depth is in the depth study", reason="the depth study has no variant at the main study's depth")]
    m0, n0 = next(k for k, v in depths.items() if v == reference)
    rivals = [v for (m, n), v in depths.items() if (m == m0 + n0 and n == 0) or (m == 0 and n > 0)]
    parts = [step(ctx, study, reference, rival, column) for rival in rivals]
    for (m, n), other in depths.items():
        if other != reference and other not in rivals:  # can only contradict: a depth significantly above the reference
            diff, why = paired_diff(ctx, study, other, reference, column)
            part = sign_test(f"{_label(column)}: {other} not above {reference}", diff, ">", 0.0, MARGIN)
            part.p_support, part.p_contradict, part.guard = NAN, part.p_support, True
            parts.append(part)
    if not rivals:
        parts.append(Part("an all-coupling or all-DIA rival is planned", reason="no variant M+N/0 or 0/N in the depth study"))
    return parts


def collapse(ctx: Context, check: dict[str, Any]) -> list[Part]:
    depths = _depths(ctx, check["study"])
    variants = [v for (m, _), v in depths.items() if m == check["coupling_blocks"]]
    label = f"{check['coupling_blocks']} coupling blocks diverge or score {_label(check['metric'])} < {check['below']}"
    if not variants:
        return [Part(label, reason=f"no variant with {check['coupling_blocks']} coupling blocks planned")]
    rows = ctx.rows(check["study"], variants[0])
    finished = rows[rows["status"].isin(["ok", "diverged"])]
    if finished.empty:
        return [Part(label, reason=shortfall(rows, check["study"], variants[0]))]
    collapsed = [(s == "diverged") or (v < check["below"]) for s, v in zip(finished["status"], finished[check["metric"]])]
    values = finished[check["metric"]].astype(float)
    if all(collapsed):
        return [exact(label, True, float(values.mean()), len(finished), f"{variants[0]}: {list(finished['status'])}")]
    if not any(collapsed):
        return [exact(label, False, float(values.mean()), len(finished), f"{variants[0]}: every run finished above {check['below']}")]
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
    return [step(ctx, "sensitivity", best, other, check["metric"], label=f"{_label(check['metric'])}: {check['sweep']} "
                 f"{check['best']} > {level}") for level, other in _levels(rows).items() if other != best]


def sweep_trend(ctx: Context, check: dict[str, Any]) -> list[Part]:
    rows, why = _sweep(ctx, check["sweep"])
    if rows is None:
        return [Part(f"{check['sweep']}: slope > 0", reason=why)]
    ok = rows[rows["status"] == "ok"]
    frame = pd.DataFrame({"level": ok["value"].str.replace(" (default)", "", regex=False).astype(float),
                          "block": ok["seed"].astype(str) + "/" + ok["order"].astype(str), "y": ok[check["metric"]].astype(float)})
    return [slope_test(f"{_label(check['metric'])}: slope on {check['sweep']} > 0", frame)] + sweep_best(ctx, check)


def sweep_order(ctx: Context, check: dict[str, Any]) -> list[Part]:
    rows, why = _sweep(ctx, check["sweep"])
    variants = [(_level_variant(rows, level) if rows is not None else None) for level in check["order"]]
    parts = []
    for (a, va), (b, vb) in zip(zip(check["order"], variants), list(zip(check["order"], variants))[1:]):
        label = f"{_label(check['metric'])}: {check['sweep']} {a} > {b}"
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
        parts.append(_with_shortfall(equivalence_test(f"|Δ {_label(check['metric'])} ({check['sweep']} {level})| < {m:g}",
                                                      diff, -m, m), short))
    return parts or [Part(f"{check['sweep']}: a value besides the default", reason="only the default is planned")]


def rescored_equivalent(ctx: Context, check: dict[str, Any]) -> list[Part]:
    ref, why = _run_values(ctx, check, f"rescored_image_auroc_top{check['reference']}")
    parts = []
    for level in check["levels"]:
        other, _ = _run_values(ctx, check, f"rescored_image_auroc_top{level}")
        diff = other - ref if len(other) == len(ref) else np.array([])
        m = check["margin"]
        parts.append(_with_shortfall(equivalence_test(f"|Δ I-AUROC (image top-k {level} - {check['reference']})| < {m:g}",
                                                      diff, -m, m), why))
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
    classes = list(check["classes"])
    holds = all(min(v for (c, _), v in spreads.items() if c == hi) > max(v for (c, _), v in spreads.items() if c == lo)
                for hi, lo in zip(classes, classes[1:]))
    return [exact(label, holds, NAN, len(spreads), detail)]


def order_robust(ctx: Context, check: dict[str, Any]) -> list[Part]:
    rows = ctx.rows(check["study"])
    orders = sorted(set(rows["order"].dropna()))
    ok = rows[rows["status"] == "ok"]
    worst = 0.0
    for run_id in ok["run_id"]:
        oracle = (ctx.summaries.get(run_id) or {}).get("forgetting_oracle") or {}
        worst = max([worst] + [abs(v[k]) for v in oracle.values() for k in ("fm", "paper") if v[k] == v[k]])
    parts = [exact("oracle forgetting 0 in every order", worst == 0.0, worst, len(ok), f"{len(orders)} order(s)")]
    if len(orders) < check["minimum_orders"]:
        parts.append(Part(f"at least {check['minimum_orders']} orders", n=len(orders),
                          reason=f"{len(orders)} order(s) planned (rule: {check['minimum_orders']})"))
    return parts


def order_note(ctx: Context, check: dict[str, Any]) -> str:
    ok = ctx.rows(check["study"])
    ok = ok[ok["status"] == "ok"]
    if ok["order"].nunique() < 2:
        return ""
    p, why = one_way_anova(ok, "order", check["metric"])
    return f"one-way ANOVA of {_label(check['metric'])} on the order: p {p:.3f}" if np.isfinite(p) else f"ANOVA on the order: {why}"


def paper_best(ctx: Context, check: dict[str, Any]) -> list[Part]:
    from analysis.audit.paper_check import best_continual

    parts = []
    for table in check["tables"]:
        found = best_continual(table)
        if found is None:
            continue
        ours, best_method, best_value = found
        parts.append(exact(f"Table {table}: Ours' average ({ours:.3f}) the highest continual average", ours >= best_value,
                           ours - best_value, 1, f"{best_method} {best_value:.3f} (the paper's own rows)", paper=ours))
    return parts


EVALUATORS: dict[str, Callable[[Context, dict[str, Any]], list[Part]]] = {
    "zero_forgetting": zero_forgetting, "fingerprints_unchanged": fingerprints_unchanged, "invertible": invertible,
    "single_pass": single_pass, "parameter_overhead": parameter_overhead, "welch_vs_paper": welch_paper,
    "interval_contains": interval_contains, "interval_lower_at_least": interval_lower_at_least,
    "routing_at_least": routing_at_least, "router_ablation": router_ablation, "ratio": ratio, "paired": paired,
    "forgetting_order": forgetting_order, "strategy_order": strategy_order, "ranking": ranking,
    "interaction": interaction, "simple_effects": simple_effects_parts, "depth_best": depth_best, "collapse": collapse,
    "sweep_best": sweep_best, "sweep_trend": sweep_trend, "sweep_order": sweep_order, "sweep_equivalent": sweep_equivalent,
    "rescored_equivalent": rescored_equivalent, "sensitivity_classes": sensitivity_classes, "order_robust": order_robust,
    "paper_best": paper_best,
}
