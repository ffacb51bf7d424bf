"""The claims audit: the registry, each statistical test against a hand computation or another
library, the verdict logic (a supported, a contradicted and an inconclusive case per kind of test),
and the paper's own numbers recomputed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from tests_helpers import per_task_by_formula, verdict_of

from analysis.audit import VERDICTS, evaluate, registry
from analysis.audit.evidence import (
    contrast_part,
    equivalence_test,
    exact,
    sign_test,
    slope_test,
    welch_vs_paper,
)
from analysis.audit.paper_check import checks
from analysis.audit.paper_values import overhead_at_table2
from analysis.audit.verdicts import CONTRADICTED, INCONCLUSIVE, NOT_TESTED, SUPPORTED
from analysis.blocked import contrasts


# ------------------------------------------------------------------------------------------ registry
def test_registry_lists_every_claim_once_with_a_known_test() -> None:
    reg = registry()
    ids = [c["id"] for c in reg["claims"]]
    assert ids == [*(f"C{i}" for i in range(1, 19)), "C18g", "C18d", "O1", "O2", *(f"C{i}" for i in range(19, 46))]
    assert {c["family"] for c in reg["claims"]} >= {
        "forgetting",
        "headline",
        "strategies",
        "ablation",
        "interaction",
        "depth",
        "sensitivity",
        "structure",
        "routing",
        "literature",
    }
    # the claims that only real benchmark numbers can test say so
    real = {c["id"] for c in reg["claims"] if c["needs"].get("real")}
    assert real == {"C5", "C6", "C7", "C8", "C10", "C11", "C18"}
    assert {c["id"] for c in reg["claims"] if c["needs"].get("backbone") == "paper"} == {"C5", "C6", "C7", "C8", "C18"}


# ------------------------------------------------------------------------------------------ the tests against hand values
def test_a_directional_part_is_a_t_pivot_with_its_region_beyond_the_margin() -> None:
    diff = np.array([-0.03, -0.05, -0.01, -0.04])
    part = sign_test("d < 0", diff, "<", 0.0, margin=0.005)
    mean, se = diff.mean(), diff.std(ddof=1) / math.sqrt(len(diff))
    assert part.region == (-math.inf, -0.005)
    # support: the mean below -0.005; contradiction: above it (the band between -0.005 and 0 included)
    assert part.p_support == pytest.approx(stats.t.cdf((mean + 0.005) / se, 3), rel=1e-12)
    assert part.p_contradict == pytest.approx(stats.t.sf((mean + 0.005) / se, 3), rel=1e-12)
    assert part.p_support + part.p_contradict == pytest.approx(1.0)  # one boundary: never both small
    half = stats.t.ppf(1 - 0.01, 3) * se
    assert part.interval(0.01) == pytest.approx((mean - half, mean + half), rel=1e-12)
    # a stated threshold is the boundary itself: no margin moves it
    assert sign_test("d < -0.03", diff, "<", -0.03, margin=0.0028).region == (-math.inf, -0.03)
    assert sign_test("d > 0", diff, ">", 0.0, margin=0.005).region == (0.005, math.inf)


def test_an_equivalence_part_is_inside_or_entirely_outside_its_bounds() -> None:
    diff = np.array([0.001, -0.002, 0.0015, 0.0005, -0.0005])
    part = equivalence_test("|d| < 0.005", diff, -0.005, 0.005)
    mean, se, df = diff.mean(), diff.std(ddof=1) / math.sqrt(len(diff)), len(diff) - 1
    assert part.p_support == pytest.approx(
        max(stats.t.sf((mean + 0.005) / se, df), stats.t.cdf((mean - 0.005) / se, df)), rel=1e-10
    )
    assert part.p_contradict == pytest.approx(
        min(stats.t.cdf((mean + 0.005) / se, df), stats.t.sf((mean - 0.005) / se, df)), rel=1e-10
    )
    # the interval decides exactly as the p-values: inside at level a iff p_support <= a
    for a in (0.001, 0.01, 0.05, 0.2):
        lo, hi = part.interval(a)
        assert (-0.005 < lo and hi < 0.005) == (part.p_support <= a)


def test_welch_against_the_paper_is_an_equivalence_part_with_welchs_error() -> None:
    ours = np.array([0.95, 0.96, 0.955])
    part = welch_vs_paper("I-AUROC", ours, 0.9803, 0.0019, 5, 0.005)
    v1, v2 = ours.var(ddof=1) / 3, 0.0019**2 / 5
    se, d = math.sqrt(v1 + v2), ours.mean() - 0.9803
    df = (v1 + v2) ** 2 / (v1**2 / 2 + v2**2 / 4)
    assert (part.estimate, part.se, part.df) == pytest.approx((d, se, df))
    assert part.region == (-0.005, 0.005)
    assert part.p_support == pytest.approx(
        max(stats.t.sf((d + 0.005) / se, df), stats.t.cdf((d - 0.005) / se, df)), rel=1e-9
    )
    assert part.p_contradict == pytest.approx(stats.t.cdf((d + 0.005) / se, df), rel=1e-9)


def test_slope_and_contrast_against_hand_values() -> None:
    levels = np.array([0.0, 0.3, 0.5, 1.0] * 2)
    blocks = ["a"] * 4 + ["b"] * 4
    y = 0.5 + 0.1 * levels + np.array([0.0, 0.01, -0.01, 0.0, 0.02, 0.03, 0.01, 0.02])
    part = slope_test("slope", pd.DataFrame({"level": levels, "block": blocks, "y": y}))
    centred = {b: (levels[np.array(blocks) == b], y[np.array(blocks) == b]) for b in "ab"}
    num = sum(((x - x.mean()) * (v - v.mean())).sum() for x, v in centred.values())
    den = sum(((x - x.mean()) ** 2).sum() for x, _ in centred.values())
    assert part.estimate == pytest.approx(num / den, rel=1e-10)  # the within-block slope
    assert part.region == (0.0, math.inf)

    cells = {
        ("frozen", "on"): [0.60, 0.62, 0.61],
        ("frozen", "off"): [0.50, 0.52, 0.49],
        ("trainable", "on"): [0.55, 0.56, 0.54],
        ("trainable", "off"): [0.54, 0.53, 0.55],
    }
    contrast = contrasts(_frame(cells))["interaction"]
    a = {k: np.array(v) for k, v in cells.items()}
    per_seed = (a[("frozen", "on")] - a[("frozen", "off")]) - (a[("trainable", "on")] - a[("trainable", "off")])
    assert contrast.estimate == pytest.approx(per_seed.mean(), rel=1e-10)  # seed k of every cell is one block
    assert contrast.se == pytest.approx(per_seed.std(ddof=1) / math.sqrt(3), rel=1e-10) and contrast.df == 2
    integral = contrast_part("i", contrast, "Integral", 0.005)
    assert integral.region == (0.005, math.inf)
    assert integral.p_support == pytest.approx(stats.t.sf((per_seed.mean() - 0.005) / contrast.se, 2), rel=1e-10)
    assert contrast_part("g", contrast, "Generic", 0.005).region == (-0.005, 0.005)


def _frame(cells: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"block": f"s{k}", "base": b, "component": c, "y": v}
            for (b, c), vs in cells.items()
            for k, v in enumerate(vs)
        ]
    )


# ------------------------------------------------------------------------------------------ verdicts per kind of test
def test_sign_verdicts() -> None:
    assert verdict_of(sign_test("drop", np.array([-0.05, -0.06, -0.055, -0.052]), "<", margin=0.005)) == SUPPORTED
    assert verdict_of(sign_test("drop", np.array([0.01, 0.012, 0.011, 0.013]), "<", margin=0.005)) == CONTRADICTED
    # a real but negligible effect (smaller than the margin) contradicts a claim of an effect
    assert (
        verdict_of(sign_test("drop", np.array([-0.001, -0.0012, -0.0011, -0.0009]), "<", margin=0.005)) == CONTRADICTED
    )
    assert verdict_of(sign_test("drop", np.array([-0.05, 0.04]), "<")) == INCONCLUSIVE
    lone = sign_test("drop", np.array([-0.05]), "<")
    assert verdict_of(lone) == INCONCLUSIVE and "n = 1" in lone.reason
    same = sign_test("drop", np.array([-0.01, -0.01]), "<")
    assert verdict_of(same) == INCONCLUSIVE and "do not vary" in same.reason


def test_equivalence_verdicts() -> None:
    assert verdict_of(equivalence_test("eq", np.array([0.001, -0.001, 0.0005, 0.0]), -0.005, 0.005)) == SUPPORTED
    assert verdict_of(equivalence_test("eq", np.array([0.03, 0.031, 0.029, 0.032]), -0.005, 0.005)) == CONTRADICTED
    assert verdict_of(equivalence_test("eq", np.array([0.01, -0.02]), -0.005, 0.005)) == INCONCLUSIVE


@pytest.mark.slow
def test_exact_welch_slope_and_contrast_verdicts() -> None:
    assert verdict_of(exact("zero", True)) == SUPPORTED and verdict_of(exact("zero", False)) == CONTRADICTED
    assert (
        verdict_of(welch_vs_paper("w", np.array([0.980, 0.981, 0.9805, 0.9802]), 0.9803, 0.0019, 5, 0.005)) == SUPPORTED
    )
    assert verdict_of(welch_vs_paper("w", np.array([0.90, 0.901, 0.899]), 0.9803, 0.0019, 5, 0.005)) == CONTRADICTED
    assert verdict_of(welch_vs_paper("w", np.array([0.95]), 0.9803, 0.0019, 5, 0.005)) == INCONCLUSIVE
    # a noisy harness that cannot tell: no support from a failure to reject
    assert verdict_of(welch_vs_paper("w", np.array([0.96, 1.0]), 0.9803, 0.0019, 5, 0.005)) == INCONCLUSIVE

    level = np.repeat([0.0, 0.5, 1.0], 3)
    block = np.tile(["a", "b", "c"], 3)
    noise = np.array([0.001, -0.001, 0.0, 0.0, 0.001, -0.001, -0.001, 0.0, 0.001])
    up = pd.DataFrame({"level": level, "block": block, "y": 0.5 + 0.1 * level + noise})
    down = pd.DataFrame({"level": level, "block": block, "y": 0.5 - 0.1 * level + noise})
    flat = pd.DataFrame(
        {"level": level, "block": block, "y": 0.5 + np.array([0.03, -0.02, 0.0, -0.03, 0.02, 0.01, 0.0, 0.01, -0.02])}
    )
    assert verdict_of(slope_test("s", up)) == SUPPORTED
    assert verdict_of(slope_test("s", down)) == CONTRADICTED
    assert verdict_of(slope_test("s", flat)) == INCONCLUSIVE

    def design(frozen_effect: float, trainable_effect: float, noise: float):
        rng = np.random.default_rng(0)
        cells = {
            (base, component): list(0.5 + shift + noise * rng.standard_normal(4))
            for base, effect in (("frozen", frozen_effect), ("trainable", trainable_effect))
            for component, shift in (("on", effect), ("off", 0.0))
        }
        return contrasts(_frame(cells))["interaction"]

    assert verdict_of(contrast_part("i", design(0.1, 0.0, 0.002), "Integral", 0.005)) == SUPPORTED
    assert verdict_of(contrast_part("i", design(0.0, 0.1, 0.002), "Integral", 0.005)) == CONTRADICTED
    assert verdict_of(contrast_part("i", design(0.02, 0.0, 0.05), "Integral", 0.005)) == INCONCLUSIVE
    assert verdict_of(contrast_part("g", design(0.05, 0.05, 0.0005), "Generic", 0.005)) == SUPPORTED
    assert verdict_of(contrast_part("g", design(0.1, 0.0, 0.002), "Generic", 0.005)) == CONTRADICTED
    assert verdict_of(contrast_part("g", None, "Generic", 0.005)) == INCONCLUSIVE


def test_a_claim_is_contradicted_by_any_part_and_supported_only_by_all() -> None:
    assert verdict_of(exact("a", True), exact("b", False)) == CONTRADICTED
    assert verdict_of(exact("a", True), sign_test("b", np.array([-0.05]), "<")) == INCONCLUSIVE
    assert verdict_of(exact("a", True), exact("b", True)) == SUPPORTED


# ------------------------------------------------------------------------------------------ whole audit
def test_audit_without_runs_gives_every_claim_a_verdict_and_says_what_data_are_missing() -> None:
    plan = {"datasets": {"synth": {"kind": "mvtec", "generate": True}}, "studies": {}, "runs": []}
    outcomes, _, _ = evaluate(pd.DataFrame(), plan, {})
    assert [o.claim_id for o in outcomes] == [
        *(f"C{i}" for i in range(1, 19)),
        "C18g",
        "C18d",
        "O1",
        "O2",
        *(f"C{i}" for i in range(19, 46)),
    ]
    assert all(o.verdict in VERDICTS and o.why for o in outcomes)
    by_id = {o.claim_id: o for o in outcomes}
    assert by_id["C5"].verdict == NOT_TESTED and "generated" in by_id["C5"].why
    assert by_id["C2"].verdict == NOT_TESTED and "VisA" in by_id["C2"].why
    # without runs only the claims about numbers are decided: C13 (parameters at Table 2's configuration) and C19
    # (the paper's own rows); the benchmark's numbers are not tested on generated data; everything else waits
    decided = {o.claim_id for o in outcomes if o.verdict in (SUPPORTED, CONTRADICTED)}
    assert decided == {"C13", "C19"} and by_id["C13"].verdict == by_id["C19"].verdict == CONTRADICTED
    assert {o.claim_id for o in outcomes if o.verdict == NOT_TESTED} == {
        "C2",
        "C5",
        "C6",
        "C7",
        "C8",
        "C10",
        "C11",
        "C18",
    }
    # every undecided claim says which runs it lacks
    waiting = [o for o in outcomes if o.verdict == INCONCLUSIVE]
    assert len(waiting) == 39 and all(
        any(word in o.why for word in ("not planned", "no finished", "no variant", "no run", "has no", "planned"))
        for o in waiting
    ), [o.why for o in waiting if "planned" not in o.why and "no " not in o.why]
    assert "ablation/w/o TAL: not planned" in by_id["C20"].why


# ------------------------------------------------------------------------------------------ the paper against itself
def test_the_paper_is_recomputed_from_its_own_numbers() -> None:
    found = {c.what: c for c in checks()}
    t7 = found["Table 7: printed Δ vs the difference of its rows"]
    assert not t7.consistent and "-7.3 vs -7.4" in t7.computed and "+0.1 vs +0.2" in t7.computed
    assert found["Table 11: printed Δ vs the difference of its rows"].consistent
    assert "0.9806" in found["Table 3: printed averages vs their categories' mean"].computed
    assert found["Table 5: printed averages vs their categories' mean"].consistent
    # F and p are both rounded as printed: WA's F 8.47 (± 0.005) with p 0.008 fits df 21-24 (24: 7 runs per cell)
    wa = next(c for w, c in found.items() if w.startswith("Table 8, Whitening Adapter"))
    assert wa.computed.startswith("df 21-24; balanced: 24 (7 runs per cell)") and wa.consistent
    tal = next(c for w, c in found.items() if w.startswith("Table 8, Tail-Aware Loss"))
    assert tal.computed.startswith("df 20-22; balanced: 20 (6 runs per cell)") and tal.consistent
    assert (
        found["Table 8: one residual df for all five interaction tests (one design, the same runs)"].computed
        == "df fitting every row: 21-22"
    )  # with F's rounding as well as p's; an unbalanced design of 25 or 26 runs; no balanced one fits every row
    dia = next(c for w, c in found.items() if w.startswith("Table 8, DIA"))
    assert dia.computed.startswith("df 21-22; none balanced") and not dia.consistent
    assert "3.3 of the abstract's SDs" in found["Pixel AP: abstract (5 runs) vs Tables 4, 7, 9, 16"].computed
    # the authors' main script runs Table 2; their method outline lists other values "as implemented"
    assert found["Configuration: Tables 2 and 12 vs the authors' main script"].consistent
    outline = found["Configuration: Tables 2 and 12 vs the authors' method outline (v1.6)"]
    assert not outline.consistent and outline.computed == (
        "MoLE Blocks 8 vs 6; Learning Rate 0.0002 vs 0.0003; Tail Weight "
        "0.3 vs 0.7; LogDet Weight 3e-05 vs 0.0001; Tail Top-K Ratio 0.05 vs 0.02"
    )
    counts = overhead_at_table2([16, 32, 64, 128])
    # the paper's 8% does not follow from its Table 2: by the closed formula, 41.5 % of the base per task
    assert counts["per_task"] == per_task_by_formula(768, 6, 64, 2)
    # the base by hand (D = 768, half 384): per coupling block the subnet's four linears with biases
    # (D -> D, D -> D/2, D/2 -> D, D -> D/2), its scale-context depthwise 5 x 5 convolution with bias over D/2
    # channels and its gate; the spatial mixer's depthwise 3 x 3 convolution with bias and its gate; the blocks'
    # global affine is frozen at its initialisation (model.global_affine: frozen, the authors'), so not counted
    d, h = 768, 384
    block = (d * d + d) + (d * h + h) + (h * d + d) + (d * h + h) + (h * 25 + h) + 1
    assert counts["base"] == 6 * block + (d * 9 + d + 1) == 8_928_775
    assert counts["overhead_pct"] == pytest.approx(100 * per_task_by_formula(768, 6, 64, 2) / 8_928_775, rel=1e-12)
    assert counts["affine"] and counts["overhead_pct"] == pytest.approx(41.51, abs=0.01)
    per = counts["by_rank"]
    assert per[128] - per[64] == 2 * (per[64] - per[32]) == 4 * (per[32] - per[16])


def test_printed_f_and_p_rounding_both_widen_the_df_by_hand() -> None:
    from scipy import stats as sps

    from analysis.audit.paper_values import dfs_for, half_unit

    assert half_unit(8.47) == pytest.approx(0.005) and half_unit(0.008) == pytest.approx(0.0005)
    # by hand: df fits when [sf(F + 0.005), sf(F - 0.005)] meets [p - 0.0005, p + 0.0005)
    by_hand = [df for df in range(1, 201) if sps.f.sf(1.245, 1, df) < 0.2785 and sps.f.sf(1.235, 1, df) >= 0.2775]
    assert dfs_for(1.24, 0.278) == by_hand == [19, 20, 21, 22, 23]
    # p's rounding alone (F taken as exact) admits only df 21: Spatial Context's row then pins the common df
    assert [df for df in range(1, 201) if 0.2775 <= sps.f.sf(1.24, 1, df) < 0.2785] == [21]
