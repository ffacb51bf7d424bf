"""The claims audit's comparisons of variants, value by value against hand computation: the strategies' ratio (C9),
the forgetting order with the oracle's exact zero (C14), the strategies' order (C15), and Table 8's interaction and
simple effects read as parts (C29-C34)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests_helpers import assert_t_part

from analysis.audit.comparisons import forgetting_order, interaction, ratio, simple_effects_parts, strategy_order
from analysis.audit.context import Context
from analysis.audit.evidence import CONTRADICTED, INF, SUPPORTED
from analysis.blocked import contrasts, design_frame

NAN = float("nan")


def _rows(study: str, values: dict[str, list[float]], column: str, orders: str = "a") -> list[dict[str, Any]]:
    """Per variant, one row per replicate: seeds 0.. in each order of ``orders`` (NaN: a missing run)."""
    rows = []
    for variant, xs in values.items():
        per = len(xs) // len(orders)
        for k, x in enumerate(xs):
            seed, order = k % per, orders[k // per]
            rows.append(
                {"dataset": "d", "study": study, "variant": variant, "strategy": "frozen_base",
                 "run_id": f"{variant}|{seed}|{order}", "seed": seed, "order": order,
                 "status": "missing" if np.isnan(x) else "ok", column: x}
            )  # fmt: skip
    return rows


def _diff(values: dict[str, list[float]], a: str, b: str) -> np.ndarray:
    return np.array(values[a], dtype=float) - np.array(values[b], dtype=float)


# ----------------------------------------------------------------------------------------------------- ratio (C9)
def test_ratio_is_per_replicate_and_tested_inside_the_stated_band() -> None:
    values = {"MoLE-Flow": [0.90, 0.88, 0.91, NAN], "Full-Copy": [0.91, 0.90, 0.92, 0.93]}
    ctx = Context(pd.DataFrame(_rows("strategies", values, "image_auroc_routed")), {}, "d")
    check = {"study": "strategies", "numerator": "MoLE-Flow", "denominator": "Full-Copy",
             "metric": "image_auroc_routed", "low": 0.982, "high": 0.992}  # fmt: skip
    (part,) = ratio(ctx, check)
    assert part.label == "I-AUROC ratio MoLE-Flow / Full-Copy in [0.982, 0.992]"
    assert_t_part(part, np.array(values["MoLE-Flow"]) / np.array(values["Full-Copy"]), (0.982, 0.992))
    assert part.paper == 0.987 and part.origin == 1.0 and part.kind == "equivalence"
    assert part.margin == pytest.approx(0.005)
    assert part.reason == "strategies/MoLE-Flow: 1 of 4 planned run(s) missing"
    assert ctx.reads == [("strategies", "MoLE-Flow"), ("strategies", "Full-Copy")]


# ------------------------------------------------------------------------------------------ forgetting order (C14)
PILOT = {  # FM (paper) of I-AUROC per seed
    "MoLE-Flow": [0.0, 0.0, 0.0],
    "Full-Copy": [0.0, 0.0, 0.0],
    "Sequential": [0.20, 0.25, 0.22],
    "EWC": [0.10, 0.12, 0.15],
    "Replay": [0.04, 0.03, NAN],
}
CHECK_18 = {"study": "pilot", "zero": ["MoLE-Flow", "Full-Copy"], "order": ["Sequential", "EWC", "Replay"],
            "metric": "forgetting_paper_image_auroc", "oracle_metric": "image_auroc"}  # fmt: skip


def _oracle(fm: float, paper: float) -> dict[str, Any]:
    return {"forgetting_oracle": {"bottle": {"fm": 0.0, "paper": 0.0}, "cable": {"fm": fm, "paper": paper}}}


def test_forgetting_order_reads_the_oracle_exactly_then_steps_down_the_order() -> None:
    rows = _rows("strategies", PILOT, "forgetting_paper_image_auroc")  # no pilot planned: the strategies study
    summaries: dict[str, Any] = {r["run_id"]: _oracle(0.0, 0.0) for r in rows}
    summaries["Full-Copy|1|a"] = _oracle(NAN, -0.003)  # NaN is read as no value, a negative drop by its size
    summaries["MoLE-Flow|2|a"] = {"forgetting_oracle": {"bottle": {"fm": 0.0, "paper": NAN}}}
    ctx = Context(pd.DataFrame(rows), summaries, "d")
    parts = forgetting_order(ctx, CHECK_18)
    assert [p.label for p in parts] == [
        "oracle forgetting of MoLE-Flow = 0",
        "oracle forgetting of Full-Copy = 0",
        "FM (paper) I-AUROC: Sequential > EWC",
        "FM (paper) I-AUROC: EWC > Replay",
        "FM (paper) I-AUROC of Replay > 0",
    ]
    zero, copy = parts[:2]
    assert (zero.status, zero.estimate, zero.n, zero.paper) == (SUPPORTED, 0.0, 3, 0.0)
    assert (copy.status, copy.estimate, copy.n) == (CONTRADICTED, pytest.approx(0.003), 3)
    assert_t_part(parts[2], _diff(PILOT, "Sequential", "EWC"), (0.005, INF))
    assert_t_part(parts[3], _diff(PILOT, "EWC", "Replay"), (0.005, INF))
    assert parts[3].reason == "pilot/Replay: 1 of 3 planned run(s) missing"  # the claim's study, read through
    assert_t_part(parts[4], [0.04, 0.03], (0.005, INF))
    assert parts[4].reason == "pilot/Replay: 1 of 3 planned run(s) missing"


def test_forgetting_order_takes_the_worst_drop_over_runs_and_both_kinds() -> None:
    rows = _rows("pilot", PILOT, "forgetting_paper_image_auroc")
    summaries: dict[str, Any] = {r["run_id"]: _oracle(0.0, 0.0) for r in rows}
    summaries["MoLE-Flow|0|a"] = _oracle(0.002, 0.0)  # Chaudhry's FM only
    summaries["MoLE-Flow|1|a"] = _oracle(0.0, -0.004)  # the paper's FM only, and larger
    summaries["Full-Copy|2|a"] = {}  # a summary without the oracle's matrix counts as no drop
    ctx = Context(pd.DataFrame(rows), summaries, "d")
    zero, copy, *_ = forgetting_order(ctx, CHECK_18)
    assert (zero.status, zero.estimate) == (CONTRADICTED, pytest.approx(0.004))
    assert (copy.status, copy.estimate) == (SUPPORTED, 0.0)


def test_forgetting_order_without_a_finished_run_says_why() -> None:
    values = {**PILOT, "Full-Copy": [NAN, NAN, NAN]}
    ctx = Context(pd.DataFrame(_rows("pilot", values, "forgetting_paper_image_auroc")), {}, "d")
    parts = forgetting_order(ctx, CHECK_18)
    assert parts[1].label == "oracle forgetting of Full-Copy = 0" and parts[1].status is None
    assert parts[1].reason == "pilot/Full-Copy: 3 of 3 planned run(s) missing"
    assert parts[0].status == SUPPORTED and parts[0].n == 3  # the summaries are absent: no drop was recorded
    ctx = Context(pd.DataFrame(_rows("pilot", PILOT, "forgetting_paper_image_auroc")), {}, "d")
    (gone, *_) = forgetting_order(ctx, {**CHECK_18, "zero": ["Joint"]})
    assert gone.label == "oracle forgetting of Joint = 0" and gone.reason == "pilot/Joint: not planned"


# ------------------------------------------------------------------------------------------- strategy order (C15)
STRATEGIES = {
    "MoLE-Flow": [0.90, 0.91, 0.92, 0.89, 0.90, 0.93],
    "Full-Copy": [0.902, 0.905, 0.921, 0.894, 0.899, 0.929],
    "Replay": [0.85, 0.86, 0.84, 0.85, 0.87, NAN],
    "EWC": [0.80, 0.82, 0.81, 0.79, 0.80, 0.83],
    "Sequential": [0.70, 0.72, 0.74, 0.71, 0.69, 0.73],
}


def test_strategy_order_is_one_equivalence_and_a_step_per_adjacent_pair() -> None:
    rows = _rows("pilot", STRATEGIES, "image_auroc_routed", orders="ab")
    counts = {"dataset": {"test_counts": {"a": {"normal": 4, "anomalous": 5}, "b": {"normal": 10, "anomalous": 10}}}}
    for summaries, m in (({}, 0.005), ({r["run_id"]: counts for r in rows}, 1 / 40)):
        ctx = Context(pd.DataFrame(rows), dict[str, Any](summaries), "d")
        check = {"study": "pilot", "reference": "MoLE-Flow", "equivalent": "Full-Copy", "margin": 0.005,
                 "order": ["MoLE-Flow", "Replay", "EWC", "Sequential"], "metric": "image_auroc_routed"}  # fmt: skip
        parts = strategy_order(ctx, check)
        note = "" if m == 0.005 else f" (margin raised from 0.005 to the metric's resolution {m:.4f})"
        assert [p.label for p in parts] == [
            f"|Δ I-AUROC (MoLE-Flow - Full-Copy)| < {m:g}",
            f"I-AUROC: MoLE-Flow > Replay{note}",
            f"I-AUROC: Replay > EWC{note}",
            f"I-AUROC: EWC > Sequential{note}",
        ]
        assert_t_part(parts[0], _diff(STRATEGIES, "MoLE-Flow", "Full-Copy"), (-m, m))
        for part, (a, b) in zip(parts[1:], (("MoLE-Flow", "Replay"), ("Replay", "EWC"), ("EWC", "Sequential"))):
            assert_t_part(part, _diff(STRATEGIES, a, b), (m, INF))
        assert parts[2].reason == "pilot/Replay: 1 of 6 planned run(s) missing"
    missing = _rows("pilot", {**STRATEGIES, "Full-Copy": [NAN] + STRATEGIES["Full-Copy"][1:]}, "image_auroc_routed")
    (equal, *_) = strategy_order(Context(pd.DataFrame(missing), {}, "d"), check)
    assert equal.n == 5 and equal.reason == "pilot/Full-Copy: 1 of 6 planned run(s) missing"


# ---------------------------------------------------------------------------------------- interaction (C29-C34)
def _design(component: str, cells: dict[tuple[str, str], list[float]], orders: str = "ab") -> list[dict[str, Any]]:
    values = {f"{component}|{base}|{level}": xs for (base, level), xs in cells.items()}
    return _rows("interaction", values, "pixel_ap_routed", orders)


WA = {  # P-AP per (seed, order): 3 seeds x 2 orders
    ("frozen", "on"): [0.50, 0.52, 0.51, 0.53, 0.49, 0.52],
    ("frozen", "off"): [0.45, 0.46, 0.47, 0.46, 0.44, 0.48],
    ("trainable", "on"): [0.47, 0.49, 0.48, 0.48, 0.47, 0.50],
    ("trainable", "off"): [0.46, 0.47, 0.48, 0.45, 0.46, NAN],
}
SC = {
    ("frozen", "on"): [0.40, 0.41, 0.42, 0.40, 0.41, 0.43],
    ("frozen", "off"): [0.401, 0.409, 0.42, 0.402, 0.41, 0.428],
    ("trainable", "on"): [0.38, 0.39, 0.40, 0.37, 0.38, 0.41],
    ("trainable", "off"): [0.381, 0.391, 0.398, 0.372, 0.379, 0.409],
}


def _by_hand(cells: dict[tuple[str, str], list[float]], blocks: slice | list[int]) -> dict[str, np.ndarray]:
    c = {k: np.array(v, dtype=float)[blocks] for k, v in cells.items()}
    on_f, off_f, on_t, off_t = c["frozen", "on"], c["frozen", "off"], c["trainable", "on"], c["trainable", "off"]
    return {"frozen": on_f - off_f, "trainable": on_t - off_t, "interaction": (on_f - off_f) - (on_t - off_t)}


def test_interaction_part_is_table_8s_blocked_contrast_over_complete_blocks() -> None:
    ctx = Context(pd.DataFrame(_design("WA", WA) + _design("Scale Context", SC)), {}, "d")
    check = {
        "study": "interaction",
        "component": "WA",
        "kind": "Integral",
        "metric": "pixel_ap_routed",
        "margin": 0.005,
    }
    (part,) = interaction(ctx, check)
    assert part.label == "WA: interaction contrast (P-AP) > 0.005"
    assert_t_part(part, _by_hand(WA, [0, 1, 2, 3, 4])["interaction"], (0.005, INF))  # block 2/b lacks a cell
    assert ctx.reads == [("interaction", f"WA|{b}|{c}") for b, c in WA]
    generic = {**check, "component": "Scale Context", "kind": "Generic", "margin": 0.01}
    (part,) = interaction(ctx, generic)
    assert part.label == "Scale Context: interaction contrast (P-AP) within ±0.01"
    assert_t_part(part, _by_hand(SC, slice(None))["interaction"], (-0.01, 0.01))
    (none,) = interaction(ctx, {**check, "component": "DIA"})
    assert none.label == "DIA: interaction contrast (P-AP) > 0.005"
    assert none.reason == "a cell of the 2 x 2 design has no finished run" and none.n == 0


def test_the_parts_read_the_same_contrasts_as_table_8() -> None:
    frame = pd.DataFrame(_design("WA", WA))
    ctx = Context(frame, {}, "d")
    table = contrasts(design_frame(frame, "pixel_ap_routed").dropna())
    check = {"study": "interaction", "component": "WA", "kind": "Integral", "metric": "pixel_ap_routed", "margin": 0.0}
    (part,) = interaction(ctx, check)
    assert (part.estimate, part.se, part.df) == (
        table["interaction"].estimate,
        table["interaction"].se,
        table["interaction"].df,
    )


def test_simple_effects_are_one_part_per_arm_of_each_component() -> None:
    ctx = Context(pd.DataFrame(_design("WA", WA) + _design("Scale Context", SC)), {}, "d")
    check = {"study": "interaction", "integral": ["WA"], "generic": ["Scale Context"], "metric": "pixel_ap_routed"}
    parts = simple_effects_parts(ctx, check)
    assert [p.label for p in parts] == [
        "WA: effect with the frozen base > 0.005",
        "Scale Context: effect with the frozen base > 0.005",
        "Scale Context: effect with the trainable base > 0.005",
    ]
    wa = _by_hand(WA, slice(None))["frozen"]
    assert_t_part(parts[0], wa, (0.005, INF))
    assert parts[0].sd == pytest.approx(wa.std(ddof=1)) and parts[0].margin == 0.005
    assert_t_part(parts[1], _by_hand(SC, slice(None))["frozen"], (0.005, INF))
    assert_t_part(parts[2], _by_hand(SC, slice(None))["trainable"], (0.005, INF))


def test_simple_effects_without_an_interval_say_why() -> None:
    one = {("frozen", "on"): [0.5], ("frozen", "off"): [0.45]}
    gone = {("frozen", "on"): [0.5, 0.51], ("frozen", "off"): [NAN, NAN], ("trainable", "on"): [0.4, 0.41]}
    rows = _design("WA", one, orders="a") + _design("TAL", gone, orders="a")
    counts = {"dataset": {"test_counts": {"a": {"normal": 3, "anomalous": 3}}}}
    ctx = Context(pd.DataFrame(rows), {r["run_id"]: counts for r in rows}, "d")
    check = {"study": "interaction", "integral": ["WA"], "generic": ["TAL"], "metric": "pixel_ap_routed"}
    wa, tal_frozen, tal_trainable = simple_effects_parts(ctx, check)
    assert (wa.label, wa.n, wa.estimate, wa.reason) == (
        "WA: effect with the frozen base > 0.005",
        1,
        pytest.approx(0.05),
        "n = 1: no interval",
    )
    assert (tal_frozen.label, tal_frozen.reason) == (
        "TAL: effect with the frozen base > 0.005",
        "a cell has no finished run",
    )
    assert tal_trainable.reason == "a cell has no finished run" and tal_trainable.n == 0
    image = {**check, "metric": "image_auroc_routed"}
    for r in rows:
        r["image_auroc_routed"] = r["pixel_ap_routed"]
    ctx = Context(pd.DataFrame(rows), {r["run_id"]: counts for r in rows}, "d")
    (wa, *_) = simple_effects_parts(ctx, image)
    assert wa.label == f"WA: effect with the frozen base > {1 / 9:g}"  # the margin raised to one swapped pair


def test_forgetting_order_reads_each_zero_variant_and_keeps_its_margin() -> None:
    values = {**PILOT, "MoLE-Flow": [NAN, NAN, NAN]}  # the first zero variant has no finished run
    rows = _rows("pilot", values, "forgetting_paper_image_auroc")
    summaries: dict[str, Any] = {r["run_id"]: _oracle(0.0, 0.0) for r in rows}
    summaries["Full-Copy|0|a"] = _oracle(0.01, 0.0)
    ctx = Context(pd.DataFrame(rows), summaries, "d")
    parts = forgetting_order(ctx, CHECK_18)
    assert parts[0].reason == "pilot/MoLE-Flow: 3 of 3 planned run(s) missing"
    assert (parts[1].status, parts[1].estimate) == (CONTRADICTED, 0.01)  # read after the variant without runs
    assert parts[-1].margin == 0.005 and parts[-1].region == (0.005, INF)
    unknown = [{**r, "status": "running"} if r["variant"] == "Full-Copy" else r for r in rows]
    (_, copy, *_) = forgetting_order(Context(pd.DataFrame(unknown), summaries, "d"), CHECK_18)
    assert copy.reason == "no finished run"  # a status the shortfall does not name


def test_ratio_says_which_side_is_short() -> None:
    values = {"MoLE-Flow": [0.90, 0.88, 0.91], "Full-Copy": [0.91, NAN, 0.92]}
    ctx = Context(pd.DataFrame(_rows("strategies", values, "image_auroc_routed")), {}, "d")
    check = {"study": "strategies", "numerator": "MoLE-Flow", "denominator": "Full-Copy",
             "metric": "image_auroc_routed", "low": 0.982, "high": 0.992}  # fmt: skip
    (part,) = ratio(ctx, check)
    assert part.n == 2 and part.reason == "strategies/Full-Copy: 1 of 3 planned run(s) missing"


def test_simple_effects_after_an_arm_of_one_block() -> None:
    one_frozen = {("frozen", "on"): [0.5, NAN], ("frozen", "off"): [0.45, NAN],
                  ("trainable", "on"): [0.40, 0.43], ("trainable", "off"): [0.38, 0.40]}  # fmt: skip
    ctx = Context(pd.DataFrame(_design("TAL", one_frozen, orders="a")), {}, "d")
    frozen, trainable = simple_effects_parts(ctx, {"study": "interaction", "integral": [], "generic": ["TAL"],
                                                   "metric": "pixel_ap_routed"})  # fmt: skip
    assert frozen.reason == "n = 1: no interval"
    assert_t_part(trainable, [0.02, 0.03], (0.005, INF))


def test_simple_effects_with_two_blocks_and_a_missing_frozen_arm() -> None:
    two = {("frozen", "on"): [0.50, 0.52], ("frozen", "off"): [0.45, 0.46]}
    trainable_only = {("frozen", "on"): [NAN, NAN], ("frozen", "off"): [NAN, NAN],
                      ("trainable", "on"): [0.40, 0.43], ("trainable", "off"): [0.38, 0.40]}  # fmt: skip
    rows = _design("WA", two, orders="a") + _design("TAL", trainable_only, orders="a")
    ctx = Context(pd.DataFrame(rows), {}, "d")
    check = {"study": "interaction", "integral": ["WA"], "generic": ["TAL"], "metric": "pixel_ap_routed"}
    wa, tal_frozen, tal_trainable = simple_effects_parts(ctx, check)
    assert_t_part(wa, [0.05, 0.06], (0.005, INF))  # two blocks: an interval
    assert tal_frozen.reason == "a cell has no finished run"
    assert_t_part(tal_trainable, [0.02, 0.03], (0.005, INF))
