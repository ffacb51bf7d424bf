"""The claims audit's statistical parts against values by hand: the Welch difference against the paper's
mean, SD and n, the blocked least-squares slope, the p-value parts, and how a part prints its region and its
interval."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from tests_helpers import audit_context

from analysis.audit.context import Context
from analysis.audit.evidence import (
    CONTRADICTED,
    INCONCLUSIVE,
    INF,
    NO_VARIANCE,
    SUPPORTED,
    Part,
    p_part,
    slope_test,
    welch_vs_paper,
)

NAN = float("nan")


def _pvalues(d: float, se: float, df: float, m: float) -> tuple[float, float]:
    """Equivalence within ±m by hand: supported needs both one-sided tests, contradicted either side."""
    support = max(sps.t.sf((d + m) / se, df), sps.t.cdf((d - m) / se, df))
    contradict = min(sps.t.cdf((d + m) / se, df), sps.t.sf((d - m) / se, df))
    return support, contradict


def test_welch_against_the_papers_mean_sd_and_n_by_hand() -> None:
    values = np.array([0.911, 0.913, np.nan, 0.909, 0.912])  # a diverged run (NaN) does not enter
    ours = np.array([0.911, 0.913, 0.909, 0.912])
    s = ours.std(ddof=1)
    v1, v2 = s**2 / 4, 0.02**2 / 5
    se = math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / 3 + v2**2 / 4)
    d = ours.mean() - 0.91
    part = welch_vs_paper("x", values, 0.91, 0.02, 5, 0.03)
    assert (part.label, part.n, part.region, part.kind, part.paper, part.margin) == (
        "x", 4, (-0.03, 0.03), "equivalence", 0.91, 0.03,
    )  # fmt: skip
    assert part.estimate == pytest.approx(d, rel=1e-12) and part.sd == pytest.approx(s, rel=1e-12)
    assert (part.se, part.df) == pytest.approx((se, df), rel=1e-12)
    assert (part.p_support, part.p_contradict) == pytest.approx(_pvalues(d, se, df, 0.03), rel=1e-9)
    assert part.decide(0.05) == SUPPORTED and part.reason == ""
    far = welch_vs_paper("x", ours + 0.2, 0.91, 0.02, 5, 0.03)
    assert far.decide(0.05) == CONTRADICTED
    assert (far.p_support, far.p_contradict) == pytest.approx(_pvalues(d + 0.2, se, df, 0.03), rel=1e-9)


def test_welch_with_a_single_paper_run_takes_the_df_from_ours_alone() -> None:
    ours = np.array([0.90, 0.92, 0.95])
    v1, v2 = ours.var(ddof=1) / 3, 0.02**2 / 1
    part = welch_vs_paper("x", ours, 0.91, 0.02, 1, 0.03)
    assert part.df == pytest.approx((v1 + v2) ** 2 / (v1**2 / 2), rel=1e-12)


def test_welch_refuses_what_it_cannot_test() -> None:
    one = welch_vs_paper("x", np.array([0.95, np.nan]), 0.91, 0.02, 5, 0.03)
    assert (one.n, one.reason, one.region, one.kind) == (1, "fewer than 2 runs", (-0.03, 0.03), "equivalence")
    assert one.estimate == pytest.approx(0.04) and one.paper == 0.91 and one.margin == 0.03
    assert one.decide(0.05) == INCONCLUSIVE
    none = welch_vs_paper("x", np.array([]), 0.91, 0.02, 5, 0.03)
    assert (none.n, none.reason) == (0, "no finished run") and math.isnan(none.estimate)
    flat = welch_vs_paper("x", np.array([0.91, 0.91, 0.91]), 0.91, 0.0, 5, 0.03)
    assert flat.reason == NO_VARIANCE and math.isnan(flat.df) and flat.decide(0.05) == INCONCLUSIVE


def _ols_slope(level: np.ndarray, block: np.ndarray, y: np.ndarray) -> tuple[float, float, int]:
    """The slope of y on level with a dummy per block beyond the first, its SE and residual df, by normal equations."""
    blocks = sorted(set(block))
    columns = [np.ones_like(level), level] + [(block == b).astype(float) for b in blocks[1:]]
    x = np.column_stack(columns)
    beta = np.linalg.solve(x.T @ x, x.T @ y)
    resid = y - x @ beta
    df = len(y) - x.shape[1]
    cov = (resid @ resid / df) * np.linalg.inv(x.T @ x)
    return float(beta[1]), float(np.sqrt(cov[1, 1])), df


def test_slope_with_replicates_as_blocks_by_hand() -> None:
    level = np.array([1.0, 2.0, 3.0, 4.0] * 2)
    block = np.array(["s0"] * 4 + ["s1"] * 4)
    y = np.array([0.80, 0.83, 0.85, 0.90, 0.70, 0.74, 0.74, 0.79])
    frame = pd.DataFrame({"level": level, "block": block, "y": y, "other": "ignored"})
    slope, se, df = _ols_slope(level, block, y)
    part = slope_test("s", frame)
    assert (part.estimate, part.se, part.df) == pytest.approx((slope, se, df), rel=1e-9)
    assert (part.n, part.region) == (8, (0.0, INF)) and df == 5
    assert part.units == "runs (4 values x 2 seed block(s))"
    assert part.p_support == pytest.approx(sps.t.sf(slope / se, df), rel=1e-9)
    assert part.p_contradict == pytest.approx(sps.t.cdf(slope / se, df), rel=1e-9)
    down = slope_test("s", frame, "<")
    assert down.region == (-INF, 0.0) and down.p_support == pytest.approx(part.p_contradict, rel=1e-9)
    one = frame[frame["block"] == "s0"]
    slope1, se1, df1 = _ols_slope(level[:4], block[:4], y[:4])
    alone = slope_test("s", one)
    assert (alone.estimate, alone.se, alone.df) == pytest.approx((slope1, se1, df1), rel=1e-9) and df1 == 2
    assert alone.units == "runs (4 values x 1 seed block(s))"


def test_slope_refuses_too_few_levels_or_runs() -> None:
    two = pd.DataFrame({"level": [1.0, 2.0, 1.0, 2.0], "block": ["a", "a", "b", "b"], "y": [0.1, 0.2, 0.1, 0.3]})
    part = slope_test("s", two)
    assert part.reason == "2 value(s), 4 run(s): too few for a slope" and part.n == 4
    assert part.region == (0.0, INF) and slope_test("s", two, "<").region == (-INF, 0.0)
    # three levels, but one run per block: no residual left after the level and the blocks
    thin = pd.DataFrame({"level": [1.0, 2.0, 3.0], "block": ["a", "b", "c"], "y": [0.1, 0.2, np.nan]})
    assert slope_test("s", thin).reason == "2 value(s), 2 run(s): too few for a slope"
    # parameters: intercept, slope and one per block beyond the first; a residual needs more runs than that
    short = pd.DataFrame({"level": [1.0, 2.0, 3.0], "block": ["a", "a", "b"], "y": [0.1, 0.2, 0.4]})
    assert slope_test("s", short).reason == "3 value(s), 3 run(s): too few for a slope"
    just = pd.DataFrame({"level": [1.0, 2.0, 3.0, 1.0], "block": ["a", "a", "a", "b"], "y": [0.1, 0.2, 0.4, 0.2]})
    assert slope_test("s", just).reason == "" and slope_test("s", just).df == 1


def test_a_part_without_an_interval() -> None:
    part = p_part("anova", 0.01, 0.7, n=5, estimate=0.3)
    assert (part.p_support, part.p_contradict, part.n, part.estimate, part.reason) == (0.01, 0.7, 5, 0.3, "")
    assert part.p_part == pytest.approx(0.02) and part.decide(0.05) == SUPPORTED
    assert p_part("anova", float("nan"), 0.01).decide(0.05) == CONTRADICTED
    assert p_part("anova", float("nan"), 0.01).reason == ""
    undefined = p_part("anova", float("nan"))
    assert undefined.reason == "the test is undefined on these runs" and math.isnan(undefined.p_part)
    assert p_part("anova", 0.8, 0.9).p_part == 1.0  # twice the smaller, at most 1


def test_how_a_part_prints() -> None:
    assert Part("x").region_text() == "any"
    assert Part("x", region=(-INF, 0.02)).region_text() == "< +0.02"
    assert Part("x", region=(0.005, INF)).region_text() == "> +0.005"
    assert Part("x", region=(-0.03, 0.03)).region_text() == "in [-0.03, +0.03]"
    part = Part("x", estimate=0.0123456, n=5, se=0.01, df=4)
    assert part.shown() == "+0.0123, n=5"
    part.settle(0.025)
    half = sps.t.ppf(0.975, 4) * 0.01
    assert (part.low, part.high, part.level) == pytest.approx((0.0123456 - half, 0.0123456 + half, 0.95))
    assert part.shown() == f"+0.0123 [{0.0123456 - half:+.4f}, {0.0123456 + half:+.4f}] (95.0%), n=5"
    part.units = "levels x 1 seed"
    assert part.shown().endswith("(95.0%), n=5 levels x 1 seed")
    assert Part("x", status=SUPPORTED, reason="3 of 3 digests equal", estimate=0.0).shown() == "3 of 3 digests equal"
    assert Part("x", status=SUPPORTED, estimate=2.0, n=1).shown() == "+2.0000, n=1"
    assert Part("x").shown() == ""
    unsettled = Part("x", estimate=1.0, n=1)
    unsettled.settle(0.025)  # no pivot: nothing to set
    assert math.isnan(unsettled.low) and math.isnan(unsettled.level)


# ------------------------------------------------------------------------------------- the headline numbers' checks
def _ctx(values: list[float], column: str = "image_auroc_routed", statuses: list[str] | None = None) -> Context:
    return audit_context(statuses or ["ok"] * len(values), None, **{column: values})


CHECK = {"study": "main", "variant": "MoLE-Flow"}


def test_the_headline_against_the_papers_mean_by_welch() -> None:
    from analysis.audit.structural import welch_paper

    values = [0.911, 0.913, 0.909, 0.912, 0.5]
    check = {**CHECK, "metric": "image_auroc_routed", "mean": 0.91, "sd": 0.02, "n": 5, "margin": 0.03}
    [part] = welch_paper(_ctx(values, statuses=["ok"] * 4 + ["diverged"]), check)
    expected = welch_vs_paper("", np.array(values[:4]), 0.91, 0.02, 5, 0.03)
    assert part.label == "|I-AUROC - 0.91| < 0.03 (paper: ± 0.02, n=5)"
    assert (part.estimate, part.se, part.df, part.region) == (
        expected.estimate,
        expected.se,
        expected.df,
        (-0.03, 0.03),
    )
    assert part.reason == "main/MoLE-Flow: 1 of 5 planned run(s) diverged"


def test_each_metric_within_the_papers_value_and_tolerance() -> None:
    from analysis.audit.structural import interval_contains

    values = [0.90, 0.92, 0.91]
    check = {**CHECK, "values": {"image_auroc_routed": 0.91}, "tolerance": {"image_auroc_routed": 0.02}}
    [part] = interval_contains(_ctx(values), check)
    mean, se = np.mean(values), np.std(values, ddof=1) / math.sqrt(3)
    assert part.label == "I-AUROC within 0.91 ± 0.02" and part.region == pytest.approx((0.89, 0.93))
    assert (part.estimate, part.se, part.df, part.paper, part.margin) == pytest.approx((mean, se, 2, 0.91, 0.02))


def test_a_threshold_below_the_mean_and_routing_in_every_run() -> None:
    from analysis.audit.structural import interval_lower_at_least, routing_at_least

    values = [0.95, 0.97, 0.96]
    [part] = interval_lower_at_least(_ctx(values), {**CHECK, "metric": "image_auroc_routed", "minimum": 0.9})
    assert part.label == "I-AUROC > 0.9" and part.region == (0.9, INF) and math.isnan(part.margin)
    assert part.p_support == pytest.approx(sps.t.sf((0.96 - 0.9) / (0.01 / math.sqrt(3)), 2), rel=1e-9)
    routing = [1.0, 0.98, 0.995]
    [every] = routing_at_least(_ctx(routing, "routing_accuracy"), {**CHECK, "minimum": 0.99})
    assert (every.label, every.status, every.estimate, every.n, every.reason, every.paper) == (
        "routing accuracy >= 0.99 in every run", CONTRADICTED, 0.98, 3, "lowest 0.9800", 0.99,
    )  # fmt: skip
    [held] = routing_at_least(_ctx([1.0, 0.99], "routing_accuracy"), {**CHECK, "minimum": 0.99})
    assert held.status == SUPPORTED  # at least: the minimum itself holds
    [none] = routing_at_least(_ctx([1.0], "routing_accuracy", ["failed"]), {**CHECK, "minimum": 0.99})
    assert none.label == "routing accuracy >= 0.99" and none.status is None
    assert none.reason == "main/MoLE-Flow: 1 of 1 planned run(s) failed"
    [empty] = routing_at_least(_ctx([], "routing_accuracy"), {**CHECK, "minimum": 0.99})
    assert empty.reason == "main/MoLE-Flow: not planned"


# ------------------------------------------------------------------------------------------ what an undecided part needs
def _needed(distance: float, sd: float, a: float, power: float) -> int:
    """The smallest n >= 2 with (t_{1-a} + t_{power}) sd / sqrt(n) <= distance, by scanning."""
    n = 2
    while (sps.t.ppf(1 - a, n - 1) + sps.t.ppf(power, n - 1)) * sd / math.sqrt(n) > distance:
        n += 1
    return n


def test_replicates_for_a_distance_by_hand() -> None:
    from analysis.audit.power import MAX_REPLICATES, replicates_for, sd_upper

    assert replicates_for(0.02, 0.01, 0.025) == _needed(0.02, 0.01, 0.025, 0.8) == 5  # 4: 0.0208 > 0.02
    assert replicates_for(0.02, 0.01, 0.025, 0.95) == _needed(0.02, 0.01, 0.025, 0.95)
    assert replicates_for(10.0, 0.01, 0.025) == 2  # never fewer than two
    assert replicates_for(1e-6, 0.01, 0.025) is None and MAX_REPLICATES == 1000  # beyond the cap
    for bad in ((0.0, 0.01), (-0.01, 0.01), (0.02, 0.0), (float("nan"), 0.01), (0.02, float("nan"))):
        assert replicates_for(*bad, 0.025) is None
    assert sd_upper(0.01, 5) == pytest.approx(0.01 * math.sqrt(4 / sps.chi2.ppf(0.2, 4)), rel=1e-12)
    assert sd_upper(0.01, 5, 0.95) == pytest.approx(0.01 * math.sqrt(4 / sps.chi2.ppf(0.05, 4)), rel=1e-12)


def _undecided(region: tuple[float, float], estimate: float, paper: float = float("nan"), margin: float = float("nan")):  # noqa: ANN202
    part = Part("Δ x", estimate=estimate, n=5, se=0.01, df=4, region=region, paper=paper, margin=margin)
    part.sd = 0.02
    return part


def test_what_an_undecided_part_needs_word_for_word() -> None:
    from analysis.audit.power import part_power, sd_upper

    sd = sd_upper(0.02, 5)
    tail = f"(SD <= {sd:.4f}, the 80 % bound of the observed 0.0200 on n=5; level 0.025)"
    # a directional region with the paper's value inside it: the distance from the boundary to the paper's
    part = _undecided((0.005, INF), 0.01, paper=0.03)
    assert part_power(part, "inconclusive", 0.025) == (
        f"Δ x: n={_needed(0.025, sd, 0.025, 0.8)} for 80 % power with the true value at the paper's +0.03 {tail}"
    )
    down = _undecided((-INF, -0.005), -0.01, paper=-0.03)
    assert f"n={_needed(0.025, sd, 0.025, 0.8)} " in part_power(down, "inconclusive", 0.025)
    # the paper's value outside the region (or none): the part's own margin beyond the boundary, else 0.005
    own = _undecided((0.01, INF), 0.02, paper=0.005, margin=0.01)
    assert part_power(own, "inconclusive", 0.025) == (
        f"Δ x: n={_needed(0.01, sd, 0.025, 0.8)} for 80 % power with the true value at 0.01 beyond the boundary {tail}"
    )
    default = _undecided((0.01, INF), 0.02)
    assert f"n={_needed(0.005, sd, 0.025, 0.8)} for 80 % power with the true value at 0.005 beyond" in part_power(
        default, "inconclusive", 0.025
    )
    # an equivalence region: its half-width, 90 % on each side
    within = _undecided((-0.03, 0.03), 0.001)
    assert part_power(within, "inconclusive", 0.025) == (
        f"Δ x: n={_needed(0.03, sd, 0.025, 0.9)} for 80 % power with the true value at the region's centre {tail}"
    )
    outside = _undecided((0.005, INF), -0.002)
    assert part_power(outside, "inconclusive", 0.025) == (
        "Δ x: the estimate -0.0020 lies outside the region > +0.005: more replicates would not support it"
    )
    assert part_power(_undecided((0.005, INF), 0.005), "inconclusive", 0.025).endswith("would not support it")
    far = _undecided((0.005, INF), 0.006, paper=0.0050001)
    assert "more than 1000 for 80 % power" in part_power(far, "inconclusive", 0.025)
    for status, change in (("supported", {}), ("inconclusive", {"n": 1}), ("inconclusive", {"sd": 0.0})):
        p = _undecided((0.005, INF), 0.01)
        for key, value in change.items():
            setattr(p, key, value)
        assert part_power(p, status, 0.025) == "", (status, change)
    exact_part = _undecided((0.005, INF), 0.01)
    exact_part.status = SUPPORTED
    assert part_power(exact_part, "inconclusive", 0.025) == ""


def test_the_power_projection_at_its_edges() -> None:
    from analysis.audit.power import MAX_REPLICATES, part_power, replicates_for

    def at(n: int) -> float:  # the distance that n replicates just reach, computed as the function computes it
        return (sps.t.ppf(1 - 0.025, n - 1) + sps.t.ppf(0.8, n - 1)) * 1.0 / math.sqrt(n)

    assert replicates_for(at(7), 1.0, 0.025) == 7  # the bound itself is reached
    assert replicates_for(at(MAX_REPLICATES), 1.0, 0.025) == MAX_REPLICATES
    assert replicates_for(at(MAX_REPLICATES + 1), 1.0, 0.025) is None
    # both quantiles at n - 1 degrees of freedom: a distance that n = 3 reaches only with the second at n + 1
    almost = (sps.t.ppf(1 - 0.025, 2) + sps.t.ppf(0.8, 4)) / math.sqrt(3)
    assert replicates_for(almost, 1.0, 0.025) == 4
    # the paper's value on the boundary is not inside the region: the margin, and a margin of 0 is no margin
    on_edge = _undecided((0.005, INF), 0.01, paper=0.005, margin=0.0)
    assert "with the true value at 0.005 beyond the boundary" in part_power(on_edge, "inconclusive", 0.025)
    two = _undecided((0.005, INF), 0.01)
    two.n = 2
    assert part_power(two, "inconclusive", 0.025).startswith("Δ x: more than 1000 for 80 % power")  # n=2: a text
    at_end = _undecided((-INF, 0.01), 0.01)
    assert part_power(at_end, "inconclusive", 0.025) == (
        "Δ x: the estimate +0.0100 lies outside the region < +0.01: more replicates would not support it"
    )


def test_welch_and_slope_parts_at_their_edges() -> None:
    # two runs are enough for Welch's difference; the paper's n of 2 keeps its own degrees of freedom
    runs: Any = [0.90, None, 0.92]  # a list, with a run not made: read as float, NaN dropped
    part = welch_vs_paper("C5", runs, 0.95, 0.01, 2, 0.02)
    v1, v2 = np.var([0.90, 0.92], ddof=1) / 2, 0.01**2 / 2
    assert part.n == 2 and part.df == pytest.approx((v1 + v2) ** 2 / (v1**2 / 1 + v2**2 / 1))
    assert part.estimate == pytest.approx(0.91 - 0.95) and part.label == "C5"
    one = welch_vs_paper("C5 alone", np.array([0.9]), 0.95, 0.01, 5, 0.02)
    assert (one.label, one.n, one.reason) == ("C5 alone", 1, "fewer than 2 runs")
    assert p_part("Table 10", 0.01).n == 0
    few = slope_test("slope", pd.DataFrame({"level": [1.0, 2.0], "block": ["a", "a"], "y": [0.1, 0.2]}))
    assert few.label == "slope"
    fitted = slope_test(
        "slope", pd.DataFrame({"level": [1.0, 2.0, 3.0, 4.0], "block": ["a"] * 4, "y": [0.1, 0.25, 0.3, 0.4]})
    )
    assert fitted.label == "slope" and fitted.estimate == pytest.approx(
        np.polyfit([1, 2, 3, 4], [0.1, 0.25, 0.3, 0.4], 1)[0]
    )


def test_the_headline_parts_say_which_runs_are_missing() -> None:
    from analysis.audit.structural import interval_contains, interval_lower_at_least, routing_at_least

    ctx = _ctx([0.95, 0.96, NAN], statuses=["ok", "ok", "missing"])
    check = {**CHECK, "values": {"image_auroc_routed": 0.979}, "tolerance": {"image_auroc_routed": 0.005}}
    [within] = interval_contains(ctx, check)
    assert within.n == 2 and within.reason == "main/MoLE-Flow: 1 of 3 planned run(s) missing"
    [above] = interval_lower_at_least(ctx, {**CHECK, "metric": "image_auroc_routed", "minimum": 0.9})
    assert above.n == 2 and above.reason == "main/MoLE-Flow: 1 of 3 planned run(s) missing"
    [unrecorded] = routing_at_least(_ctx([0.9, 0.9]), {**CHECK, "minimum": 0.99})  # finished, no routing column
    assert unrecorded.reason == "no finished run"
