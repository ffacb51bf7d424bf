"""The claims audit's checks over designs of several levels, value by value against hand computation: the depth
study's best depth (C35), the sensitivity sweeps' best value, trend, order and equivalence (C37-C42), and image
top-k re-scored from the same models (C41)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests_helpers import assert_t_part

from analysis.audit.context import Context
from analysis.audit.designs import (
    collapse,
    depth_best,
    rescored_equivalent,
    sensitivity_classes,
    sweep_best,
    sweep_equivalent,
    sweep_order,
    sweep_trend,
)
from analysis.audit.evidence import INF, Part

NAN = float("nan")


def _context(rows: list[dict[str, Any]], summaries: dict[str, Any] | None = None) -> Context:
    return Context(pd.DataFrame(rows), dict(summaries or {}), "d")


def _runs(study: str, variant: str, values: list[float], column: str, **extra: Any) -> list[dict[str, Any]]:
    """One row per seed (order ``a``); a NaN value is a missing run."""
    return [
        {"dataset": "d", "study": study, "variant": variant, "strategy": "frozen_base", "run_id": f"{variant}|{seed}",
         "seed": seed, "order": "a", "status": "missing" if np.isnan(x) else "ok", column: x, **extra}
        for seed, x in enumerate(values)
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------------------ depth (C35)
DEPTHS = {  # per variant, P-AP per seed 0..3 (NaN: a missing run)
    "M6 N2": [0.50, 0.52, 0.51, 0.53],  # the reference (the schema's 6/2: no main-study run says otherwise)
    "M8 N0": [0.45, 0.46, 0.47, 0.44],  # all coupling, the reference's total depth: a rival
    "M0 N1": [0.30, 0.33, 0.31, 0.35],  # all DIA: rivals
    "M0 N2": [0.40, 0.38, 0.39, 0.41],
    "M4 N4": [0.49, 0.515, 0.52, NAN],  # the rest: not above the reference
    "M8 N1": [0.505, 0.51, 0.50, 0.54],
    "M4 N0": [0.48, 0.47, 0.50, 0.49],
    "M0 N0": [0.20, 0.21, 0.22, 0.20],
}


def _depth_rows(depths: dict[str, list[float]]) -> list[dict[str, Any]]:
    rows = _runs("depth", "default", [0.5, 0.5, 0.5, 0.5], "pixel_ap_routed")  # not a depth: skipped
    for variant, values in depths.items():
        rows += _runs("depth", variant, values, "pixel_ap_routed")
    return rows


def _diff(a: str, b: str, depths: dict[str, list[float]] = DEPTHS) -> np.ndarray:
    d = np.array(depths[a]) - np.array(depths[b])
    return d[np.isfinite(d)]


def test_depth_best_steps_over_its_rivals_and_guards_every_other_depth() -> None:
    ctx = _context(_depth_rows(DEPTHS))
    parts = depth_best(ctx, {"study": "depth", "metric": "pixel_ap_routed"})
    assert [p.label for p in parts] == [
        "P-AP: M6 N2 > M8 N0",
        "P-AP: M6 N2 > M0 N1",
        "P-AP: M6 N2 > M0 N2",
        "P-AP: M4 N4 not above M6 N2 by 0.005 or more",
        "P-AP: M8 N1 not above M6 N2 by 0.005 or more",
        "P-AP: M4 N0 not above M6 N2 by 0.005 or more",
        "P-AP: M0 N0 not above M6 N2 by 0.005 or more",
    ]
    for part, rival in zip(parts[:3], ("M8 N0", "M0 N1", "M0 N2")):
        assert_t_part(part, _diff("M6 N2", rival), (0.005, INF))
        assert part.reason == ""
    for part, other in zip(parts[3:], ("M4 N4", "M8 N1", "M4 N0", "M0 N0")):
        assert_t_part(part, _diff(other, "M6 N2"), (-INF, 0.005))
        assert part.margin == 0.005
    assert parts[3].n == 3 and parts[3].reason == "depth/M4 N4: 1 of 4 planned run(s) missing"
    assert all(p.reason == "" for p in parts[4:])
    assert [(s, v) for s, v in ctx.reads] == [
        ("depth", "M6 N2"), ("depth", "M8 N0"), ("depth", "M6 N2"), ("depth", "M0 N1"), ("depth", "M6 N2"),
        ("depth", "M0 N2"), ("depth", "M4 N4"), ("depth", "M6 N2"), ("depth", "M8 N1"), ("depth", "M6 N2"),
        ("depth", "M4 N0"), ("depth", "M6 N2"), ("depth", "M0 N0"), ("depth", "M6 N2"),
    ]  # fmt: skip


def test_depth_best_takes_the_reference_from_the_main_studys_method_run() -> None:
    main = _runs(
        "main", "MoLE-Flow", [0.5], "pixel_ap_routed", **{"cfg.model.coupling_blocks": 8, "cfg.model.dia_blocks": 1}
    )
    main += [{**main[0], "strategy": "joint", "variant": "Joint", "run_id": "joint",
              "cfg.model.coupling_blocks": 6, "cfg.model.dia_blocks": 2}]  # fmt: skip
    ctx = _context(_depth_rows(DEPTHS) + main)
    parts = depth_best(ctx, {"study": "depth", "metric": "pixel_ap_routed"})
    rivals = [p.label for p in parts if " > " in p.label]
    assert rivals == ["P-AP: M8 N1 > M0 N1", "P-AP: M8 N1 > M0 N2"]  # 9/0 (its total) is not planned
    assert_t_part(parts[0], _diff("M8 N1", "M0 N1"), (0.005, INF))
    others = [p.label.split(" not above")[0] for p in parts if "not above" in p.label]
    assert others == ["P-AP: M6 N2", "P-AP: M8 N0", "P-AP: M4 N4", "P-AP: M4 N0", "P-AP: M0 N0"]


def test_depth_best_without_its_reference_or_its_rivals_says_why() -> None:
    (part,) = depth_best(_context(_depth_rows({"M4 N4": [0.5, 0.5]})), {"study": "depth", "metric": "pixel_ap_routed"})
    assert part.label == "the reference depth is in the depth study" and part.n == 0
    assert part.reason == "the depth study has no variant at the main study's depth"
    ctx = _context(_depth_rows({"M6 N2": [0.5, 0.52, 0.51], "M4 N4": [0.49, 0.5, 0.52]}))
    guard, missing = depth_best(ctx, {"study": "depth", "metric": "pixel_ap_routed"})
    assert guard.label == "P-AP: M4 N4 not above M6 N2 by 0.005 or more"
    assert missing.label == "an all-coupling or all-DIA rival is planned"
    assert missing.reason == "no variant M+N/0 or 0/N in the depth study" and missing.n == 0


def test_depth_best_raises_the_margin_to_an_image_metrics_resolution() -> None:
    rows = []
    for variant, values in (("M6 N2", [0.80, 0.90, 0.85]), ("M8 N0", [0.70, 0.72, 0.69]), ("M4 N4", [0.78, 0.80, 0.9])):
        rows += _runs("depth", variant, values, "image_auroc_routed")
    counts = {"dataset": {"test_counts": {"a": {"normal": 2, "anomalous": 3}, "b": {"normal": 4, "anomalous": 4}}}}
    ctx = _context(rows, {r["run_id"]: counts for r in rows})
    step_, guard = depth_best(ctx, {"study": "depth", "metric": "image_auroc_routed"})
    step = 1 / (2 * 2 * 3)  # one swapped pair in the category with the fewest pairs, over two categories
    assert step_.label == f"I-AUROC: M6 N2 > M8 N0 (margin raised from 0.005 to the metric's resolution {step:.4f})"
    assert step_.region == pytest.approx((step, INF))
    assert guard.label == (
        f"I-AUROC: M4 N4 not above M6 N2 by {step:g} or more"
        f" (margin raised from 0.005 to the metric's resolution {step:.4f})"
    )
    assert_t_part(guard, np.array([0.78, 0.80, 0.9]) - np.array([0.80, 0.90, 0.85]), (-INF, step))
    assert guard.margin == pytest.approx(step)


# ------------------------------------------------------------------------------------------------- sweeps (C37-C42)
def _sweep_rows(sweep: str, key: str, default: float, levels: dict[float, list[float]], seeds: int = 4) -> list[dict]:
    """The sensitivity study: the default (``key`` = ``default``) first, then one variant per level; ``levels``
    gives P-AP per level (the default's included) and replicate ``(seed, order)``: seeds 0.. in order ``a``
    then in order ``b``."""
    rows = []
    for level, values in levels.items():
        variant = "default" if level == default else f"{sweep} {level:g}"
        for k, x in enumerate(values):
            seed, order = k % seeds, "ab"[k // seeds]
            rows.append(
                {"dataset": "d", "study": "sensitivity", "variant": variant, "strategy": "frozen_base",
                 "run_id": f"{variant}|{seed}|{order}", "seed": seed, "order": order,
                 "status": "missing" if np.isnan(x) else "ok", "pixel_ap_routed": x, f"cfg.{key}": level}
            )  # fmt: skip
    return rows


TAIL = {  # tail_weight: default 0.7; P-AP per (seed, order) of 4 seeds x 2 orders
    0.7: [0.41, 0.43, 0.40, 0.44, 0.45, 0.42, 0.43, 0.41],
    0.3: [0.40, 0.41, 0.395, 0.43, 0.44, 0.40, 0.425, 0.405],
    1.0: [0.43, 0.45, 0.41, 0.47, 0.455, 0.44, 0.45, 0.43],
    1.5: [0.425, 0.44, 0.415, 0.45, 0.46, 0.43, 0.44, 0.42],
}


def test_sweep_trend_is_the_seed_blocked_slope_and_each_step_from_the_best() -> None:
    ctx = _context(_sweep_rows("tail_weight", "loss.tail_weight", 0.7, TAIL))
    parts = sweep_trend(ctx, {"sweep": "tail_weight", "best": "1", "metric": "pixel_ap_routed"})
    assert [p.label for p in parts] == [
        "P-AP: slope on tail_weight > 0",
        "P-AP: tail_weight 1 > 0.7",
        "P-AP: tail_weight 1 > 0.3",
        "P-AP: tail_weight 1 > 1.5",
    ]
    # the slope with one intercept per (seed, order) block, by least squares written out
    level = np.repeat(list(TAIL), 8)
    y = np.concatenate(list(TAIL.values()))
    block = np.tile(np.arange(8), 4)
    design = np.column_stack([level] + [(block == b).astype(float) for b in range(8)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    df = len(y) - design.shape[1]
    se = np.sqrt(resid @ resid / df * np.linalg.inv(design.T @ design)[0, 0])
    slope = parts[0]
    assert slope.estimate == pytest.approx(coef[0]) and slope.se == pytest.approx(se) and slope.df == df
    assert slope.region == (0.0, INF) and slope.n == 32
    assert slope.units == "runs (4 values x 8 seed block(s))"
    for part, level_ in zip(parts[1:], (0.7, 0.3, 1.5)):
        assert_t_part(part, np.array(TAIL[1.0]) - np.array(TAIL[level_]), (0.005, INF))


def test_sweep_trend_counts_only_finished_runs_and_says_when_the_sweep_is_missing() -> None:
    levels = {0.7: [0.41, 0.43, 0.40], 0.3: [0.40, NAN, 0.395], 1.0: [0.43, 0.45, 0.41]}
    ctx = _context(_sweep_rows("tail_weight", "loss.tail_weight", 0.7, levels, seeds=3))
    slope, *steps = sweep_trend(ctx, {"sweep": "tail_weight", "best": "1", "metric": "pixel_ap_routed"})
    assert slope.n == 8 and slope.units == "runs (3 values x 3 seed block(s))"
    assert [p.n for p in steps] == [3, 2] and steps[
        1
    ].reason == "sensitivity/tail_weight 0.3: 1 of 3 planned run(s) missing"
    (none,) = sweep_trend(ctx, {"sweep": "lora_rank", "best": "1", "metric": "pixel_ap_routed"})
    assert none.label == "lora_rank: slope > 0" and none.reason == "the sensitivity study has no lora_rank sweep"
    (unplanned,) = sweep_best(ctx, {"sweep": "tail_weight", "best": "2", "metric": "pixel_ap_routed"})
    assert unplanned.label == "tail_weight 2 best" and unplanned.reason == "value 2 not planned"
    (no_sweep,) = sweep_best(ctx, {"sweep": "lora_rank", "best": "2", "metric": "pixel_ap_routed"})
    assert no_sweep.label == "lora_rank 2 best" and no_sweep.reason == "the sensitivity study has no lora_rank sweep"


def test_sweep_best_names_a_non_numeric_value_and_the_default_by_its_key() -> None:
    rows = _sweep_rows("tail_weight", "loss.tail_weight", 0.7, {0.7: [0.4, 0.41, 0.42], 1.0: [0.43, 0.45, 0.44]}, 3)
    for r in _sweep_rows("tail_weight", "loss.tail_weight", 0.7, {9.0: [0.39, 0.38, 0.40]}, 3):
        rows.append({**r, "variant": "tail_weight off", "run_id": r["run_id"].replace("9", "off")})
    ctx = _context(rows)
    parts = sweep_best(ctx, {"sweep": "tail_weight", "best": "off", "metric": "pixel_ap_routed"})
    assert [p.label for p in parts] == ["P-AP: tail_weight off > 0.7", "P-AP: tail_weight off > 1"]
    assert_t_part(parts[0], np.array([0.39, 0.38, 0.40]) - np.array([0.4, 0.41, 0.42]), (0.005, INF))
    (best,) = [p for p in sweep_best(ctx, {"sweep": "tail_weight", "best": "1.0", "metric": "pixel_ap_routed"})
               if p.label.endswith("> 0.7")]  # fmt: skip
    assert_t_part(best, np.array([0.43, 0.45, 0.44]) - np.array([0.4, 0.41, 0.42]), (0.005, INF))


KERNEL = {3.0: [0.45, 0.47, 0.46], 0.0: [0.44, 0.445, 0.45], 5.0: [0.43, 0.42, 0.44], 7.0: [0.40, 0.41, NAN]}


def test_sweep_order_steps_down_the_stated_order() -> None:
    ctx = _context(_sweep_rows("spatial kernel", "model.spatial_kernel", 3.0, KERNEL, seeds=3))
    parts = sweep_order(ctx, {"sweep": "spatial kernel", "order": ["3", "0", "5", "7"], "metric": "pixel_ap_routed"})
    assert [p.label for p in parts] == [
        "P-AP: spatial kernel 3 > 0",
        "P-AP: spatial kernel 0 > 5",
        "P-AP: spatial kernel 5 > 7",
    ]
    for part, (a, b) in zip(parts, ((3.0, 0.0), (0.0, 5.0), (5.0, 7.0))):
        assert_t_part(part, np.array(KERNEL[a]) - np.array(KERNEL[b]), (0.005, INF))
    assert parts[2].reason == "sensitivity/spatial kernel 7: 1 of 3 planned run(s) missing"
    gap = sweep_order(ctx, {"sweep": "spatial kernel", "order": ["3", "9", "5"], "metric": "pixel_ap_routed"})
    assert [(p.label, p.reason) for p in gap] == [
        ("P-AP: spatial kernel 3 > 9", "value 9 not planned"),
        ("P-AP: spatial kernel 9 > 5", "value 9 not planned"),
    ]
    none = sweep_order(ctx, {"sweep": "lora_rank", "order": ["4", "8"], "metric": "pixel_ap_routed"})
    assert [(p.label, p.reason) for p in none] == [
        ("P-AP: lora_rank 4 > 8", "the sensitivity study has no lora_rank sweep")
    ]


TOPK = {0.02: [0.45, 0.47, 0.46, 0.44], 0.01: [0.452, 0.465, 0.462, NAN], 0.05: [0.44, 0.46, 0.455, 0.43]}


def test_sweep_equivalent_tests_each_value_against_the_default_within_the_margin() -> None:
    ctx = _context(_sweep_rows("top_k_ratio", "model.top_k_ratio", 0.02, TOPK))
    parts = sweep_equivalent(ctx, {"sweep": "top_k_ratio", "margin": 0.015, "metric": "pixel_ap_routed"})
    assert [p.label for p in parts] == ["|Δ P-AP (top_k_ratio 0.01)| < 0.015", "|Δ P-AP (top_k_ratio 0.05)| < 0.015"]
    for part, level in zip(parts, (0.01, 0.05)):
        assert_t_part(part, np.array(TOPK[level]) - np.array(TOPK[0.02]), (-0.015, 0.015))
        assert part.kind == "equivalence" and part.margin == pytest.approx(0.015)
    assert parts[0].reason == "sensitivity/top_k_ratio 0.01: 1 of 4 planned run(s) missing" and parts[1].reason == ""


def test_sweep_equivalent_without_a_sweep_or_with_only_the_default_says_why() -> None:
    ctx = _context(_sweep_rows("top_k_ratio", "model.top_k_ratio", 0.02, TOPK))
    (none,) = sweep_equivalent(ctx, {"sweep": "lora_rank", "margin": 0.005, "metric": "pixel_ap_routed"})
    assert none.label == "lora_rank: every value within ±0.005 of the default"
    assert none.reason == "the sensitivity study has no lora_rank sweep"
    rows = _sweep_rows("lora_rank", "model.lora_rank", 32.0, {32.0: [0.4, 0.41]}, 2)
    rows += [{**r, "variant": "lora_rank default", "run_id": f"x{k}"} for k, r in enumerate(rows)]
    (only,) = sweep_equivalent(_context(rows), {"sweep": "lora_rank", "margin": 0.005, "metric": "pixel_ap_routed"})
    assert only.label == "lora_rank: a value besides the default" and only.reason == "only the default is planned"


def test_a_sweep_value_planned_at_the_defaults_own_setting_is_the_default() -> None:
    levels = {32.0: [0.40, 0.41, 0.42], 16.0: [0.41, 0.40, 0.44]}
    rows = _sweep_rows("lora_rank", "model.lora_rank", 32.0, levels, 3)
    rows += [
        {**r, "variant": "lora_rank 32", "run_id": f"again{k}", "pixel_ap_routed": 0.9} for k, r in enumerate(rows[:3])
    ]
    (part,) = sweep_equivalent(_context(rows), {"sweep": "lora_rank", "margin": 0.005, "metric": "pixel_ap_routed"})
    assert part.label == "|Δ P-AP (lora_rank 16)| < 0.005"
    assert_t_part(part, np.array(levels[16.0]) - np.array(levels[32.0]), (-0.005, 0.005))
    first = rows[-3:] + rows[:-3]  # the variant at the default's value before the default's own runs
    (part,) = sweep_equivalent(_context(first), {"sweep": "lora_rank", "margin": 0.005, "metric": "pixel_ap_routed"})
    assert part.label == "|Δ P-AP (lora_rank 16)| < 0.005"
    steps = sweep_best(_context(rows), {"sweep": "lora_rank", "best": "16", "metric": "pixel_ap_routed"})
    assert [p.label for p in steps] == ["P-AP: lora_rank 16 > 32"]
    assert_t_part(steps[0], np.array(levels[16.0]) - np.array(levels[32.0]), (0.005, INF))


# ----------------------------------------------------------------------------------------------- re-scored top-k (C41)
RESCORED = {"3": [0.90, 0.92, 0.91], "5": [0.905, 0.915, 0.92], "10": [0.88, 0.90, NAN]}


def _rescored_rows(**summaries: Any) -> list[dict[str, Any]]:
    return [
        {"dataset": "d", "study": "main", "variant": "MoLE-Flow", "strategy": "frozen_base", "run_id": f"r{s}",
         "seed": s, "order": "a", "status": "ok", **{f"rescored_image_auroc_top{k}": v[s] for k, v in RESCORED.items()}}
        for s in range(3)
    ]  # fmt: skip


CHECK = {"study": "main", "variant": "MoLE-Flow", "reference": "3", "levels": ["5", "10"], "margin": 0.005}


def test_rescored_top_k_is_paired_on_the_same_models_within_the_margin() -> None:
    ctx = _context(_rescored_rows())
    five, ten = rescored_equivalent(ctx, CHECK)
    assert five.label == "|Δ I-AUROC (image top-k 5 - 3)| < 0.005"
    assert ten.label == "|Δ I-AUROC (image top-k 10 - 3)| < 0.005"
    assert_t_part(five, np.array(RESCORED["5"]) - np.array(RESCORED["3"]), (-0.005, 0.005))
    assert_t_part(ten, (np.array(RESCORED["10"]) - np.array(RESCORED["3"])), (-0.005, 0.005))
    assert ten.n == 2 and five.kind == "equivalence"


def test_rescored_top_k_raises_its_margin_to_the_image_auroc_resolution() -> None:
    rows = _rescored_rows()
    counts = {"dataset": {"test_counts": {"a": {"normal": 5, "anomalous": 2}, "b": {"normal": 10, "anomalous": 10}}}}
    ctx = _context(rows, {r["run_id"]: counts for r in rows})
    step = 1 / (2 * 5 * 2)
    five, _ = rescored_equivalent(ctx, CHECK)
    assert five.label == (
        f"|Δ I-AUROC (image top-k 5 - 3)| < {step:g} (margin raised from 0.005 to the metric's resolution {step:.4f})"
    )
    assert_t_part(five, np.array(RESCORED["5"]) - np.array(RESCORED["3"]), (-step, step))
    (unrecorded, _) = rescored_equivalent(
        _context([{k: v for k, v in r.items() if k != "rescored_image_auroc_top5"} for r in rows]), CHECK
    )
    assert unrecorded.n == 0 and unrecorded.reason == "no finished run"  # runs from before top-5 was re-scored
    missing = [{**r, "status": "missing"} if r["seed"] == 2 else r for r in rows]
    five, _ = rescored_equivalent(_context(missing), CHECK)
    assert five.n == 2 and five.reason == "main/MoLE-Flow: 1 of 3 planned run(s) missing"


# ------------------------------------------------------------------------------------------------- collapse (C36)
COLLAPSE = {"study": "depth", "coupling_blocks": 16, "metric": "image_auroc_routed", "below": 0.70,
            "paper_reference": 0.979, "chance": 0.5}  # fmt: skip


def _collapse_rows(deep: list[float], statuses: list[str] | None = None) -> list[dict[str, Any]]:
    rows = _runs("depth", "M6 N2", [0.80, 0.82, 0.81], "image_auroc_routed")
    for k, x in enumerate(deep):
        status = (statuses or ["ok"] * len(deep))[k]
        rows += [{**r, "status": status} for r in _runs("depth", "M16 N2", [x], "image_auroc_routed")]
        rows[-1].update(seed=k, run_id=f"M16 N2|{k}")
    rows += _runs("depth", "M8 N2", [0.1, 0.1, 0.1], "image_auroc_routed")  # another depth: never read
    return rows


def test_collapse_against_the_scaled_level_with_its_words_and_shortfalls() -> None:
    share = (0.70 - 0.5) / (0.979 - 0.5)
    label = f"16 coupling blocks below {share:.2f} of the way from chance to M6 N2"
    (part,) = depth_ctx_collapse([0.60, 0.61, NAN], ["ok", "ok", "missing"])
    levels = 0.5 + share * (np.array([0.80, 0.82]) - 0.5)
    assert part.label == label and part.margin == 0.0
    assert_t_part(part, np.array([0.60, 0.61]) - levels, (-INF, 0.0))
    assert part.reason == "depth/M16 N2: 1 of 3 planned run(s) missing"
    (diverged,) = depth_ctx_collapse([NAN, NAN], ["diverged", "diverged"])
    assert (diverged.label, diverged.status, diverged.n, diverged.reason) == (
        label, "supported", 2, "M16 N2: every run diverged",
    )  # fmt: skip
    assert np.isnan(diverged.estimate)
    (one,) = depth_ctx_collapse([NAN], ["diverged"])  # one diverged run is not every run diverging
    assert one.status is None and one.n == 0
    (mixed,) = depth_ctx_collapse([NAN, 0.6, 0.62], ["diverged", "ok", "ok"])
    assert mixed.status is None and mixed.n == 2
    (most,) = depth_ctx_collapse([NAN, NAN, 0.6], ["diverged", "diverged", "ok"])  # not every run diverged
    assert most.status is None and most.n == 1
    rows = _collapse_rows([0.6, 0.61, 0.62], ["ok"] * 3)
    rows[0]["status"] = "missing"  # a reference run missing
    (short,) = collapse(_context(rows), COLLAPSE)
    assert short.n == 2 and short.reason == "depth/M6 N2: 1 of 3 planned run(s) missing"
    ctx = _context(_runs("depth", "M6 N2", [0.8], "image_auroc_routed"))
    (none,) = collapse(ctx, COLLAPSE)
    assert none.label == "16 coupling blocks below 0.42 of the way from chance to M6 N2"
    assert none.reason == "no variant with 16 coupling blocks, or no reference depth"


def depth_ctx_collapse(deep: list[float], statuses: list[str]) -> list[Part]:
    return collapse(_context(_collapse_rows(deep, statuses)), COLLAPSE)


def test_the_reference_depth_is_the_main_studys_method_run_even_alone() -> None:
    main = _runs(
        "main", "MoLE-Flow", [0.5], "pixel_ap_routed", **{"cfg.model.coupling_blocks": 8, "cfg.model.dia_blocks": 1}
    )
    parts = depth_best(_context(_depth_rows(DEPTHS) + main), {"study": "depth", "metric": "pixel_ap_routed"})
    assert parts[0].label == "P-AP: M8 N1 > M0 N1"


# ------------------------------------------------------------------------------------- sensitivity classes (C43)
def test_sensitivity_classes_order_each_pair_of_sweeps_by_their_spreads() -> None:
    from analysis.sweeps import anova_tests, sweep_frames

    levels = {  # per sweep: P-AP per value and seed 0..2 (order a)
        "tail_weight": {"0.5": [0.40, 0.41, 0.42], "1.5": [0.46, 0.44, 0.47]},
        "top_k_ratio": {"0.01": [0.40, 0.41, 0.43], "0.05": [0.41, 0.40, 0.42]},
        "lora_rank": {"8": [0.39, 0.41, 0.43], "16": [0.395, 0.40, 0.42], "64": [0.40, 0.42, 0.41]},
    }
    rows = []
    for sweep, values in levels.items():
        for value, xs in values.items():
            for seed, x in enumerate(xs):
                rows.append({"dataset": "d", "study": "sensitivity", "variant": f"{sweep} {value}", "run_id": f"{sweep}{value}{seed}",
                             "seed": seed, "order": "a", "status": "ok", "strategy": "frozen_base", "pixel_ap_routed": x})  # fmt: skip
    ctx = _context(rows)
    check = {"classes": {"High": ["tail_weight"], "Low": ["top_k_ratio", "lora_rank"]}, "metric": "pixel_ap_routed"}
    parts = sensitivity_classes(ctx, check)
    assert [p.label for p in parts] == [
        "spread of P-AP: tail_weight (High) > top_k_ratio (Low)",
        "spread of P-AP: tail_weight (High) > lora_rank (Low)",
        "tail_weight varies beyond seed noise (Table 10's Holm-adjusted ANOVA p)",
    ]
    spread = {s: np.ptp(np.array(list(v.values())), axis=0) for s, v in levels.items()}  # max - min per seed
    assert_t_part(parts[0], spread["tail_weight"] - spread["top_k_ratio"], (0.0, INF))
    assert_t_part(parts[1], spread["tail_weight"] - spread["lora_rank"], (0.0, INF))
    assert parts[0].runs == "tail_weight: seeds 0, 1, 2; top_k_ratio: seeds 0, 1, 2"
    tests = anova_tests(sweep_frames(ctx.runs, "d"))
    assert parts[2].p_support == pytest.approx(tests["tail_weight"][1]) and parts[2].runs == "seeds 0, 1, 2"
    assert parts[2].reason == ""
    unfinished = [{**r, "status": "missing"} if r["variant"] == "tail_weight 1.5" else r for r in rows]
    parts = sensitivity_classes(_context(unfinished), check)
    assert (parts[-1].reason, parts[-1].runs) == ("fewer than two values finished", "seeds 0, 1, 2")
    one = {"classes": {"High": ["tail_weight"], "Low": ["depth"]}, "metric": "pixel_ap_routed"}
    (missing,) = sensitivity_classes(ctx, one)
    assert (missing.label, missing.reason) == (
        "spreads ordered High > Low",
        "sweep depth has fewer than two values planned",
    )
