"""The claims audit's structural checks (zero forgetting, fingerprints, invertibility, backbone passes, the
router ablation, the parameter overhead) against run summaries written here, their numbers and words by hand."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from tests_helpers import audit_context

from analysis.audit.context import Context
from analysis.audit.evidence import CONTRADICTED, INF, SUPPORTED

NAN = float("nan")


def _ctx(summaries: Mapping[str, Any], statuses: dict[str, str] | None = None, **columns: list) -> Context:
    """Runs ``r0, r1, ...``: those with a summary, then those only given a status (default ``ok``)."""
    statuses = statuses or {}
    ids = list(summaries) + [r for r in statuses if r not in summaries]
    assert ids == [f"r{k}" for k in range(len(ids))]
    return audit_context([statuses.get(r, "ok") for r in ids], dict(summaries), **columns)


CHECK = {"study": "main", "variant": "MoLE-Flow", "strategy": "frozen_base"}


def _forgetting(oracle: list[list[float | None]], fm: float, routing: float | None) -> dict[str, Any]:
    return {
        "accuracy_matrix_oracle": {"image_auroc": oracle},
        "forgetting": {"image_auroc": {"fm": fm}, "pixel_ap": {"fm": NAN}},
        "routing_accuracy": routing,
    }


def test_zero_forgetting_counts_the_later_oracle_cells_and_the_unexplained_routed_forgetting() -> None:
    from analysis.audit.structural import zero_forgetting

    summaries = {
        "r0": _forgetting([[0.9, None], [0.9, 0.8]], 0.0, 1.0),
        "r1": _forgetting([[0.9, None, None], [0.85, 0.8, None], [0.9, 0.8, 0.7]], -0.02, 0.97),  # one cell moved
        "r2": _forgetting([[0.9, None], [0.9, 0.8]], 0.01, None),  # forgets when routed, misroutes nothing
    }
    first, second = zero_forgetting(_ctx(summaries, {"r3": "diverged"}), CHECK)
    assert (first.label, first.status, first.estimate, first.n, first.paper) == (
        "oracle R[j][i] = R[i][i] for j > i", CONTRADICTED, 1.0, 3, 0.0,
    )  # fmt: skip
    assert first.reason == (
        "5 later oracle cells of 3 run(s), 1 differ from the cell right after training; "
        "largest routed |FM| 0.0200 with misrouted share up to 0.0300"
    )
    assert (second.label, second.status, second.estimate, second.n, second.reason) == (
        "routed forgetting only with misrouted images", CONTRADICTED, 1.0, 3,
        "1 of 3 run(s) forget when routed without misrouting an image",
    )  # fmt: skip
    clean = {"r0": summaries["r0"], "r1": _forgetting([[0.9, None], [0.9, 0.8]], 0.02, 0.99)}
    assert [p.status for p in zero_forgetting(_ctx(clean), CHECK)] == [SUPPORTED, SUPPORTED]
    single = {"r0": _forgetting([[0.9]], 0.0, 1.0)}
    [none] = zero_forgetting(_ctx(single, {"r1": "missing"}), CHECK)
    assert none.status is None and none.reason == (
        "no finished run with two tasks or more; main/MoLE-Flow: 1 of 2 planned run(s) missing"
    )


def _prints(base: str, *tasks: str) -> dict[str, Any]:
    return {"base": base, "tasks": list(tasks)}


def test_fingerprints_of_the_base_and_earlier_tasks_after_every_task() -> None:
    from analysis.audit.structural import fingerprints_unchanged

    same = {"per_task": [{"fingerprints": _prints("b", "t0")}, {"fingerprints": _prints("b", "t0", "t1")},
                         {"fingerprints": _prints("b", "t0", "t1", "t2")}]}  # fmt: skip
    moved = {"per_task": [{"fingerprints": _prints("b", "t0")}, {"fingerprints": _prints("B", "T0", "t1")}]}
    short = {"per_task": [{"fingerprints": _prints("b", "t0")}]}  # one task: nothing to re-check
    unrecorded = {"per_task": [{"fingerprints": _prints("b", "t0")}, {}]}
    [part] = fingerprints_unchanged(_ctx({"r0": same, "r1": short, "r2": unrecorded}), CHECK)
    assert (part.label, part.status, part.estimate, part.n) == (
        "base and earlier tasks' digests unchanged",
        SUPPORTED,
        0.0,
        1,
    )
    assert part.reason == "5 digests re-checked over 1 run(s)"  # after task 1: base + task 0; after task 2: + task 1
    [bad] = fingerprints_unchanged(_ctx({"r0": same, "r1": moved}), CHECK)
    assert (bad.status, bad.estimate, bad.n) == (CONTRADICTED, 2.0, 2)
    assert bad.reason == "7 digests re-checked over 2 run(s); changed: r1: base after task 1, r1: task 0 after task 1"
    [none] = fingerprints_unchanged(_ctx({"r0": short}), CHECK)
    assert none.status is None and none.reason == "no finished multi-task run with fingerprints"


def _inv(reconstruction: float, inverse: float, autograd: float) -> dict[str, float]:
    return {
        "max_relative_reconstruction": reconstruction,
        "max_inverse_logdet": inverse,
        "relative_logdet_autograd": autograd,
    }


def test_invertibility_takes_the_worst_task_of_every_run() -> None:
    from analysis.audit.structural import invertible

    summaries = {
        "r0": {"per_task": [{"invertibility": _inv(1e-7, 2e-5, 1e-6)}, {"invertibility": _inv(3e-7, 1e-5, 1e-6)}]},
        "r1": {"per_task": [{"invertibility": _inv(2e-7, 1e-5, 5e-3)}, {}]},
    }
    parts = invertible(_ctx(summaries, {"r2": "failed"}), {"tolerance": 1e-3})
    assert [(p.label, p.status, p.estimate, p.n, p.reason) for p in parts] == [
        ("round trip (relative) <= 0.001", SUPPORTED, 3e-7, 3, "largest 3.00e-07 over 3 task checks"),
        ("log-det f + log-det f^-1 <= 0.001", SUPPORTED, 2e-5, 3, "largest 2.00e-05 over 3 task checks"),
        ("log-det vs autograd (relative) <= 0.001", CONTRADICTED, 5e-3, 3, "largest 5.00e-03 over 3 task checks"),
    ]
    at = invertible(_ctx(summaries), {"tolerance": 5e-3})
    assert at[2].status == SUPPORTED  # at the tolerance itself: within it
    [none] = invertible(_ctx({"r0": {"per_task": [{}]}}), {"tolerance": 1e-3})
    assert (none.label, none.reason) == ("invertibility checks", "no finished run recorded them")


def test_one_backbone_pass_per_test_image() -> None:
    from analysis.audit.structural import single_pass

    def run(passes: float | None) -> dict[str, Any]:
        return {"inference": {"backbone_passes_per_test_image": passes}}

    [part] = single_pass(_ctx({"r0": run(1.0), "r1": run(1.0), "r2": run(None)}), CHECK)
    assert (part.label, part.status, part.estimate, part.n, part.reason, part.paper) == (
        "backbone passes per test image = 1", SUPPORTED, 1.0, 2, "1 to 1 over 2 run(s)", 1.0,
    )  # fmt: skip
    [twice] = single_pass(_ctx({"r0": run(1.0), "r1": run(2.0)}), CHECK)
    assert (twice.status, twice.estimate, twice.reason) == (CONTRADICTED, 2.0, "1 to 2 over 2 run(s)")
    [none] = single_pass(_ctx({"r0": {}}), CHECK)
    assert none.status is None and none.reason == "no run recorded the count (features cached before it was kept)"


def test_the_router_ablation_is_a_paired_difference_unless_both_are_perfect() -> None:
    from analysis.audit.structural import router_ablation

    label = "Δ routing accuracy (Mahalanobis - Euclidean) > 0"
    maha, eucl = [1.0, 0.99, 1.0], [0.96, 0.95, 0.97]
    runs: dict[str, Any] = {f"r{k}": {} for k in range(3)}
    [part] = router_ablation(_ctx(runs, routing_accuracy=maha, routing_accuracy_euclidean=eucl), CHECK)
    diff = np.array(maha) - np.array(eucl)
    assert (part.label, part.n, part.region, part.paper) == (label, 3, (0.005, INF), 0.04)
    assert part.estimate == pytest.approx(diff.mean()) and part.se == pytest.approx(diff.std(ddof=1) / math.sqrt(3))
    perfect = [1.0, 1.0, 1.0]
    [tie] = router_ablation(_ctx(runs, routing_accuracy=perfect, routing_accuracy_euclidean=perfect), CHECK)
    assert (tie.label, tie.estimate, tie.n, tie.paper, tie.reason) == (
        label, 0.0, 3, 0.04, "both routers route every test image correctly: no room to differ",
    )  # fmt: skip
    [one_side] = router_ablation(_ctx(runs, routing_accuracy=perfect, routing_accuracy_euclidean=eucl), CHECK)
    assert one_side.estimate == pytest.approx(np.mean(1.0 - np.array(eucl)))  # only the Euclidean misroutes


def test_the_parameter_overhead_part_says_the_counts_behind_it() -> None:
    from analysis.audit.paper_values import overhead_at_table2
    from analysis.audit.structural import parameter_overhead

    ranks = [16, 32, 64]
    counts = overhead_at_table2(ranks)
    pct = counts["overhead_pct"]
    assert pct == pytest.approx(100 * counts["per_task"] / counts["base"])
    inside, affine = parameter_overhead(_ctx({}), {"ranks": ranks, "low": math.floor(pct), "high": math.ceil(pct)})
    assert (inside.label, inside.status, inside.estimate, inside.n, inside.paper) == (
        f"per-task / base parameters in [{math.floor(pct)}, {math.ceil(pct)}]%", SUPPORTED, pct, 1, 8.0,
    )  # fmt: skip
    assert inside.reason == (
        f"{counts['per_task']:,} / {counts['base']:,} = {pct:.1f}% (without DIA {counts['without_dia_pct']:.1f}%)"
    )
    assert parameter_overhead(_ctx({}), {"ranks": ranks, "low": 5, "high": 10})[0].status == CONTRADICTED
    assert parameter_overhead(_ctx({}), {"ranks": ranks, "low": pct, "high": pct})[0].status == SUPPORTED  # bounds in
    by_rank = counts["by_rank"]
    assert (affine.label, affine.status, affine.n) == ("per-task parameters affine in the rank", SUPPORTED, 3)
    assert math.isnan(affine.estimate)
    assert affine.reason == "per-task counts at ranks " + ", ".join(f"{r}: {by_rank[r]:,}" for r in ranks)
    assert by_rank[64] - by_rank[32] == 2 * (by_rank[32] - by_rank[16])  # affine: a step twice as long, twice as high


# ------------------------------------------------------------------------------- which runs a structural check reads
def _mixed(summaries: dict[str, Any], rows: list[tuple[str, str, str, str, str]]) -> Context:
    """Runs given as ``(run_id, dataset, strategy, status, variant)`` in study ``main``."""
    import pandas as pd

    frame = pd.DataFrame(
        [{"dataset": d, "study": "main", "variant": v, "strategy": s, "run_id": r, "seed": k, "order": "a",
          "status": st} for k, (r, d, s, st, v) in enumerate(rows)]
    )  # fmt: skip
    return Context(frame, summaries, "d")


def test_the_fingerprint_check_reads_the_finished_runs_of_its_strategy_on_its_dataset_only() -> None:
    from analysis.audit.structural import fingerprints_unchanged

    same = {"per_task": [{"fingerprints": _prints("b", "t0")}, {"fingerprints": _prints("b", "t0", "t1")}]}
    moved = {"per_task": [{"fingerprints": _prints("b", "t0")}, {"fingerprints": _prints("B", "T0", "t1")}]}
    summaries = {"short": {"per_task": [{"fingerprints": _prints("b", "t0")}]}, "bare": {}, "ok": same,
                 "other_data": moved, "other_strategy": moved, "failed": moved}  # fmt: skip
    ctx = _mixed(summaries, [
        ("short", "d", "frozen_base", "ok", "MoLE-Flow"), ("bare", "d", "frozen_base", "ok", "MoLE-Flow"),
        ("ok", "d", "frozen_base", "ok", "MoLE-Flow"), ("other_data", "e", "frozen_base", "ok", "MoLE-Flow"),
        ("other_strategy", "d", "replay", "ok", "Replay"), ("failed", "d", "frozen_base", "failed", "MoLE-Flow"),
    ])  # fmt: skip
    [part] = fingerprints_unchanged(ctx, {"strategy": "frozen_base"})
    assert (part.status, part.n, part.reason) == (SUPPORTED, 1, "2 digests re-checked over 1 run(s)")
    many = {"per_task": [{"fingerprints": _prints("b", "t0")}, {"fingerprints": _prints("B", "T0", "t1")},
                         {"fingerprints": _prints("C", "T0", "T1", "t2")}]}  # fmt: skip
    [bad] = fingerprints_unchanged(_ctx({"r0": many}), CHECK)
    assert (bad.estimate, bad.reason) == (
        5.0,
        "5 digests re-checked over 1 run(s); changed: r0: base after task 1, r0: task 0 after task 1, "
        "r0: base after task 2",
    )  # the first three of the changed digests are named
    [none] = fingerprints_unchanged(_ctx({"r0": {}}), CHECK)
    assert none.label == "base and earlier tasks' digests unchanged"


def test_the_invertibility_check_reads_every_finished_run_on_its_dataset() -> None:
    from analysis.audit.structural import invertible

    good = {"per_task": [{}, {"invertibility": _inv(1e-7, 1e-6, 1e-6)}]}  # a task without the record, then one
    bad = {"per_task": [{"invertibility": _inv(1.0, 1.0, 1.0)}]}
    ctx = _mixed({"bare": {}, "good": good, "elsewhere": bad, "failed": bad}, [
        ("bare", "d", "frozen_base", "ok", "MoLE-Flow"), ("good", "d", "replay", "ok", "Replay"),
        ("elsewhere", "e", "frozen_base", "ok", "MoLE-Flow"), ("failed", "d", "frozen_base", "failed", "MoLE-Flow"),
    ])  # fmt: skip
    parts = invertible(ctx, {"tolerance": 1e-4})
    assert [(p.status, p.estimate, p.n) for p in parts] == [(SUPPORTED, 1e-7, 1), (SUPPORTED, 1e-6, 1),
                                                            (SUPPORTED, 1e-6, 1)]  # fmt: skip


def test_zero_forgetting_reads_its_variant_and_skips_unrecorded_cells() -> None:
    from analysis.audit.structural import zero_forgetting

    gap = _forgetting([[0.9, None, None], [None, 0.8, None], [0.8, 0.8, 0.7]], 0.0, 1.0)  # R[1][0] not recorded
    moved = _forgetting([[0.9, None], [0.5, 0.8]], 0.4, 1.0)
    ctx = _mixed({"r0": gap, "r1": {}, "x": moved}, [
        ("r0", "d", "frozen_base", "ok", "MoLE-Flow"), ("r1", "d", "frozen_base", "ok", "MoLE-Flow"),
        ("x", "d", "frozen_base", "ok", "w/o DIA"),
    ])  # fmt: skip
    first, second = zero_forgetting(ctx, CHECK)
    assert (first.status, first.estimate, first.n) == (CONTRADICTED, 1.0, 2)  # R[2][0] = 0.8 differs from 0.9
    assert first.reason == (
        "2 later oracle cells of 2 run(s), 1 differ from the cell right after training; "
        "largest routed |FM| 0.0000 with misrouted share up to 0.0000"
    )  # the run without a summary has no routed FM (NaN) and counts as routing everything
    assert second.status == SUPPORTED
    [none] = zero_forgetting(_ctx({"r0": _forgetting([[0.9]], 0.0, 1.0)}), CHECK)
    assert none.label == "oracle R[j][i] = R[i][i] for j > i"


def test_the_router_ablation_says_what_is_missing_and_keeps_its_margin() -> None:
    from analysis.audit.structural import router_ablation

    runs: dict[str, Any] = {f"r{k}": {} for k in range(3)}
    maha, eucl = [1.0, 0.99, 0.98], [0.96, 0.95, 0.97]
    ctx = _ctx(runs, {"r3": "missing"}, routing_accuracy=maha + [NAN], routing_accuracy_euclidean=eucl + [NAN])
    [part] = router_ablation(ctx, CHECK)
    assert part.margin == 0.005 and part.region == (0.005, INF)
    assert part.reason == "main/MoLE-Flow: 1 of 4 planned run(s) missing"
    [unrecorded] = router_ablation(_ctx(runs, routing_accuracy=maha), CHECK)  # no Euclidean column
    assert unrecorded.n == 0 and unrecorded.reason == "no finished run"


def test_the_backbone_pass_check_without_a_count_names_itself() -> None:
    from analysis.audit.structural import single_pass

    [none] = single_pass(_ctx({"r0": {}}), CHECK)
    assert none.label == "backbone passes per test image = 1"


# ------------------------------------------------------------------------------------------ task orders (C44)
def _orders(values: dict[str, list[float]], oracle: dict[str, float] | None = None) -> Context:
    import pandas as pd

    rows, summaries = [], {}
    for order, xs in values.items():
        for seed, x in enumerate(xs):
            run_id = f"{order}{seed}"
            status = "missing" if np.isnan(x) else "ok"
            rows.append({"dataset": "d", "study": "order", "variant": "MoLE-Flow", "strategy": "frozen_base",
                         "run_id": run_id, "seed": seed, "order": order, "status": status, "image_auroc_routed": x})  # fmt: skip
            drop = (oracle or {}).get(run_id, 0.0)
            summaries[run_id] = {"forgetting_oracle": {"cable": {"fm": drop, "paper": NAN}}}
    return Context(pd.DataFrame(rows), dict[str, Any](summaries), "d")


ORDER_CHECK = {"study": "order", "minimum_orders": 3, "metric": "image_auroc_routed"}


def test_order_robustness_is_the_oracle_zero_over_every_order_and_the_number_of_orders() -> None:
    from analysis.audit.structural import order_robust

    values = {"a": [0.80, 0.82, 0.81], "b": [0.79, 0.83, NAN]}
    zero, orders = order_robust(_orders(values), ORDER_CHECK)
    assert (zero.label, zero.status, zero.estimate, zero.n, zero.reason) == (
        "oracle forgetting 0 in every order", SUPPORTED, 0.0, 5, "2 order(s)",
    )  # fmt: skip
    assert (orders.label, orders.n, orders.reason, orders.status) == (
        "at least 3 orders", 2, "2 order(s) planned (rule: 3)", None,
    )  # fmt: skip
    values["c"] = [0.8, 0.8, 0.8]
    (zero,) = order_robust(_orders(values, {"c1": -0.01, "b2": 0.5}), ORDER_CHECK)  # b2 is missing: not read
    assert (zero.status, zero.estimate, zero.n, zero.reason) == (CONTRADICTED, 0.01, 8, "3 order(s)")


def test_the_order_note_is_the_one_way_anova_on_the_order() -> None:
    from scipy import stats

    from analysis.audit.structural import order_note

    values = {"a": [0.80, 0.82, 0.81, NAN], "b": [0.79, 0.83, 0.86, 0.9], "c": [0.7, 0.72, 0.71, 0.69]}
    p = stats.f_oneway([0.80, 0.82, 0.81], [0.79, 0.83, 0.86, 0.9], [0.7, 0.72, 0.71, 0.69]).pvalue
    assert order_note(_orders(values), ORDER_CHECK) == f"one-way ANOVA of I-AUROC on the order: p {p:.3f}"
    assert order_note(_orders({"a": [0.8, 0.81]}), ORDER_CHECK) == ""
    flat = {"a": [0.8, 0.8], "b": [0.7, 0.7]}
    assert order_note(_orders(flat), ORDER_CHECK) == "ANOVA on the order: zero residual variance"
    assert order_note(_orders({"a": [0.8, NAN], "b": [0.7, 0.71]}), ORDER_CHECK) == (
        f"one-way ANOVA of I-AUROC on the order: p {stats.f_oneway([0.8], [0.7, 0.71]).pvalue:.3f}"
    )


# ------------------------------------------------------------------------------------ the paper's bold rows (C19)
def test_the_papers_own_average_against_its_best_continual_rival() -> None:
    from analysis.audit.paper_values import best_continual
    from analysis.audit.structural import paper_best

    parts = paper_best(_ctx({}), {"tables": ["99", "4", "5"]})  # Table 99 has no printed averages: no part
    assert len(parts) == 2
    for part, table in zip(parts, ("4", "5")):
        found = best_continual(table)
        assert found is not None
        ours, method, best = found
        assert part.label == f"Table {table}: Ours' average ({ours:.3f}) the highest continual average"
        assert part.status == (SUPPORTED if ours >= best else CONTRADICTED)
        assert (part.estimate, part.n, part.paper) == (pytest.approx(ours - best), 1, ours)
        assert part.reason == f"{method} {best:.3f} (the paper's own rows)"


def test_a_tie_with_the_best_rival_is_still_the_highest(monkeypatch: pytest.MonkeyPatch) -> None:
    import analysis.audit.paper_values as paper_values
    from analysis.audit.structural import paper_best

    monkeypatch.setattr(paper_values, "best_continual", lambda table: (0.9, "X", 0.9))
    [tie] = paper_best(_ctx({}), {"tables": ["4"]})
    assert (tie.status, tie.estimate) == (SUPPORTED, 0.0)
