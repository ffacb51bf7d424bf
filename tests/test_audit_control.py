"""The audit as a confirmatory analysis: every run of a configuration counts, one interval decides each part,
the error is controlled over the whole audit, no decision without a test, and the registry is dated.

Each case is a small fixture with its answer computed by hand.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from tests_helpers import validated, verdict_of

from analysis.audit import parts_frame, registration_note, registrations, registry
from analysis.audit.context import Context, describe
from analysis.audit.evidence import INF, Part, p_part, sign_test, t_part
from analysis.audit.verdicts import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Outcome, audit_level, bh_selected, decide
from analysis.collect import RecordedRun, configuration_key, memberships
from moleflow.planning.plan import plan_runs

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ runs by configuration
def _run(run_id: str, seed: int, study: str, variant: str, lr: float = 0.001) -> RecordedRun:
    config = {"seed": seed, "training": {"lr": lr}, "model": {"dia_blocks": 2}}
    return RecordedRun(run_id, "d", seed, "alphabetical", [(study, variant)], config)


def test_a_variant_reads_every_run_of_its_configuration_whatever_study_planned_it() -> None:
    runs = {
        "a0": _run("a0", 0, "ablation", "MoLE-Flow"),
        "a1": _run("a1", 1, "ablation", "MoLE-Flow"),
        "i2": _run("i2", 2, "interaction", "WA|frozen|on"),  # the same configuration, seed 2
        "o2": _run("o2", 2, "other", "x", lr=0.01),  # another configuration
    }
    assert configuration_key(runs["a0"].config) == configuration_key(runs["i2"].config)
    found = {(r.run_id, study, variant, by) for r, study, variant, by in memberships({k: runs[k] for k in runs})}
    assert ("i2", "ablation", "MoLE-Flow", "interaction") in found  # lent to the ablation
    assert ("a0", "interaction", "WA|frozen|on", "ablation") in found  # and the other way round
    assert not any(r == "o2" and s != "other" for r, s, _, _ in found)


def test_a_study_reads_every_seed_of_its_configurations_whatever_study_planned_them() -> None:
    """The ablation plans seeds 0-1, the interaction study seeds 0-2 of the same two configurations (its frozen
    cells): the ablation reads three seed pairs, seed 2 lent by the interaction study (C23 on the release before)."""
    import copy

    from analysis_fixture import WORKFLOW

    workflow: Any = copy.deepcopy(WORKFLOW)
    workflow["studies"]["ablation"] = {
        "seeds": [0, 1],
        "variants": [{"name": "MoLE-Flow"}, {"name": "w/o WA", "set": {"model.whitening": False}}],
    }
    workflow["studies"]["interaction"]["seeds"] = [0, 1, 2]
    plan = plan_runs(validated(workflow))
    recorded = {
        r.run_id: RecordedRun(r.run_id, r.dataset, r.seed, r.order, r.memberships, r.config) for r in plan.values()
    }
    found = [(r.seed, lender) for r, study, v, lender in memberships(recorded) if study == "ablation"]
    seeds = {
        variant: sorted({r.seed for r, study, v, _ in memberships(recorded) if study == "ablation" and v == variant})
        for variant in ("MoLE-Flow", "w/o WA")
    }
    assert seeds == {"MoLE-Flow": [0, 1, 2], "w/o WA": [0, 1, 2]}
    lenders = [lender for seed, lender in found if seed == 2]
    assert len(lenders) == 2 and all("interaction" in lender for lender in lenders)  # and the others holding it
    assert all(lender == "" for seed, lender in found if seed < 2)  # its own seeds are its own


def test_each_part_says_which_runs_entered() -> None:
    rows = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d"],
            "seed": [0, 1, 2, 3],
            "order": ["alphabetical"] * 4,
            "status": ["ok", "ok", "ok", "diverged"],
            "planned_by": ["", "", "interaction, sensitivity", ""],
        }
    )
    assert describe(rows) == "seeds 0, 1, 2 (seed 2 planned by interaction, sensitivity)"


# ------------------------------------------------------------------------------------------ one interval, three regions
def test_benjamini_hochberg_sets_one_level_for_every_interval() -> None:
    pvalues = [0.001, 0.01, 0.02, 0.04, 0.3]  # k q / m = 0.01, 0.02, 0.03, 0.04, 0.05: the fourth is the last below
    assert bh_selected(pvalues, 0.05) == 4 and bh_selected([0.2, 0.4], 0.05) == 0
    outcomes = [Outcome(f"C{i}", "f", "d", parts=[p_part(f"p{i}", p / 2)]) for i, p in enumerate(pvalues)]
    level = audit_level(outcomes, 0.05)
    assert (level.m, level.selected) == (5, 4) and level.a == pytest.approx(4 * 0.05 / (2 * 5))
    for outcome in outcomes:
        decide(outcome, level)
    # exactly the selected parts are decided (their p_part = p, at most R q / m = 0.04)
    assert [o.verdict for o in outcomes] == [SUPPORTED] * 4 + [INCONCLUSIVE]


def test_the_interval_decides_and_no_part_is_both_supported_and_contradicted() -> None:
    rng = np.random.default_rng(3)
    regions = [(-INF, -0.005), (0.005, INF), (-0.01, 0.01), (-0.03, INF)]
    for _ in range(300):
        values = rng.normal(rng.uniform(-0.03, 0.03), rng.uniform(0.001, 0.03), size=rng.integers(2, 7))
        region = regions[rng.integers(len(regions))]
        part = t_part("x", values, region)
        for a in (0.001, 0.01, 0.025, 0.1):
            low, high = part.interval(a)
            decision = part.decide(a)
            inside = region[0] < low and high < region[1]
            outside = high <= region[0] or low >= region[1]
            assert decision == (SUPPORTED if inside else CONTRADICTED if outside else INCONCLUSIVE)


def test_a_negligible_true_effect_never_supports_a_claim_of_an_effect() -> None:
    """The old rules tested support beyond 0 and contradiction within the margin: at 5 seeds a -0.1 pp effect could
    reject both. Now the region of "Δ < 0" lies beyond the margin, and the band up to it contradicts."""
    values = np.array([-0.0012, -0.0009, -0.0011, -0.0008, -0.0010])
    part = sign_test("Δ < 0", values, "<", 0.0, 0.005)
    old_support = stats.ttest_1samp(values, 0.0, alternative="less").pvalue
    assert old_support < 0.001  # significant beyond 0: the old rule's support side rejected too
    assert part.decide(0.025) == CONTRADICTED and part.p_support > 0.999


def test_a_guard_passes_only_on_an_interval_that_shows_it() -> None:
    """C35's guard "M16 N2 not above M4 N2": +0.022 [-0.149, +0.194] counted as support; it is inconclusive now."""
    wide = t_part("not above", np.array([0.11, -0.066]), (-INF, 0.005))  # mean +0.022
    assert wide.estimate == pytest.approx(0.022) and verdict_of(wide) == INCONCLUSIVE
    narrow = t_part("not above", np.array([-0.02, -0.021, -0.019, -0.022]), (-INF, 0.005))
    assert verdict_of(narrow) == SUPPORTED
    # a guard is contradicted, by hand: mean 0.04, SD 0.001 on 4 values, far above the margin at any level
    values = np.array([0.039, 0.041, 0.040, 0.040])
    above = t_part("not above", values, (-INF, 0.005))
    t = (values.mean() - 0.005) / (values.std(ddof=1) / 2)
    assert above.p_contradict == pytest.approx(stats.t.sf(t, 3), rel=1e-9) and verdict_of(above) == CONTRADICTED
    assert verdict_of(narrow, above) == CONTRADICTED  # one contradicted guard contradicts the claim


def test_a_stated_threshold_is_the_boundary_whatever_the_metrics_resolution() -> None:
    """C28: "removing DIA costs more than 3 pp". A margin raised to the resolution once moved the contradiction
    boundary to -3.28 pp, inside the claim's own region; a drop of 3.1 pp must not contradict it."""
    from analysis.audit.comparisons import paired

    rows = [
        {"study": "ablation", "variant": v, "dataset": "d", "run_id": f"{v}{s}", "seed": s, "order": "a", "status": "ok",
         "image_auroc_routed": 0.9 - (d if v == "w/o DIA" else 0.0) + 0.0001 * s}
        for v, d in (("MoLE-Flow", 0.0), ("w/o DIA", 0.031)) for s in range(4)
    ]  # fmt: skip
    counts = {"test_counts": {"a": {"normal": 3, "anomalous": 4}, "b": {"normal": 3, "anomalous": 4}}}
    ctx = Context(
        pd.DataFrame(rows),
        {f"{v}{s}": {"dataset": counts} for v in ("MoLE-Flow", "w/o DIA") for s in range(4)},
        "d",
    )
    check = {"study": "ablation", "reference": "MoLE-Flow",
             "parts": [{"variant": "w/o DIA", "metric": "image_auroc_routed", "direction": "<", "threshold": -0.03}]}  # fmt: skip
    assert ctx.resolution("ablation", "image_auroc_routed") > 0.02
    (part,) = paired(ctx, check)
    assert part.region == (-INF, -0.03) and "raised" not in part.label
    assert part.decide(0.025) != CONTRADICTED


# ------------------------------------------------------------------------------------------ no decision without a test
def _depth_context(values: dict[str, list[float]]) -> Context:
    rows = [
        {"study": "depth", "variant": v, "dataset": "d", "run_id": f"{v}{s}", "seed": s, "order": "a", "status": "ok",
         "strategy": "frozen_base", "image_auroc_routed": x}
        for v, xs in values.items() for s, x in enumerate(xs)
    ]  # fmt: skip
    return Context(pd.DataFrame(rows), {}, "d")


def test_c36s_collapse_level_is_scaled_to_the_reference_and_tested() -> None:
    from analysis.audit.designs import collapse

    check = {"study": "depth", "coupling_blocks": 16, "metric": "image_auroc_routed", "below": 0.70,
             "paper_reference": 0.979, "chance": 0.5}  # fmt: skip
    reference, deep = [0.80, 0.82, 0.81], [0.60, 0.61, 0.59]
    (part,) = collapse(_depth_context({"M6 N2": reference, "M16 N2": deep}), check)
    share = (0.70 - 0.5) / (0.979 - 0.5)
    by_hand = np.array(deep) - (0.5 + share * (np.array(reference) - 0.5))
    assert part.estimate == pytest.approx(by_hand.mean()) and part.region[1] == pytest.approx(0.0)
    assert verdict_of(part) == SUPPORTED  # 0.60 lies below 0.5 + 0.418 x 0.31 = 0.629
    (above,) = collapse(_depth_context({"M6 N2": reference, "M16 N2": [0.75, 0.76, 0.74]}), check)
    assert verdict_of(above) == CONTRADICTED  # the paper's 0.70 alone would have called 0.75 no collapse too, untested


def test_c43_reads_table_10s_adjusted_anova_p() -> None:
    from analysis.audit.designs import sensitivity_classes
    from analysis.sweeps import anova_tests, sweep_frames

    rng = np.random.default_rng(0)
    rows = []
    for sweep, effect in (("tail_weight", 0.05), ("top_k_ratio", 0.0)):
        for level, shift in (("0.0", 0.0), ("1.0", effect)):
            for seed in range(3):
                rows.append({"study": "sensitivity", "variant": f"{sweep} {level}", "dataset": "d", "run_id": f"{sweep}{level}{seed}",
                             "seed": seed, "order": "a", "status": "ok", "pixel_ap_routed": 0.4 + shift + 0.002 * rng.standard_normal()})  # fmt: skip
    for seed in range(3):
        rows.append({"study": "sensitivity", "variant": "default", "dataset": "d", "run_id": f"default{seed}", "seed": seed,
                     "order": "a", "status": "ok", "pixel_ap_routed": 0.4 + 0.002 * rng.standard_normal()})  # fmt: skip
    frame = pd.DataFrame(rows)
    ctx = Context(frame, {}, "d")
    parts = sensitivity_classes(
        ctx, {"classes": {"High": ["tail_weight"], "Low": ["top_k_ratio"]}, "metric": "pixel_ap_routed"}
    )
    tests = anova_tests(sweep_frames(frame, "d"))
    varies = next(p for p in parts if "varies" in p.label)
    assert varies.p_support == pytest.approx(tests["tail_weight"][1])  # the Holm-adjusted p Table 10 prints
    order = next(p for p in parts if "spread" in p.label)
    assert order.n == 3 and order.region == (0.0, INF)


# ------------------------------------------------------------------------------------------ what is printed and written
def test_the_printed_interval_is_the_deciding_one_and_the_parts_file_agrees() -> None:
    parts = [sign_test("Δ < 0", np.array([-0.05, -0.06, -0.055]), "<", 0.0, 0.005), Part("x", reason="no pair")]
    outcome = Outcome("C1", "f", "d", parts=parts)
    level = audit_level([outcome], 0.05)
    decide(outcome, level)
    low, high = parts[0].interval(level.a)
    assert (parts[0].low, parts[0].high, parts[0].level) == pytest.approx((low, high, 1 - 2 * level.a))
    assert f"[{low:+.4f}, {high:+.4f}] ({1 - 2 * level.a:.1%})" in parts[0].shown()
    frame = parts_frame([outcome], level)
    assert list(frame["decision"]) == [SUPPORTED, INCONCLUSIVE] and frame["audit_level"].iloc[0] == level.a
    inside = (frame["low"] > frame["region_low"]) & (frame["high"] < frame["region_high"])
    assert list(inside) == [True, False]


def test_the_registry_is_dated_by_a_committed_registration() -> None:
    reg = registry()
    lines = registrations()
    assert any(line["sha256"] == reg["sha256"] and int(line["version"]) == reg["version"] for line in lines)
    assert registration_note(reg).startswith("; registered 20")
    assert "NOT REGISTERED" in registration_note({**reg, "sha256": "000000000000"})
    versions = [int(line["version"]) for line in lines]
    assert versions == sorted(versions) and len({line["sha256"] for line in lines}) == len(lines)


def test_a_part_from_a_test_without_an_interval_is_decided_by_its_p_values() -> None:
    assert p_part("x", 0.001).decide(0.01) == SUPPORTED
    assert p_part("x", 0.5, 0.001).decide(0.01) == CONTRADICTED
    assert math.isnan(p_part("x", float("nan")).p_part) and "undefined" in p_part("x", float("nan")).reason


def test_every_logged_deviation_names_a_registered_version_and_claim_and_shows_in_the_rule() -> None:
    from analysis.audit import deviation_note, deviations

    reg = registry()
    ids = {entry["id"] for entry in reg["claims"]} | {"*"}
    registered = {line["version"] for line in registrations()}
    logged = deviations()
    assert logged and all(d["claim"] in ids and d["version"] in registered for d in logged)
    after_results = {
        line["version"] for line in registrations() if line["when"].startswith("after results")
    }  # a change made after the runs were seen is logged with the verdicts before and after
    assert all(d["version"] in after_results and d["before"] and d["after"] for d in logged)
    c23 = deviation_note("C23", logged)
    assert "[deviation, version 7:" in c23 and "contradicted under version 6, contradicted under version 7" in c23
    assert deviation_note("C1", logged) == ""  # C1's rule never changed after its runs


def test_pairs_are_formed_on_seed_and_task_order_by_hand() -> None:
    """Two task orders per seed: each variant run is paired with the reference run of the same seed AND order."""
    from analysis.audit.context import paired_diff

    value = {  # (variant, seed, order) -> P-AP; the reference differs by order, so pairing on seed alone is wrong
        ("ref", 0, "a"): 0.50, ("ref", 0, "b"): 0.70, ("ref", 1, "a"): 0.52, ("ref", 1, "b"): 0.72,
        ("v", 0, "a"): 0.49, ("v", 0, "b"): 0.68, ("v", 1, "a"): 0.50, ("v", 1, "b"): 0.69,
    }  # fmt: skip
    rows = [
        {"study": "s", "variant": v, "dataset": "d", "run_id": f"{v}{s}{o}", "seed": s, "order": o, "status": "ok",
         "pixel_ap_routed": y}
        for (v, s, o), y in value.items()
    ]  # fmt: skip
    ctx = Context(pd.DataFrame(rows), {}, "d")
    diff, why = paired_diff(ctx, "s", "v", "ref", "pixel_ap_routed")
    by_hand = sorted(value[("v", s, o)] - value[("ref", s, o)] for s in (0, 1) for o in ("a", "b"))
    assert why == "" and sorted(diff) == pytest.approx(by_hand, abs=1e-12)  # -0.01, -0.02, -0.02, -0.03
    assert describe(ctx.rows("s", "v")) == "seeds 0, 1 x orders a, b"


def test_an_exact_parts_why_says_how_it_was_decided_not_its_values_again() -> None:
    """The claims table's Why of an exact part (a count) says it was decided exactly, and whether it meets or breaks
    its rule; the values stay in the Harness column (it repeated them before)."""
    from analysis.audit.evidence import exact
    from analysis.audit.verdicts import AuditLevel, Outcome, decide

    detail = "180 later oracle cells of 3 run(s), 0 differ"
    for holds, verdict, verb in ((True, "supported", "meets"), (False, "contradicted", "breaks")):
        outcome = Outcome("C1", "forgetting", "synth", [exact("oracle R[j][i] = R[i][i]", holds, detail=detail)])
        decide(outcome, AuditLevel(0.05, 0, 0))
        assert outcome.verdict == verdict and outcome.parts[0].shown() == detail
        assert (
            outcome.why
            == f"oracle R[j][i] = R[i][i]: {verb} its rule exactly (a count or an exact comparison, no sampling error)"
        )
