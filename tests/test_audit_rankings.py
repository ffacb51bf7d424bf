"""The claims audit's rankings, power and margins: the top-two and largest-drop rules by paired parts, the ranking's tau within replicates, the replicates an undecided part needs, margins raised to a metric's resolution, and a comparison against a run bound (C18g)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from tests_helpers import verdict_of

from analysis.audit.evidence import (
    exact,
    sign_test,
)
from analysis.audit.verdicts import CONTRADICTED, INCONCLUSIVE, SUPPORTED


# ------------------------------------------------------------------------------------------ rankings by paired tests
def _ablation_context(drops: dict[str, list[float]]):
    """An ablation study whose variants score the reference's 0.5 minus the given per-seed drops."""
    from analysis.audit.context import Context

    rows = [
        {
            "study": "ablation",
            "variant": "MoLE-Flow",
            "dataset": "d",
            "run_id": f"r{s}",
            "seed": s,
            "order": "a",
            "status": "ok",
            "pixel_ap_routed": 0.5,
        }
        for s in range(3)
    ]
    rows += [
        {
            "study": "ablation",
            "variant": v,
            "dataset": "d",
            "run_id": f"{v}{s}",
            "seed": s,
            "order": "a",
            "status": "ok",
            "pixel_ap_routed": 0.5 - d,
        }
        for v, ds in drops.items()
        for s, d in enumerate(ds)
    ]
    return Context(pd.DataFrame(rows), {}, "d")


def test_top_two_follows_its_rule_and_decides_by_paired_tests() -> None:
    from analysis.audit.comparisons import ranking

    order = ["TAL", "WA", "A", "B", "C"]
    check = {"study": "ablation", "reference": "MoLE-Flow", "metric": "pixel_ap_routed", "order": order, "top": 2}

    def top(means: dict[str, float], seeds: int = 3) -> str:
        parts = ranking(_ablation_context(_noisy(means, seeds)), check)[1:]
        assert len(parts) == 2 * 3  # a pair per named and other ablation
        return verdict_of(*parts)

    clear = {"TAL": 0.08, "WA": 0.07, "A": 0.01, "B": 0.02, "C": 0.0}
    assert top(clear) == SUPPORTED
    # another ablation costing more than a named one: that one is not among the two largest
    assert top({**clear, "WA": 0.015, "B": 0.09}) == CONTRADICTED
    assert top({**clear, "TAL": 0.001, "WA": 0.003, "A": 0.08}) == CONTRADICTED
    assert top(clear, seeds=1) == INCONCLUSIVE  # one seed: no test, no decision


def test_the_rankings_tau_is_computed_within_each_replicate() -> None:
    from analysis.audit.comparisons import ranking

    order = ["TAL", "WA", "A", "B", "C"]
    check = {"study": "ablation", "reference": "MoLE-Flow", "metric": "pixel_ap_routed", "order": order, "top": 2}
    drops = {"TAL": [0.08, 0.02], "WA": [0.07, 0.08], "A": [0.03, 0.01], "B": [0.02, 0.03], "C": [0.01, 0.0]}
    tau = ranking(_ablation_context(drops), check)[0]
    paper = [5, 4, 3, 2, 1]
    by_hand = [stats.kendalltau(paper, [drops[v][s] for v in order]).statistic for s in range(2)]
    assert tau.n == 2 and tau.estimate == pytest.approx(np.mean(by_hand))  # (1.0 + 0.4) / 2, not tau of the means
    assert tau.se == pytest.approx(np.std(by_hand, ddof=1) / math.sqrt(2)) and tau.region == (0.0, math.inf)


def _noisy(means: dict[str, float], seeds: int) -> dict[str, list[float]]:
    """Per-seed drops around the given means (noise 0.001, independent per variant)."""
    rng = np.random.default_rng(7)
    return {v: list(m + 0.001 * rng.standard_normal(seeds)) for v, m in means.items()}


def test_the_largest_drop_is_tested_against_every_other_ablation() -> None:
    from analysis.audit.comparisons import _largest_drop

    drops = {"DIA": 0.06, "X": 0.01, "Y": 0.03}
    check = {"study": "ablation", "reference": "MoLE-Flow", "largest_of": ["X", "Y"]}
    spec = {"variant": "DIA", "metric": "pixel_ap_routed"}
    parts = _largest_drop(_ablation_context(_noisy(drops, 3)), check, spec)
    assert len(parts) == 2 and verdict_of(*parts) == SUPPORTED
    assert verdict_of(*_largest_drop(_ablation_context(_noisy({**drops, "Y": 0.09}, 3)), check, spec)) == CONTRADICTED


# ------------------------------------------------------------------------------------------ power
def test_the_replicates_an_undecided_part_needs_at_the_audits_level() -> None:
    from analysis.audit.power import part_power, replicates_for, sd_upper

    diff = np.array([-0.03, -0.05, -0.02])
    part = sign_test("Δ < 0", diff, "<", 0.0, 0.005, paper=-0.076)
    sd = sd_upper(diff.std(ddof=1), 3)
    assert sd == pytest.approx(diff.std(ddof=1) * math.sqrt(2 / stats.chi2.ppf(0.2, 2)))
    needed = replicates_for(0.076 - 0.005, sd, 0.001)  # the paper's effect, from the region's boundary
    assert needed is not None

    def reach(n: int) -> float:
        return (stats.t.ppf(1 - 0.001, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / math.sqrt(n)

    assert reach(needed) <= 0.071 < reach(needed - 1)
    assert f"n={needed}" in part_power(part, "inconclusive", 0.001) and "the paper's -0.076" in part_power(
        part, "inconclusive", 0.001
    )
    opposite = sign_test("Δ < 0", np.array([0.01, 0.02, 0.015]), "<", 0.0, 0.005)
    assert "outside the region" in part_power(opposite, "inconclusive", 0.001)
    assert part_power(part, "supported", 0.001) == "" and part_power(exact("x", True), "inconclusive", 0.01) == ""


# ------------------------------------------------------------------------------------------ margins and the metric's resolution
def test_a_margin_below_the_metrics_resolution_is_raised_to_it() -> None:
    """Two categories of 2 normal and 3 anomalous test images: one swapped pair moves the mean I-AUROC by 1/12."""
    from analysis.audit.comparisons import paired

    ctx = _ablation_context(_noisy({"X": 0.001}, 3))
    ctx.runs["image_auroc_routed"] = ctx.runs["pixel_ap_routed"]
    counts = {"test_counts": {"a": {"normal": 2, "anomalous": 3}, "b": {"normal": 4, "anomalous": 5}}}
    ctx.summaries.update({rid: {"dataset": counts} for rid in ctx.runs["run_id"]})
    assert ctx.resolution("ablation", "image_auroc_routed") == pytest.approx(1 / 12)
    assert ctx.resolution("ablation", "pixel_ap_routed") == 0.0  # pixel metrics rank thousands of pixels
    check = {
        "study": "ablation",
        "reference": "MoLE-Flow",
        "parts": [{"variant": "X", "metric": "image_auroc_routed", "equivalence": 0.005}],
    }
    (part,) = paired(ctx, check)
    assert part.margin == pytest.approx(1 / 12) and "raised from 0.005 to the metric's resolution 0.0833" in part.label
    ctx.summaries.clear()  # summaries written before runs recorded their test counts: the margin as registered
    (part,) = paired(ctx, check)
    assert part.margin == 0.005


# ------------------------------------------------------------------------------------------ C18g: against a run bound
def _bound_context(moleflow: list[float], joint: dict[int, float], ratio: float = 1.0):
    from analysis.audit.context import Context

    rows, summaries = [], {}
    for seed, value in enumerate(moleflow):
        rows.append(
            {
                "study": "main",
                "variant": "MoLE-Flow",
                "dataset": "d",
                "run_id": f"m{seed}",
                "seed": seed,
                "order": "alphabetical",
                "status": "ok",
                "strategy": "frozen_base",
                "image_auroc_routed": value,
            }
        )
    for seed, value in joint.items():
        rows.append(
            {
                "study": "main",
                "variant": "Joint_PatchCore",
                "dataset": "d",
                "run_id": f"j{seed}",
                "seed": seed,
                "order": "alphabetical",
                "status": "ok",
                "strategy": "knn",
                "image_auroc_routed": value,
            }
        )
        summaries[f"j{seed}"] = {"config": {"strategy": {"name": "knn", "knn_coreset_ratio": ratio}}}
    return Context(pd.DataFrame(rows), dict(summaries), "d")


CHECK = {
    "study": "main",
    "variant": "MoLE-Flow",
    "reference": "Joint_PatchCore",
    "metric": "image_auroc_routed",
    "margin": 0.006,
}


def test_a_bound_without_random_choice_is_compared_with_every_seed_one_sample() -> None:
    from analysis.audit.comparisons import against_bound

    moleflow = [0.90, 0.91, 0.89]
    [part] = against_bound(_bound_context(moleflow, {0: 0.976}), CHECK)
    diff = np.array(moleflow) - 0.976  # by hand: one-sided t-test of mean(diff) < -0.006
    t = (diff.mean() + 0.006) / (diff.std(ddof=1) / math.sqrt(3))
    assert part.n == 3 and part.estimate == pytest.approx(diff.mean())
    assert part.p_contradict == pytest.approx(stats.t.cdf(t, df=2), rel=1e-9)
    assert part.p_support == pytest.approx(stats.t.sf(t, df=2), rel=1e-9)
    assert "one-sample" in part.label and verdict_of(part) == CONTRADICTED
    [close] = against_bound(_bound_context([0.977, 0.978, 0.979], {0: 0.976}), CHECK)
    assert verdict_of(close) == SUPPORTED


def test_a_bound_run_on_every_seed_is_paired_and_a_random_single_run_decides_nothing() -> None:
    from analysis.audit.comparisons import against_bound

    [paired_part] = against_bound(_bound_context([0.90, 0.95, 0.97], {0: 0.91, 1: 0.94, 2: 0.975}), CHECK)
    assert paired_part.n == 3 and paired_part.estimate == pytest.approx(np.mean([-0.01, 0.01, -0.005]))
    assert "one-sample" not in paired_part.label
    [undecided] = against_bound(_bound_context([0.90, 0.91, 0.89], {0: 0.976}, ratio=0.1), CHECK)
    assert "makes random choices" in undecided.reason and verdict_of(undecided) == INCONCLUSIVE


def test_a_bound_whose_run_records_no_strategy_is_taken_to_draw_at_random() -> None:
    from analysis.audit.comparisons import against_bound

    ctx = _bound_context([0.90, 0.91, 0.89], {0: 0.976})
    ctx.summaries["j0"] = {"config": {}}  # a summary without the strategy section: no claim of a whole bank
    [undecided] = against_bound(ctx, CHECK)
    assert undecided.n == 0 and "makes random choices" in undecided.reason
