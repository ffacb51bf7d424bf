"""The claims audit's plumbing, value by value: which datasets a claim may be judged on and why not, the study and
categories a claim's runs cover, the notes the strategies' and task-order claims carry, the runs each part names,
and the audit's figure (what it draws where)."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd
import pytest

from analysis.audit import _datasets, _memory_note, _scope, _study_of, _study_runs, evaluate
from analysis.audit.context import Context
from analysis.audit.evidence import Part, sign_test
from analysis.audit.structural import order_note
from analysis.audit.verdicts import Outcome, audit_level, decide

PAPER = "wide_resnet50_2"


def _summary(backbone: str, pretrained: bool = True, tasks: list[str] | None = None) -> Any:
    return {"config": {"features": {"backbone": backbone, "pretrained": pretrained}}, "tasks": tasks or []}


def _runs(*ids_and_datasets: tuple[str, str]) -> pd.DataFrame:
    columns = ["dataset", "study", "variant", "run_id", "seed", "order", "status", "strategy"]
    return pd.DataFrame(
        [{"dataset": d, "study": "main", "variant": "MoLE-Flow", "run_id": r, "seed": 0, "order": "a", "status": "ok",
          "strategy": "frozen_base"} for r, d in ids_and_datasets], columns=columns
    )  # fmt: skip


# ------------------------------------------------------------------------------------------- which datasets, or why
PLAN = {
    "datasets": {
        "synth": {"kind": "mvtec", "generate": True},
        "mvtec": {"kind": "mvtec"},
        "visa": {"kind": "visa"},
    }
}


def _needs(**needs: Any) -> dict[str, Any]:
    return {"needs": needs}


def test_a_claim_is_judged_on_the_planned_datasets_its_needs_allow() -> None:
    runs = _runs(("r1", "mvtec"), ("r2", "visa"), ("r3", "synth"))
    summaries = {"r1": _summary("wide_resnet50_2"), "r2": _summary("wide_resnet50_2.tv_in1k"), "r3": _summary("x")}
    assert _datasets(_needs(kind="none"), PLAN, runs, summaries, PAPER) == ([""], "")
    assert _datasets(_needs(kind="any"), PLAN, runs, summaries, PAPER) == (["synth", "mvtec", "visa"], "")
    assert _datasets(_needs(kind="mvtec"), PLAN, runs, summaries, PAPER) == (["synth", "mvtec"], "")
    assert _datasets(_needs(kind="mvtec", real=True), PLAN, runs, summaries, PAPER) == (["mvtec"], "")
    assert _datasets(_needs(kind="visa", real=True, backbone="paper"), PLAN, runs, summaries, PAPER) == (["visa"], "")
    assert _datasets(_needs(kind="any", real=True, backbone="paper"), PLAN, runs, summaries, PAPER) == (
        ["mvtec", "visa"],
        "",
    )


def test_a_claim_says_which_data_it_lacks_word_for_word() -> None:
    runs = _runs(("r1", "synth"), ("r2", "real"))
    synth = {"datasets": {"synth": {"kind": "mvtec", "generate": True}, "v": {"kind": "visa", "generate": True}}}
    assert _datasets(_needs(kind="visa"), {"datasets": {"synth": {"kind": "mvtec"}}}, runs, {}, PAPER) == (
        [],
        "needs a VisA dataset; the plan has none",
    )
    assert _datasets(_needs(kind="mvtec"), {"datasets": {"v": {"kind": "visa"}}}, runs, {}, PAPER) == (
        [],
        "needs a MVTec AD dataset; the plan has none",
    )
    assert _datasets(_needs(kind="mvtec"), {}, runs, {}, PAPER) == ([], "needs a MVTec AD dataset; the plan has none")
    assert _datasets(_needs(kind="any", real=True), synth, runs, {}, PAPER) == (
        [],
        "needs the real MVTec AD: the plan's synth, v is generated data, whose numbers are not the benchmark's",
    )
    assert _datasets(_needs(kind="visa", real=True), synth, runs, {}, PAPER) == (
        [],
        "needs the real VisA: the plan's v is generated data, whose numbers are not the benchmark's",
    )
    real = {"datasets": {"real": {"kind": "mvtec"}, "other": {"kind": "mvtec"}}}
    summaries = {"r2": _summary("efficientnet_lite0"), "r1": _summary("wide_resnet50_2", pretrained=False)}
    runs = _runs(("r1", "other"), ("r2", "real"))
    assert _datasets(_needs(kind="mvtec", real=True, backbone="paper"), real, runs, summaries, PAPER) == (
        [],
        "needs the paper's backbone (wide_resnet50_2, ImageNet weights); the runs use efficientnet_lite0, "
        "wide_resnet50_2 (random init)",
    )
    # a dataset with runs of the paper's backbone and of another is not the paper's setting; one without runs neither
    mixed = _runs(("a", "real"), ("b", "real"))
    both = {"a": _summary("wide_resnet50_2"), "b": _summary("resnet18")}
    assert _datasets(_needs(kind="mvtec", real=True, backbone="paper"), real, mixed, both, PAPER)[0] == []
    assert _datasets(_needs(kind="mvtec", real=True, backbone="paper"), real, _runs(), {}, PAPER) == (
        [],
        "needs the paper's backbone (wide_resnet50_2, ImageNet weights); the runs use unknown",
    )


# ------------------------------------------------------------------------------------- a claim's study and its scope
def _context(summaries: dict[str, Any]) -> Context:
    rows = [
        {"dataset": dataset, "study": study, "variant": "MoLE-Flow", "run_id": run_id, "seed": seed, "order": "a",
         "status": status, "strategy": strategy}
        for study, run_id, seed, status, strategy, dataset in (
            ("main", "m0", 0, "ok", "frozen_base", "d"), ("main", "m1", 1, "ok", "frozen_base", "d"),
            ("main", "m2", 2, "missing", "frozen_base", "d"), ("sensitivity", "s0", 0, "ok", "frozen_base", "d"),
            ("other", "o0", 0, "ok", "frozen_base", "d"), ("other", "o3", 3, "ok", "replay", "d"),
            ("other", "e4", 4, "ok", "frozen_base", "elsewhere"),
        )
    ]  # fmt: skip
    return Context(pd.DataFrame(rows), summaries, "d")


def test_a_checks_study_is_named_or_the_sensitivity_study_for_a_sweep() -> None:
    assert _study_of({"study": "main", "sweep": "x"}) == "main"
    assert _study_of({"sweep": "tail_weight"}) == "sensitivity"
    assert _study_of({"test": "sensitivity_classes"}) == "sensitivity"
    assert _study_of({"test": "paper_best"}) is None
    ctx = _context({})
    assert _study_runs(ctx, {"study": "main"}) == "main: seeds 0, 1"
    assert _study_runs(ctx, {"sweep": "x"}) == "sensitivity: seeds 0"
    assert _study_runs(ctx, {"test": "paper_best"}) == "the paper's numbers"
    # the structural checks read every run of the dataset (C3: of one strategy), whatever study planned it
    assert _study_runs(ctx, {"test": "invertible", "tolerance": 1e-4}) == "every run: seeds 0, 1, 3"
    assert _study_runs(ctx, {"test": "fingerprints_unchanged", "strategy": "frozen_base"}) == (
        "every frozen_base run: seeds 0, 1"
    )


def test_a_claims_scope_is_the_categories_its_runs_trained_on() -> None:
    summaries = {"m0": {"tasks": ["cable", "bottle"]}, "m1": {"tasks": ["bottle", "screw"]}, "o0": {"tasks": ["x"]}}
    ctx = _context(summaries)
    assert _scope(ctx, {"study": "main"}) == "main: bottle, cable, screw"
    assert _scope(ctx, {"sweep": "x"}) == "sensitivity: no finished run"
    assert _scope(ctx, {"test": "paper_best"}) == "the paper's numbers"
    assert _scope(ctx, {"test": "invertible"}) == "every run: bottle, cable, screw, x"
    summaries["o3"] = {"tasks": ["zipper"]}
    assert _scope(_context(summaries), {"test": "fingerprints_unchanged", "strategy": "replay"}) == (
        "every replay run: zipper"
    )
    assert _scope(_context({"m0": {}, "m1": None}), {"study": "main"}) == "main: no finished run"


def test_the_strategies_claim_notes_each_strategys_memory_per_task() -> None:
    rows = pd.DataFrame(
        {"variant": ["Replay", "MoLE-Flow", "MoLE-Flow", "EWC", "Joint"], "status": ["ok", "ok", "ok", "failed", "ok"],
         "memory_pct_of_base": [35.06, 1.23, 9.0, 50.0, np.nan]}
    )  # fmt: skip
    assert _memory_note(rows) == "memory per task (% of the base): Replay 35.1%, MoLE-Flow 1.2%"  # the plan's order
    assert _memory_note(rows.drop(columns="memory_pct_of_base")) == ""
    assert _memory_note(rows[rows["status"] == "failed"]) == ""


# ------------------------------------------------------------------------------------------------ the whole evaluation
def _frame() -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-category rows: the main study (two seeds, two categories) and the pilot's strategies, order ``a``; the
    order study in two orders."""
    rows, summaries = [], {}
    for study, variant, strategy, seeds, orders in (
        ("main", "MoLE-Flow", "frozen_base", (0, 1), "a"),
        ("strategies", "MoLE-Flow", "frozen_base", (0, 1), "a"),
        ("strategies", "Replay", "replay", (0, 1, 2), "a"),
        ("order", "MoLE-Flow", "frozen_base", (0, 1), "ab"),
    ):
        for seed in seeds:
            for order in orders:
                run_id = f"{study}/{variant}/{seed}/{order}"
                summaries[run_id] = {"tasks": ["bottle", "cable"], "routing_accuracy": 1.0,
                                     "forgetting": {"cable": {"fm": 0.0, "paper": 0.0}}}  # fmt: skip
                for k, category in enumerate(("bottle", "cable")):
                    rows.append(
                        {"study": study, "variant": variant, "dataset": "synth", "run_id": run_id, "seed": seed,
                         "order": order, "status": "ok", "strategy": strategy, "category": category,
                         "image_auroc_routed": 0.8 + 0.05 * k + 0.01 * seed + (0.02 if order == "b" else 0.0)
                         - (0.1 if variant == "Replay" else 0.0),
                         "pixel_ap_routed": 0.3, "pixel_auroc_routed": 0.9, "aupro_routed": 0.7,
                         "memory_pct_of_base": 2.5 if variant == "MoLE-Flow" else 40.0}
                    )  # fmt: skip
    return pd.DataFrame(rows), summaries


def test_evaluate_fills_each_outcomes_dataset_scope_runs_and_notes() -> None:
    frame, summaries = _frame()
    plan = {"datasets": {"synth": {"kind": "mvtec", "generate": True}}}
    outcomes, reg, level = evaluate(frame, plan, summaries)
    by_id = {o.claim_id: o for o in outcomes}
    assert [o.claim_id for o in outcomes] == [e["id"] for e in reg["claims"]]
    assert (by_id["C13"].dataset, by_id["C13"].scope) == ("", "the paper's numbers")
    assert [p.runs for p in by_id["C13"].parts] == ["the paper's numbers"] * len(by_id["C13"].parts)
    assert by_id["C3"].scope == "every frozen_base run: bottle, cable"
    assert by_id["C4"].parts[0].runs == "every run: seeds 0, 1, 2 x orders a, b"  # Replay ran seed 2 too
    assert by_id["C5"].dataset == "" and by_id["C5"].not_tested == (
        "needs the real MVTec AD: the plan's synth is generated data, whose numbers are not the benchmark's"
    )
    assert by_id["C2"].not_tested == "needs a VisA dataset; the plan has none" and by_id["C2"].family
    assert by_id["C12"].dataset == "synth" and by_id["C12"].scope == "main: bottle, cable"
    # a part that reads no variant names the claim's study's runs; one that reads some names those
    (router,) = by_id["C12"].parts
    assert router.runs == "main/MoLE-Flow: seeds 0, 1"
    assert all(p.runs == "main/MoLE-Flow: seeds 0, 1" for p in by_id["C41"].parts)
    assert by_id["C15"].note == "memory per task (% of the base): MoLE-Flow 2.5%, Replay 40.0%"
    # each variant read, with its own runs (Replay's third seed is not MoLE-Flow's)
    (ratio,) = by_id["C9"].parts
    assert ratio.runs == "strategies/MoLE-Flow: seeds 0, 1; strategies/Full-Copy: no finished run"
    assert [o.family for o in outcomes] == [e["family"] for e in reg["claims"]]
    assert by_id["C15"].scope == "pilot: bottle, cable"  # the pilot reads the strategies study's runs
    ctx = Context(__import__("analysis.table_frames", fromlist=["run_level"]).run_level(frame), summaries, "synth")
    check = next(e["check"] for e in reg["claims"] if e["id"] == "C44")
    assert by_id["C44"].note == order_note(ctx, check) and by_id["C44"].note.startswith("one-way ANOVA of I-AUROC")
    assert all(o.note == "" for o in outcomes if o.claim_id not in ("C15", "C44"))
    assert level.a == audit_level(outcomes, reg["alpha"]).a
    assert all(o.verdict for o in outcomes)


def test_evaluate_reads_the_backbone_of_a_real_datasets_runs() -> None:
    frame, summaries = _frame()
    frame = frame.assign(dataset="real")
    for summary in summaries.values():
        summary["config"] = {"features": {"backbone": "wide_resnet50_2", "pretrained": True}}
    outcomes, _, _ = evaluate(frame, {"datasets": {"real": {"kind": "mvtec"}}}, summaries)
    by_id = {o.claim_id: o for o in outcomes}
    assert by_id["C5"].dataset == "real" and not by_id["C5"].not_tested  # the paper's backbone on real MVTec AD
    assert by_id["C2"].not_tested == "needs a VisA dataset; the plan has none"


def test_the_whole_audit_reads_the_summaries_it_is_given() -> None:
    from analysis.audit import audit

    frame, summaries = _frame()
    plan = {"datasets": {"synth": {"kind": "mvtec", "generate": True}}}
    _, outcomes, parts = audit(frame, plan, summaries)
    assert {o.claim_id: o for o in outcomes}["C12"].scope == "main: bottle, cable"  # the summaries' tasks
    assert "main/MoLE-Flow: seeds 0, 1" in set(parts["runs"])


def test_evaluate_judges_each_dataset_a_claim_may_read() -> None:
    frame, summaries = _frame()
    other = frame.assign(dataset="synth2", run_id=frame["run_id"] + "'")
    summaries.update({k + "'": v for k, v in summaries.items()})
    plan = {"datasets": {"synth": {"kind": "mvtec", "generate": True}, "synth2": {"kind": "mvtec", "generate": True}}}
    outcomes, _, _ = evaluate(pd.concat([frame, other]), plan, summaries)
    assert [o.dataset for o in outcomes if o.claim_id == "C12"] == ["synth", "synth2"]
    c12 = [o for o in outcomes if o.claim_id == "C12"]
    assert [p.runs for o in c12 for p in o.parts] == ["main/MoLE-Flow: seeds 0, 1"] * 2
    assert [o.dataset for o in outcomes if o.claim_id == "C19"] == [""]


# --------------------------------------------------------------------------------------------------------- the figure
def plt_default(key: str) -> float:
    import matplotlib

    return float(cast(Any, matplotlib.rcParams)[key])


def test_the_figure_draws_each_interval_with_its_claims_colour_and_the_papers_value() -> None:
    from matplotlib.colors import to_rgba

    from analysis.audit.figure import effects_figure

    diff = sign_test("Δ I-AUROC > 0", np.array([0.05, 0.06, 0.07]), ">", 0.0, 0.005, paper=0.04)
    ratio = sign_test("ratio", np.array([0.98, 0.99, 0.985]), ">", 0.9, paper=0.987)
    ratio.origin = 1.0
    bad = sign_test("Δ P-AP < 0", np.array([0.01, 0.02, 0.015]), "<", 0.0, 0.005)
    outcomes = [Outcome("C1", "f", "d", parts=[diff, ratio]), Outcome("C2", "f", "d", parts=[bad, Part("none")])]
    level = audit_level(outcomes, 0.05)
    for o in outcomes:
        decide(o, level)
    assert [o.verdict for o in outcomes] == ["supported", "contradicted"]
    fig: Any = effects_figure(outcomes)
    ax: Any = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["C2 Δ P-AP < 0", "C1 ratio (minus 1)", "C1 Δ I-AUROC > 0"]
    lines: list[Any] = [
        line for line in ax.get_lines() if len(line.get_xdata()) in (1, 2) and line.get_label()[0] == "_"
    ]
    drawn = [(list(line.get_xdata()), list(line.get_ydata()), line.get_color(), line.get_marker()) for line in lines]
    expected = []
    for y, part, colour in ((0, bad, "tab:red"), (1, ratio, "tab:green"), (2, diff, "tab:green")):
        shift = part.origin
        expected.append(([part.low - shift, part.high - shift], [y, y], colour, "None"))
        expected.append(([part.estimate - shift], [y], colour, "o"))
        if np.isfinite(part.paper):
            expected.append(([part.paper - shift], [y], "black", "x"))
    vertical = drawn.pop(len(expected))  # the zero line, drawn after the parts
    assert vertical[0] == [0.0, 0.0] and vertical[2] == "black"
    assert len(drawn) == len(expected)
    for got, want in zip(drawn, expected):
        assert got[0] == pytest.approx(want[0]) and got[1] == want[1]
        assert to_rgba(got[2]) == to_rgba(want[2]) and got[3] == want[3]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "claim supported", "claim contradicted", "claim inconclusive", "the paper's value"
    ]  # fmt: skip
    assert ax.get_xlabel() == (
        f"harness estimate with the interval that decided it ({1 - 2 * level.a:.1%}, the audit's level; metric "
        "fractions; differences are variant - reference)"
    )
    assert ax.get_title() == "Claims audit: the tested effects"
    assert fig.get_size_inches()[1] == pytest.approx(0.28 * 3 + 1.4)
    assert effects_figure([Outcome("C3", "f", "d", parts=[Part("none")])]) is None
    # its style: what a reader of the printed page sees
    assert fig.get_size_inches()[0] == pytest.approx(7.5)
    assert [line.get_linewidth() for line in lines[:2]] == [1.5, pytest.approx(plt_default("lines.linewidth"))]
    assert [lines[1].get_markersize(), lines[4].get_markersize()] == [4, 5]  # an estimate; the paper's cross
    assert vertical[2] == "black" and ax.get_lines()[len(expected)].get_linewidth() == 0.6
    assert {t.get_fontsize() for t in ax.get_yticklabels()} == {6}
    assert {t.get_fontsize() for t in ax.get_xticklabels()} == {7}
    assert ax.xaxis.label.get_fontsize() == 7 and ax.title.get_fontsize() == 9
    legend: Any = ax.get_legend()
    assert legend._loc == 4 and {t.get_fontsize() for t in legend.get_texts()} == {6}  # 4: lower right
    handles = legend.legend_handles
    assert [(to_rgba(h.get_color()), h.get_marker(), h.get_linewidth()) for h in handles] == [
        (to_rgba("tab:green"), "o", 1.5), (to_rgba("tab:red"), "o", 1.5), (to_rgba("tab:grey"), "o", 1.5),
        (to_rgba("black"), "x", 0.0),
    ]  # fmt: skip
    # a part without an interval (n = 1) is not drawn; a claim of another verdict is grey
    lone = sign_test("one run", np.array([0.05]), ">", 0.0, 0.005)
    other = Outcome("C9", "f", "d", parts=[sign_test("x", np.array([0.1, 0.2, 0.15]), ">", 0.0, 0.005), lone])
    other.parts[0].settle(level.a)
    other.verdict = "a verdict of its own"
    ax = cast(Any, effects_figure([other])).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["C9 x"]
    assert to_rgba(ax.get_lines()[0].get_color()) == to_rgba("tab:grey")
    long = Outcome("C9", "f", "d", parts=[sign_test("y" * 100, np.array([0.1, 0.2, 0.15]), ">", 0.0, 0.005)])
    long.parts[0].settle(level.a)
    assert [len(t.get_text()) for t in cast(Any, effects_figure([long])).axes[0].get_yticklabels()] == [78]
