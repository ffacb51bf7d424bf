"""The claims audit's paired checks, value by value against hand computation: every form of a paired part
(one-sample, equivalence, an interval, a stated threshold, a direction with a margin), the best value and the
largest drop they add, a comparison against a bound, the ranking's tau part, and the helpers they share (pairs,
shortfalls, run descriptions, margins raised to a metric's resolution)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests_helpers import assert_t_part

from analysis.audit.comparisons import against_bound, paired, ranking
from analysis.audit.context import Context, describe, label_of, shortfall, step, with_shortfall
from analysis.audit.evidence import INF, Part

NAN = float("nan")
VALUES = {  # P-AP and I-AUROC per seed of the ablation study (NaN: a missing run)
    "MoLE-Flow": [0.50, 0.52, 0.51, 0.53],
    "w/o WA": [0.45, 0.46, 0.47, NAN],
    "w/o TAL": [0.48, 0.50, 0.50, 0.51],
    "w/o PE": [0.501, 0.519, 0.512, 0.529],
}


def _rows(values: dict[str, list[float]] = VALUES, study: str = "ablation") -> list[dict[str, Any]]:
    return [
        {"dataset": "d", "study": study, "variant": v, "strategy": "frozen_base", "run_id": f"{v}{s}", "seed": s,
         "order": "a", "status": "missing" if np.isnan(x) else "ok", "pixel_ap_routed": x,
         "image_auroc_routed": x + 0.4}
        for v, xs in values.items() for s, x in enumerate(xs)
    ]  # fmt: skip


def _ctx(values: dict[str, list[float]] = VALUES, summaries: dict[str, Any] | None = None) -> Context:
    return Context(pd.DataFrame(_rows(values)), dict(summaries or {}), "d")


def _diff(a: str, b: str) -> np.ndarray:
    return np.array(VALUES[a]) - np.array(VALUES[b])


MISSING = "ablation/w/o WA: 1 of 4 planned run(s) missing"


# --------------------------------------------------------------------------------------------------- paired parts
def test_each_form_of_a_paired_part_by_hand() -> None:
    parts = [
        {"variant": "w/o WA", "metric": "pixel_ap_routed", "direction": "<", "paper": -0.074},
        {"variant": "w/o TAL", "metric": "pixel_ap_routed", "direction": "<", "threshold": -0.01, "paper": -0.02},
        {"variant": "w/o PE", "metric": "pixel_ap_routed", "equivalence": 0.01, "paper": 0.001},
        {"variant": "w/o WA", "metric": "pixel_ap_routed", "region": [-0.1, -0.02], "paper": -0.05},
        {"variant": "w/o WA", "metric": "pixel_ap_routed", "direction": "<", "margin": 0.02},
        {"variant": "w/o TAL", "metric": "pixel_ap_routed", "one_sample": True, "direction": ">", "paper": 0.5},
        {"variant": "w/o WA", "metric": "pixel_ap_routed", "one_sample": True, "direction": "<", "margin": 0.3},
    ]
    ctx = _ctx()
    got = paired(ctx, {"study": "ablation", "reference": "MoLE-Flow", "parts": parts})
    assert [p.label for p in got] == [
        "Δ P-AP (w/o WA - MoLE-Flow) < 0",
        "Δ P-AP (w/o TAL - MoLE-Flow) < -0.01",
        "|Δ P-AP (w/o PE - MoLE-Flow)| < 0.01",
        "Δ P-AP (w/o WA - MoLE-Flow) in [-0.1, -0.02]",
        "Δ P-AP (w/o WA - MoLE-Flow) < 0",
        "P-AP of w/o TAL > 0",
        "P-AP of w/o WA < 0",
    ]
    assert_t_part(got[0], _diff("w/o WA", "MoLE-Flow"), (-INF, -0.005))
    assert (got[0].paper, got[0].margin, got[0].reason) == (-0.074, 0.005, MISSING)
    assert_t_part(got[1], _diff("w/o TAL", "MoLE-Flow"), (-INF, -0.01))
    assert got[1].paper == -0.02 and np.isnan(got[1].margin) and got[1].reason == ""  # a threshold, no margin
    assert_t_part(got[2], _diff("w/o PE", "MoLE-Flow"), (-0.01, 0.01))
    assert got[2].paper == 0.001 and got[2].kind == "equivalence"
    assert_t_part(got[3], _diff("w/o WA", "MoLE-Flow"), (-0.1, -0.02))
    assert got[3].paper == -0.05 and got[3].reason == MISSING
    assert_t_part(got[4], _diff("w/o WA", "MoLE-Flow"), (-INF, -0.02))
    assert np.isnan(got[4].paper) and got[4].margin == 0.02
    assert_t_part(got[5], VALUES["w/o TAL"], (0.005, INF))
    assert got[5].paper == 0.5 and got[5].margin == 0.005
    assert_t_part(got[6], VALUES["w/o WA"], (-INF, -0.3))
    assert got[6].reason == MISSING and np.isnan(got[6].paper)


def test_a_paired_margin_is_raised_to_the_metrics_resolution_and_names_it() -> None:
    counts = {"dataset": {"test_counts": {"a": {"normal": 2, "anomalous": 5}}}}
    ctx = _ctx(summaries={f"{v}{s}": counts for v in VALUES for s in range(4)})
    parts = [
        {"variant": "w/o TAL", "metric": "image_auroc_routed", "direction": "<"},
        {"variant": "w/o PE", "metric": "image_auroc_routed", "equivalence": 0.005},
        {"variant": "w/o TAL", "metric": "image_auroc_routed", "direction": "<", "threshold": -0.01},
    ]
    low, equal, stated = paired(ctx, {"study": "ablation", "reference": "MoLE-Flow", "parts": parts})
    note = " (margin raised from 0.005 to the metric's resolution 0.1000)"
    assert low.label == "Δ I-AUROC (w/o TAL - MoLE-Flow) < 0" + note and low.region == pytest.approx((-INF, -0.1))
    assert equal.label == "|Δ I-AUROC (w/o PE - MoLE-Flow)| < 0.1" + note
    assert equal.region == pytest.approx((-0.1, 0.1))
    assert stated.label == "Δ I-AUROC (w/o TAL - MoLE-Flow) < -0.01" and stated.region == (-INF, -0.01)


def test_a_paired_check_adds_the_best_value_and_the_largest_drop() -> None:
    ctx = _ctx()
    check = {
        "study": "ablation",
        "reference": "MoLE-Flow",
        "parts": [{"variant": "w/o WA", "metric": "pixel_ap_routed", "direction": "<"}],
        "largest_of": ["w/o TAL", "w/o PE"],
        "best": {"sweep": "tail_weight", "best": "1", "metric": "pixel_ap_routed"},
    }
    first, best, over_tal, over_pe = paired(ctx, check)
    assert first.label == "Δ P-AP (w/o WA - MoLE-Flow) < 0"
    assert (best.label, best.reason) == ("tail_weight 1 best", "the sensitivity study has no tail_weight sweep")
    assert over_tal.label == "P-AP: w/o WA below w/o TAL" and over_pe.label == "P-AP: w/o WA below w/o PE"
    assert_t_part(over_tal, _diff("w/o WA", "w/o TAL"), (-INF, -0.005))
    assert over_tal.margin == 0.005 and over_tal.reason == MISSING
    assert_t_part(over_pe, _diff("w/o WA", "w/o PE"), (-INF, -0.005))


# ------------------------------------------------------------------------------------------------ against a bound
def _bound(reference: list[float], summaries: dict[str, Any] | None = None) -> Context:
    """MoLE-Flow's runs and the reference's (a shorter list: the reference planned fewer seeds)."""
    values = {"MoLE-Flow": [0.90, 0.91, 0.89, NAN], "Joint": reference}
    rows = [{**r, "study": "main"} for r in _rows(values)]
    return Context(pd.DataFrame(rows), dict(summaries or {}), "d")


BOUND = {"study": "main", "variant": "MoLE-Flow", "reference": "Joint", "metric": "pixel_ap_routed", "margin": 0.01}


def test_a_bound_part_by_hand_with_its_paper_value_and_shortfalls() -> None:
    [part] = against_bound(_bound([0.91, 0.93, 0.90, NAN]), {**BOUND, "paper": -0.02})
    assert part.label == "Δ P-AP (MoLE-Flow - Joint) > -0.01"
    assert_t_part(part, [-0.01, -0.02, -0.01], (-0.01, INF))
    assert part.paper == -0.02 and np.isnan(part.margin)  # against a stated bound: no margin of its own
    assert part.reason == "main/MoLE-Flow: 1 of 4 planned run(s) missing; main/Joint: 1 of 4 planned run(s) missing"
    [no_paper] = against_bound(_bound([0.91, 0.93, 0.90, 0.9]), BOUND)
    assert np.isnan(no_paper.paper) and no_paper.reason == "main/MoLE-Flow: 1 of 4 planned run(s) missing"
    [none] = against_bound(_bound([NAN, NAN, NAN, NAN]), BOUND)
    assert none.label == "Δ P-AP (MoLE-Flow - Joint) > -0.01"
    assert none.reason == "no finished Joint run; main/Joint: 4 of 4 planned run(s) missing"


def test_a_bound_that_cannot_stand_for_every_seed_says_why() -> None:
    knn = {"config": {"strategy": {"name": "knn", "knn_coreset_ratio": 0.1}}}  # a coreset: drawn at random
    [part] = against_bound(_bound([0.95], {"Joint0": knn}), BOUND)
    assert part.label == "Δ P-AP (MoLE-Flow - Joint) > -0.01"
    assert part.reason == (
        "Joint did not run every seed of MoLE-Flow and makes random choices: no value to compare each seed with; "
        "main/MoLE-Flow: 1 of 4 planned run(s) missing"
    )
    whole = {"config": {"strategy": {"name": "knn", "knn_coreset_ratio": 1.0}}}
    [one] = against_bound(_bound([0.95], {"Joint0": whole}), BOUND)
    assert one.label == "Δ P-AP (MoLE-Flow - Joint) > -0.01 (one-sample: Joint makes no random choice, one run)"
    assert_t_part(one, np.array([0.90, 0.91, 0.89]) - 0.95, (-0.01, INF))


# ---------------------------------------------------------------------------------------------------- the ranking
def test_the_rankings_tau_part_is_labelled_and_counts_replicates() -> None:
    check = {"study": "ablation", "reference": "MoLE-Flow", "metric": "pixel_ap_routed", "order": ["w/o WA", "w/o TAL"],
             "top": 1}  # fmt: skip
    tau, drop = ranking(_ctx(), check)
    assert tau.label == "Kendall tau (paper order vs P-AP drops), per replicate"
    assert tau.units == "replicates (a tau each)" and tau.n == 3  # seed 3 lacks w/o WA
    assert drop.label == "P-AP: w/o WA below w/o TAL"
    [empty] = ranking(_ctx(), {**check, "order": [], "top": 0})
    assert empty.n == 0 and empty.reason == "no finished run"


# ------------------------------------------------------------------------------------------------- shared helpers
def test_the_helpers_name_runs_shortfalls_and_margins() -> None:
    assert label_of("aupro_routed") == "aupro_routed" and label_of("pixel_ap_routed") == "P-AP"
    rows = pd.DataFrame(
        {"run_id": ["a", "b", "c", "d", "d", "e"], "seed": [0, 1, 2, 3, 3, 4], "order": ["x"] * 6,
         "status": ["missing", "diverged", "ok", "ok", "ok", "ok"], "study": ["s", "s", "s", "s", "t", "s"],
         "planned_by": [np.nan, "", "order", "depth", "depth", np.nan]}
    )  # fmt: skip
    assert shortfall(rows, "s", "v") == "s/v: 1 of 6 planned run(s) missing, 1 of 6 planned run(s) diverged"
    # run d once, though two studies list it; run e planned by its own study (no lender)
    assert describe(rows) == "seeds 2, 3, 4 (seed 2 planned by order; seed 3 planned by depth)"
    assert describe(rows[rows["status"] != "ok"]) == "no finished run"
    assert with_shortfall(Part("x", reason="n = 1"), "a", "", "b").reason == "n = 1; a; b"
    # one swapped pair of 1 x 10 x 20 is exactly the default margin: not raised
    counts = {"dataset": {"test_counts": {"a": {"normal": 10, "anomalous": 20}, "b": {"normal": 4, "anomalous": 0}}}}
    ctx = _ctx(summaries={"MoLE-Flow0": counts})
    assert ctx.resolution("ablation", "image_auroc_routed") == pytest.approx(1 / (2 * 10 * 20))  # b has no pairs
    exact_counts = {"dataset": {"test_counts": {"a": {"normal": 10, "anomalous": 20}}}}
    ctx = _ctx(summaries={"MoLE-Flow0": exact_counts})
    assert ctx.margin("ablation", "image_auroc_routed", 0.005) == (0.005, "")
    part = step(ctx, "ablation", "MoLE-Flow", "w/o TAL", "pixel_ap_routed")
    assert part.margin == 0.005 and part.region == (0.005, INF)


def test_paired_parts_upward_and_without_a_papers_value() -> None:
    parts = [
        {"variant": "MoLE-Flow", "metric": "pixel_ap_routed", "direction": ">"},
        {"variant": "w/o PE", "metric": "pixel_ap_routed", "equivalence": 0.01},
        {"variant": "w/o WA", "metric": "pixel_ap_routed", "region": [-0.1, -0.02]},
    ]
    up, equal, inside = paired(_ctx(), {"study": "ablation", "reference": "w/o TAL", "parts": parts})
    assert up.label == "Δ P-AP (MoLE-Flow - w/o TAL) > 0"
    assert_t_part(up, _diff("MoLE-Flow", "w/o TAL"), (0.005, INF))
    assert all(np.isnan(p.paper) for p in (up, equal, inside))


def test_the_bound_and_the_largest_drop_raise_their_margin_to_the_image_resolution() -> None:
    from analysis.audit.comparisons import _largest_drop

    counts = {"dataset": {"test_counts": {"a": {"normal": 2, "anomalous": 5}}}}
    ctx = _ctx(summaries={f"{v}{s}": counts for v in VALUES for s in range(4)})
    check = {"study": "ablation", "largest_of": ["w/o TAL"]}
    (drop,) = _largest_drop(ctx, check, {"variant": "w/o WA", "metric": "image_auroc_routed"})
    assert drop.label == "I-AUROC: w/o WA below w/o TAL (margin raised from 0.005 to the metric's resolution 0.1000)"
    assert drop.region == pytest.approx((-INF, -0.1))
    bound = {
        **BOUND,
        "study": "ablation",
        "variant": "w/o TAL",
        "reference": "MoLE-Flow",
        "metric": "image_auroc_routed",
    }
    [part] = against_bound(ctx, bound)
    assert (
        part.label
        == "Δ I-AUROC (w/o TAL - MoLE-Flow) > -0.1 (margin raised from 0.01 to the metric's resolution 0.1000)"
    )


def test_a_one_sample_bound_names_its_diverged_reference_run() -> None:
    whole = {"config": {"strategy": {"name": "knn", "knn_coreset_ratio": 1.0}}}
    rows = [{**r, "study": "main"} for r in _rows({"MoLE-Flow": [0.90, 0.91, 0.89], "Joint": [0.95, NAN]})]
    rows[-1]["status"] = "diverged"
    ctx = Context(pd.DataFrame(rows), {"Joint0": whole, "Joint1": whole}, "d")
    [one] = against_bound(ctx, BOUND)
    assert "one-sample" in one.label and one.reason == "main/Joint: 1 of 2 planned run(s) diverged"
