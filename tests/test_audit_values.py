"""The claims audit's bookkeeping against values by hand: the parts' CSV row by row, the p-value's print,
the notes of a deviation and an unregistered registry, the spread of a sweep within a seed, the paper's
printed averages against their categories and the ranges of integers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.audit import PART_COLUMNS, deviation_note, parts_frame, registration_note
from analysis.audit.evidence import INF, Part
from analysis.audit.verdicts import AuditLevel, Outcome, _p


def test_every_part_is_one_row_of_the_parts_csv() -> None:
    first = Part(
        "Δ P-AP > 0", estimate=0.02, n=5, se=0.005, df=4, region=(0.005, INF), p_support=0.01, p_contradict=0.9
    )
    first.runs, first.low, first.high, first.level = "seeds 0-4", 0.01, 0.03, 0.95
    second = Part("routing >= 0.99", reason="no finished run")
    level = AuditLevel(q=0.05, m=4, selected=2)
    frame = parts_frame(
        [Outcome("C1", "f", "synth", [first], statuses=["supported"]), Outcome("C2", "g", "visa", [second], statuses=["inconclusive"])],
        level,
    )  # fmt: skip
    assert list(frame.columns) == PART_COLUMNS == [
        "claim", "dataset", "part", "estimate", "low", "high", "coverage", "region_low", "region_high", "n", "runs",
        "p_support", "p_contradict", "p_part", "audit_level", "decision", "reason",
    ]  # fmt: skip
    row = frame.iloc[0].to_dict()
    assert row == {
        "claim": "C1", "dataset": "synth", "part": "Δ P-AP > 0", "estimate": 0.02, "low": 0.01, "high": 0.03,
        "coverage": 0.95, "region_low": 0.005, "region_high": INF, "n": 5, "runs": "seeds 0-4", "p_support": 0.01,
        "p_contradict": 0.9, "p_part": 0.02, "audit_level": 2 * 0.05 / (2 * 4), "decision": "supported", "reason": "",
    }  # fmt: skip
    other = frame.iloc[1]
    assert (other["claim"], other["dataset"], other["decision"], other["reason"]) == (
        "C2", "visa", "inconclusive", "no finished run",
    )  # fmt: skip
    assert math.isnan(other["estimate"]) and other["region_low"] == -INF and other["n"] == 0
    empty = parts_frame([], level)
    assert list(empty.columns) == PART_COLUMNS and empty.empty


def test_a_p_value_prints_three_decimals_or_below_a_thousandth() -> None:
    assert [_p(v) for v in (float("nan"), 0.0004, 0.001, 0.0123, 1.0)] == ["--", "<0.001", "0.001", "0.012", "1.000"]


def test_a_deviation_and_a_missing_registration_are_said() -> None:
    logged = [
        {"claim": "C7", "version": "7", "what": "margin 0.01", "on": "the default", "before": "inconclusive", "after": "contradicted"},
        {"claim": "C8", "version": "3", "what": "other", "on": "x", "before": "a", "after": "b"},
        {"claim": "C7", "version": "9", "what": "n 5", "on": "VisA", "before": "supported", "after": "inconclusive"},
    ]  # fmt: skip
    assert deviation_note("C7", logged) == (
        " [deviation, version 7: margin 0.01; on the default: inconclusive under version 6, contradicted under version 7]"
        " [deviation, version 9: n 5; on VisA: supported under version 8, inconclusive under version 9]"
    )
    assert deviation_note("C9", logged) == ""
    assert registration_note({"sha256": "0" * 64}) == (
        "; NOT REGISTERED: this digest is in no line of analysis/audit/REGISTRATIONS.csv"
    )


def test_a_sweeps_spread_within_each_seed() -> None:
    from analysis.audit.designs import _seed_spreads

    rows = pd.DataFrame(
        [
            {"seed": s, "order": "a", "value": v, "status": st, "y": y}
            for s, v, st, y in [
                (0, 1, "ok", 0.80), (0, 2, "ok", 0.86), (0, 3, "ok", 0.83),
                (1, 1, "ok", 0.70), (1, 2, "ok", 0.71), (1, 3, "ok", 0.75),
                (2, 1, "ok", 0.90), (2, 2, "diverged", 0.10), (2, 3, "ok", 0.95),  # seed 2 lacks a value: left out
            ]
        ]
    )  # fmt: skip
    spreads = _seed_spreads(rows, "y")
    assert spreads.to_dict() == pytest.approx({(0, "a"): 0.06, (1, "a"): 0.05})


def test_the_papers_averages_and_integer_ranges() -> None:
    from analysis import literature
    from analysis.audit.paper_values import averages, ranges

    frame = literature.load()
    sub = frame[frame["paper_table"] == "6"]
    expected = []
    for method in dict.fromkeys(sub["method"]):  # in the table's order
        rows = sub[sub["method"] == method]
        cats = rows[~rows["category"].isin(["avg", "FM"])]["value"].dropna()
        printed = rows[rows["category"] == "avg"]["value"].dropna()
        if len(cats) and len(printed) and abs(cats.mean() - printed.iloc[0]) > 0.001:
            expected.append(f"{method} {printed.iloc[0]:.3f} vs {cats.mean():.4f}")
    assert averages("6") == expected == ["FT_PatchCore 0.311 vs 0.0979"]
    four = averages("4")
    assert [line.split(" ")[0] for line in four] == ["Joint_PatchCore", "Joint_PatchCore(R)", "DFM", "MoLE-Flow"]
    assert averages("5") == [] and averages("none") == []
    assert ranges([1, 2, 3, 7, 9, 10]) == "1-3, 7, 9-10" and ranges([4]) == "4" and ranges([]) == "none"
    assert np.isfinite(frame["value"].dropna()).all()


def test_a_sweeps_level_is_found_by_value_or_by_name() -> None:
    from analysis.audit.designs import _level_variant, _levels

    rows = pd.DataFrame(
        {
            "value": ["0.5", "0.7 (default)", "1", "ceil", "0.5"],
            "variant": ["tw0.5", "tw0.7", "tw1", "rounding ceil", "tw0.5 again"],
        }
    )
    assert _level_variant(rows, "0.7") == "tw0.7"  # the default's mark is not part of its value
    assert _level_variant(rows, "1.0") == "tw1" and _level_variant(rows, "1") == "tw1"  # numbers compared as numbers
    assert _level_variant(rows, "0.5") == "tw0.5"  # the first row of a value
    assert _level_variant(rows, "ceil") == "rounding ceil" and _level_variant(rows, "round") is None
    assert _level_variant(rows, "2") is None
    assert _levels(rows) == {"0.5": "tw0.5 again", "0.7": "tw0.7", "1": "tw1", "ceil": "rounding ceil"}


def _registry() -> dict:
    claims = [
        {"id": "C1", "claim": "zero forgetting", "paper": "0.0", "where": "Table 1", "rule": "exact, every run"},
        {"id": "C2", "claim": "WA helps", "paper": "+7.4 pp", "where": "Table 7", "rule": "Δ > 0.005",
         "changed": "margin 0.01", "definition": "ablation/w/o WA vs main"},
    ]  # fmt: skip
    return {"claims": claims, "version": 99, "sha256": "f" * 64}


def test_the_claims_table_row_by_row() -> None:
    from analysis.audit import claims_table
    from analysis.audit.evidence import SUPPORTED, exact

    decided = exact("oracle R[j][i] = R[i][i]", True, 0.0, 3, "12 cells, 0 differ")
    undecided = Part("Δ P-AP > 0", estimate=0.01, n=3, se=0.004, df=2, region=(0.005, INF))
    undecided.sd = 0.007
    level = AuditLevel(q=0.05, m=10, selected=0)
    outcomes = [
        Outcome("C1", "forgetting", "synth", [decided], verdict=SUPPORTED, why="every part", statuses=[SUPPORTED],
                scope="main"),
        Outcome("C2", "components", "synth", [undecided], note="memory 3%", verdict="inconclusive", why="interval",
                statuses=["inconclusive"]),
    ]  # fmt: skip
    spec = claims_table(outcomes, _registry(), level)
    assert spec.rows == ["C1", "C2"]  # one dataset: no dataset in the row's name
    assert spec.columns == ["Family", "Claim", "Paper", "Harness", "Scope", "Rule", "Verdict", "Why", "Power"]
    one = {c: spec.cells[("C1", c)].text for c in spec.columns}
    assert one == {
        "Family": "forgetting", "Claim": "zero forgetting", "Paper": "0.0 (Table 1)",
        "Harness": "oracle R[j][i] = R[i][i]: 12 cells, 0 differ", "Scope": "main", "Rule": "exact, every run",
        "Verdict": SUPPORTED, "Why": "every part", "Power": "--",
    }  # fmt: skip
    two = {c: spec.cells[("C2", c)].text for c in spec.columns}
    assert two["Harness"] == "Δ P-AP > 0: +0.0100, n=3 (memory 3%)" and two["Scope"] == "--"
    assert two["Rule"] == "Δ > 0.005 [changed from the proposal: margin 0.01] [runs: ablation/w/o WA vs main]"
    power = str(two["Power"])
    assert power.startswith("Δ P-AP > 0: n=") and f"level {level.a:.2g}" in power
    assert spec.caption.startswith(
        f"The claims audit (registry version 99, registry.yaml sha256 {'f' * 64}; NOT REGISTERED"
    )
    assert level.text() in spec.caption
    assert spec.caption.endswith("Verdicts: supported 1, contradicted 0, inconclusive 1, not tested here 0.")
    assert "; the whole audit:" not in spec.caption  # no deviation of the whole audit logged at version 99
    assert "analysis/audit/DEVIATIONS.csv). Error control over the whole audit:" in spec.caption
    assert spec.latex_columns == ["Claim", "Paper", "Harness", "Verdict"]
    untested = Outcome("C1", "forgetting", "visa", [], not_tested="no VisA runs", verdict="not tested")
    several = claims_table([outcomes[0], untested], _registry(), level)
    assert several.rows == ["C1 (synth)", "C1 (visa)"]  # two datasets: each row says which
    assert several.cells[("C1 (visa)", "Harness")].text == "--" and several.cells[("C1 (visa)", "Power")].text == "--"
    at7 = claims_table(outcomes, {**_registry(), "version": 7}, level).caption
    assert (
        "; the whole audit: 6 supported; 7 contradicted; 28 inconclusive; 8 not tested under version 6, "
        "6 supported; 10 contradicted; 25 inconclusive; 8 not tested under version 7, on the default at 19322c6 "
        "(148 runs))" in at7
    )  # analysis/audit/DEVIATIONS.csv's line for the whole audit at version 7


def test_averages_skip_rows_without_terms_and_flag_a_gap_beyond_rounding(monkeypatch: pytest.MonkeyPatch) -> None:
    from analysis import literature
    from analysis.audit import paper_values

    rows = [  # (method, category, value): Z printed only, Y categories only, X off by exactly 0.001, W beyond
        ("Z", "avg", 0.9), ("Y", "a", 0.5), ("X", "a", 0.002), ("X", "b", 0.002), ("X", "avg", 0.001),
        ("X", "FM", 0.7), ("W", "a", 0.4), ("W", "b", 0.6), ("W", "avg", 0.6),
    ]  # fmt: skip
    frame = pd.DataFrame([{"paper_table": "3", "method": m, "category": c, "value": v} for m, c, v in rows])
    monkeypatch.setattr(literature, "load", lambda: frame)
    assert paper_values.averages("3") == ["W 0.600 vs 0.5000"]  # X's 0.001 is rounding; FM is not a category


def test_the_papers_tables_keep_empty_text_and_name_a_missing_cell() -> None:
    from analysis.audit.paper_values import paper_values, value

    pv = paper_values()
    assert pv["text"].notna().all() and (pv["text"] == "").any()  # an empty cell is text, not a missing value
    with pytest.raises(KeyError, match="analysis/paper_tables.csv has no Table 99 / x / y"):
        value(pv, "99", "x", "y")


def test_the_claims_tables_caption_harness_and_deviations_word_for_word() -> None:
    from analysis.audit import claims_table
    from analysis.audit.evidence import SUPPORTED, exact

    level = AuditLevel(q=0.05, m=10, selected=0)
    parts = [exact("a", True, 0.0, 2, "first"), exact("b", True, 0.0, 2, "second"), Part("c")]  # c shows nothing
    reg = _registry()
    reg["claims"][0]["id"] = "C12"  # a claim with a deviation logged at version 7
    outcome = Outcome("C12", "routing", "synth", parts, verdict=SUPPORTED, why="w", statuses=[SUPPORTED] * 3)
    spec = claims_table([outcome], {**reg, "version": 7}, level)
    assert spec.cells[("C12", "Harness")].text == "a: first; b: second"
    assert spec.cells[("C12", "Rule")].text == (
        "exact, every run [deviation, version 7: paired Δ beyond the margin (was: interval excluding 0); on the "
        "default at 19322c6 (148 runs): inconclusive under version 6, inconclusive under version 7]"
    )
    assert spec.cells[("C12", "Power")].text == "--"  # exact parts need no replicates
    two = [Part(f"Δ {k}", estimate=0.01, n=3, se=0.004, df=2, region=(0.005, INF), sd=0.007) for k in "ab"]
    undecided = Outcome("C12", "routing", "synth", two, verdict="inconclusive", statuses=["inconclusive"] * 2)
    power = str(claims_table([undecided], reg, level).cells[("C12", "Power")].text)
    assert power.count("; Δ b: n=") == 1 and power.startswith("Δ a: n=")
    assert spec.caption == (
        f"The claims audit (registry version 7, registry.yaml sha256 {'f' * 64}; NOT REGISTERED: this digest is in "
        "no line of analysis/audit/REGISTRATIONS.csv; its changes: analysis/audit/CHANGELOG.md): each claim of the "
        "paper, the harness's evidence (estimate [the deciding interval (its coverage)], n = replicates: seeds, or "
        "seeds x task orders; Δ = variant - reference, paired by seed and task order over every run of the two "
        "configurations, whatever study planned it: claims_parts.csv names them), the runs it covers (Scope), the "
        "pre-registered rule and the verdict; a rule changed after its runs had been seen says so in the Rule "
        "column ([deviation]: what changed, with the verdicts before and after on the same runs; "
        "analysis/audit/DEVIATIONS.csv; the whole audit: 6 supported; 7 contradicted; 28 inconclusive; 8 not "
        "tested under version 6, 6 supported; 10 contradicted; 25 inconclusive; 8 not tested under version 7, on "
        f"the default at 19322c6 (148 runs)). Error control over the whole audit: {level.text()}. A part is "
        "supported when its interval lies inside the claim's region, contradicted when it lies entirely outside "
        "(the complement, where an effect no larger than the smallest effect of interest lies too), inconclusive "
        "otherwise; exact parts (bitwise equality, counts) are decided without a test. A claim is supported when "
        "every part is, contradicted when any part is. Power: for each undecided t-tested part, the replicates it "
        "would need at the audit's level, or that its estimate lies outside its region. Verdicts: supported 1, "
        "contradicted 0, inconclusive 0, not tested here 0."
    )
    assert (spec.table_id, spec.paper_table, spec.title) == (
        "claims", "audit", "What the runs say about each claim of the paper"
    )  # fmt: skip
    assert spec.latex_format == "lp{2.6cm}p{1.7cm}p{4.0cm}p{1.9cm}"


def test_the_self_check_table_and_the_whole_audit() -> None:
    from analysis.audit import audit, self_check_table
    from analysis.audit.paper_check import checks

    found = checks()
    spec = self_check_table()
    assert spec.rows == [f"P{i}" for i in range(1, len(found) + 1)]
    assert spec.columns == ["Check", "Tables", "Printed", "Computed", "Agrees"]
    for row, check in zip(spec.rows, found):
        assert [spec.cells[(row, c)].text for c in spec.columns] == [
            check.what, check.tables, check.printed, check.computed, "yes" if check.consistent else "no"
        ]  # fmt: skip
    bad = sum(not c.consistent for c in found)
    assert spec.caption == (
        f"The paper against itself: {len(found)} quantities recomputed from the paper's own printed values "
        f"(analysis/paper_tables.csv, analysis/literature.csv); {bad} disagree with what is printed beyond rounding."
    )
    assert (spec.table_id, spec.paper_table, spec.title) == (
        "paper_self_check", "audit", "The paper's numbers checked against each other"
    )  # fmt: skip
    assert spec.latex_format == "lp{3.2cm}p{1.3cm}p{1.7cm}p{3.0cm}p{1.0cm}"
    plan = {"datasets": {"synth": {"kind": "mvtec", "generate": True}}}
    tables, outcomes, parts = audit(pd.DataFrame(), plan, {})
    assert [t.table_id for t in tables] == ["claims", "paper_self_check"]
    assert [o.claim_id for o in outcomes] == [
        e["id"] for e in __import__("analysis.audit", fromlist=["x"]).registry()["claims"]
    ]
    assert list(parts["claim"]) == [o.claim_id for o in outcomes for _ in o.parts]
    assert tables[0].rows == [o.claim_id for o in outcomes]


def test_the_audits_files_are_read_as_utf8_whatever_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    """registry.yaml, the CSVs and the paper's tables hold Δ and ±: read under a locale whose encoding is ASCII (a
    bare C locale), they must still be read as UTF-8."""
    import io

    from analysis.audit import deviations, registrations, registry
    from analysis.audit.paper_values import paper_values

    monkeypatch.setattr(io, "text_encoding", lambda encoding, stacklevel=2: encoding or "ascii")
    assert len(registry()["claims"]) == 49 and registrations() and deviations()
    assert (paper_values()["column"] == "Δ P-AP").any()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "red"}, "analysis/audit/registry.yaml: claim C1: unknown key(s) ['colour']"),
        ({"rule": None}, "analysis/audit/registry.yaml: claim C1: missing key(s) ['rule']"),
        ({"id": None}, "analysis/audit/registry.yaml: claim ?: missing key(s) ['id']"),
        ({"check": {"test": "tea_leaves"}}, "analysis/audit/registry.yaml: claim C1: unknown test 'tea_leaves'"),
        (
            {"needs": {"kind": "mvtec", "gpu": True}},
            "analysis/audit/registry.yaml: claim C1: needs must be kind in "
            "['any', 'mvtec', 'none', 'visa'], optional real and backbone",
        ),
        (
            {"needs": {"kind": "kolektor"}},
            "analysis/audit/registry.yaml: claim C1: needs must be kind in "
            "['any', 'mvtec', 'none', 'visa'], optional real and backbone",
        ),
    ],
)
def test_a_bad_registry_entry_is_one_error_naming_the_claim(change: dict, message: str) -> None:
    import re

    from analysis.audit import registry, validate
    from moleflow.errors import ConfigError

    first = dict(registry()["claims"][0])
    entry = {k: v for k, v in {**first, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        validate([entry])
    validate([first])  # the registry's own entry passes
    with pytest.raises(ConfigError, match=r"^analysis/audit/registry.yaml: claim C1: listed twice$"):
        validate([first, dict(first)])
