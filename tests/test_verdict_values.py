"""The claims audit's parts and verdicts at their edges, value by value: a Table 8 contrast as a part, a t part with
no or one run, the pivot's p-values on one-sided regions, what a verdict says and why, the Benjamini-Hochberg count,
and the paper's own arithmetic (the best rival, the residual df a printed F and p imply, the overhead's rank)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analysis.audit.evidence import (
    CONTRADICTED,
    INCONCLUSIVE,
    INF,
    NAN,
    SUPPORTED,
    Part,
    contrast_part,
    exact,
    pivot_part,
    pivot_pvalues,
    region_of,
    t_part,
)
from analysis.audit.verdicts import AuditLevel, Outcome, bh_selected, decide
from analysis.blocked import Contrast


# ------------------------------------------------------------------------------------------------------ the parts
def test_a_contrast_part_by_hand_and_without_enough_blocks() -> None:
    found = Contrast("interaction", 0.03, 0.01, 4)
    part = contrast_part("WA", found, "Integral", 0.005, paper=0.07)
    assert (part.estimate, part.se, part.df, part.n, part.region) == (0.03, 0.01, 3, 4, (0.005, INF))
    assert (part.paper, part.margin, part.sd) == (0.07, 0.005, pytest.approx(0.01 * 2))  # sd = se sqrt(n)
    generic = contrast_part("SC", Contrast("interaction", 0.001, 0.002, 2), "Generic", 0.005)
    assert generic.region == (-0.005, 0.005) and generic.n == 2 and generic.reason == ""  # two blocks: an interval
    one = contrast_part("DIA", Contrast("interaction", 0.02, NAN, 1), "Integral", 0.005, paper=0.03)
    assert (one.label, one.estimate, one.n, one.region, one.margin, one.reason) == (
        "DIA", 0.02, 1, (0.005, INF), 0.005, "fewer than 2 seeds with all four cells",
    )  # fmt: skip
    assert np.isnan(one.paper)  # the paper's value is drawn only beside an interval
    for empty in (None, Contrast("interaction", NAN, NAN, 0)):
        none = contrast_part("TAL", empty, "Generic", 0.01, paper=0.04)
        assert (none.paper, none.margin, none.region, none.n) == (0.04, 0.01, (-0.01, 0.01), 0)
        assert none.reason == "a cell of the 2 x 2 design has no finished run"


def test_a_t_part_without_an_interval_keeps_its_region_paper_and_margin() -> None:
    none = t_part("x", np.array([NAN]), (0.005, INF), paper=0.1, margin=0.005)
    assert (none.label, none.n, none.region, none.paper, none.margin, none.reason) == (
        "x", 0, (0.005, INF), 0.1, 0.005, "no finished run",
    )  # fmt: skip
    one = t_part("y", [0.2, None], (-INF, 0.0), paper=0.3, margin=0.01)  # type: ignore[arg-type]
    assert (one.label, one.estimate, one.n, one.region, one.paper, one.margin, one.reason) == (
        "y", 0.2, 1, (-INF, 0.0), 0.3, 0.01, "n = 1: no interval",
    )  # fmt: skip


def test_pivot_parts_and_their_p_values_on_one_sided_regions() -> None:
    up, down = pivot_pvalues(0.02, 0.01, 4, (0.005, INF)), pivot_pvalues(0.02, 0.01, 4, (-INF, 0.005))
    t = (0.02 - 0.005) / 0.01
    assert up == pytest.approx((stats.t.sf(t, 4), stats.t.cdf(t, 4)))  # above the lower end; below it
    assert down == pytest.approx((stats.t.cdf(t, 4), stats.t.sf(t, 4)))
    assert pivot_part("d", 0.0, 0.01, 4, (-0.01, 0.01), 5).kind == "equivalence"
    assert pivot_part("d", 0.0, 0.01, 4, (-INF, 0.01), 5).kind == ""
    assert pivot_part("d", 0.0, 0.01, 4, (0.01, INF), 5).kind == ""
    assert pivot_part("d", 0.0, 0.01, 0, (0.01, INF), 1).reason != ""  # no degrees of freedom: no pivot
    assert exact("e", True).n == 0 and exact("e", True).reason == ""
    assert region_of(">") == (0.0, INF) and region_of("<", margin=0.01) == (-INF, -0.01)


def test_a_part_is_contradicted_at_the_level_itself() -> None:
    part = Part("p", p_support=0.5, p_contradict=0.025)
    assert part.decide(0.025) == CONTRADICTED and part.decide(0.0249) == INCONCLUSIVE


# ------------------------------------------------------------------------------------------------------ verdicts
LEVEL = AuditLevel(q=0.05, m=4, selected=2)  # a = 0.025


def test_what_a_verdict_says_word_for_word() -> None:
    inside = Part("in", estimate=0.03, n=5, se=0.005, df=4, region=(0.005, INF))
    inside.p_support, inside.p_contradict = 0.001, 0.999
    p_only = Part("anova", p_support=0.01)
    supported = Outcome("C1", "f", "d", parts=[inside, p_only])
    decide(supported, LEVEL)
    low, high = inside.interval(LEVEL.a)
    assert supported.verdict == SUPPORTED
    assert supported.why == f"in: interval [{low:+.4f}, {high:+.4f}] inside the region > +0.005; anova: p for 0.010"
    outside = Part("out", estimate=-0.03, n=5, se=0.005, df=4, region=(0.005, INF))
    outside.p_support, outside.p_contradict = 0.999, 0.001
    against = Part("anova", p_support=0.9, p_contradict=0.0004)
    contradicted = Outcome("C2", "f", "d", parts=[inside, outside, against])
    decide(contradicted, LEVEL)
    low, high = outside.interval(LEVEL.a)
    assert contradicted.verdict == CONTRADICTED
    assert contradicted.why == (
        f"out: interval [{low:+.4f}, {high:+.4f}] outside the region > +0.005; anova: p against <0.001"
    )
    crossing = Part("cross", estimate=0.006, n=5, se=0.005, df=4, region=(0.005, INF), reason="1 run missing")
    crossing.p_support, crossing.p_contradict = 0.4, 0.6
    short = Part("short", reason="n = 1: no interval")
    weak = Part("weak", p_support=0.2, p_contradict=0.7)
    undecided = Outcome("C3", "f", "d", parts=[inside, crossing, short, weak])
    decide(undecided, LEVEL)
    low, high = crossing.interval(LEVEL.a)
    assert undecided.verdict == INCONCLUSIVE
    assert undecided.why == (
        f"cross: the interval [{low:+.4f}, {high:+.4f}] crosses the region's boundary (> +0.005); 1 run missing; "
        "short: n = 1: no interval; "
        "weak: p 0.200 for, 0.700 against: neither reaches the audit's level"
    )
    empty = Outcome("C4", "f", "d", parts=[])
    decide(empty, LEVEL)
    assert (empty.verdict, empty.why) == (INCONCLUSIVE, "no evidence planned")


def test_benjamini_hochberg_counts_from_the_first_p_value() -> None:
    assert bh_selected([0.01, 0.9, 0.8, 0.7], 0.05) == 1  # only the smallest passes: k = 1
    assert bh_selected([0.2, 0.9], 0.05) == 0 and bh_selected([NAN], 0.05) == 0


# ----------------------------------------------------------------------------------------- the paper's arithmetic
def test_the_best_rival_and_the_residual_df_a_printed_f_and_p_imply(monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    from analysis import literature
    from analysis.audit.paper_values import best_continual, dfs_for

    def fits(df: int, f: float, p: float, hf: float, hp: float) -> bool:
        low, high = stats.f.sf(f + hf, 1, df), stats.f.sf(max(f - hf, 0.0), 1, df)
        return bool(low < p + hp and high >= p - hp)

    assert dfs_for(8.47, 0.008) == [d for d in range(1, 201) if fits(d, 8.47, 0.008, 0.005, 0.0005)]
    assert dfs_for(100.0, 0.5) == []  # no df gives so large an F so weak a p
    assert dfs_for(4.0, 0.07, largest=3) == [d for d in range(1, 4) if fits(d, 4.0, 0.07, 0.5, 0.005)]
    assert dfs_for(1.0, 0.5) == [1]  # the first df is tried
    assert dfs_for(1.0, 0.32)[-1] == 200  # and the last, no further
    rows = [("4", "ours", "Ours", 0.5), ("4", "continual", "A", 0.6), ("4", "continual", "B", np.nan),
            ("5", "continual", "A", 0.6), ("6", "ours", "Ours", 0.5)]  # fmt: skip
    frame = pd.DataFrame(
        [{"paper_table": t, "group": g, "method": m, "category": "avg", "value": v} for t, g, m, v in rows]
    )
    monkeypatch.setattr(literature, "load", lambda: frame)
    assert best_continual("4") == (0.5, "A", 0.6)  # B's missing average is no rival
    assert best_continual("5") is None and best_continual("6") is None  # no Ours; no rival


def test_the_overhead_is_counted_for_the_method_at_each_rank() -> None:
    from analysis.audit.paper_values import overhead_at_table2
    from moleflow.config import defaults
    from moleflow.continual.strategies import METHOD, parameter_counts

    counts = overhead_at_table2([16, 64])
    config = defaults()
    config["strategy"]["name"] = METHOD
    dim = int(config["features"]["embed_dim"])
    for rank in (16, 64):
        config["model"]["lora_rank"] = rank
        assert counts["by_rank"][rank] == parameter_counts(config, dim)["per_task"]
    assert counts["by_rank"][16] < counts["by_rank"][64] and counts["affine"]
    assert math.isclose(counts["overhead_pct"], 100 * counts["per_task"] / counts["base"])
