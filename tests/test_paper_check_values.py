"""The paper against itself (:func:`analysis.audit.paper_check.checks`): every recomputation, word for word.

The list below is what the audit prints of the paper's own numbers (``analysis/paper_tables.csv``,
``analysis/literature.csv``), written down once from its output: the
arithmetic of the first two is repeated here by hand, and ``tests/test_audit.py`` checks the degrees of
freedom, the averages and the overhead by other routes. A changed check, value or verdict fails here and
must be looked at, not regenerated.
"""

from __future__ import annotations

import pytest

from analysis.audit.paper_check import checks
from analysis.audit.paper_values import SelfCheck

EXPECTED = [
    SelfCheck(
        "Pixel AP: abstract (5 runs) vs Tables 4, 7, 9, 16",
        "abstract; 4; 7; 16",
        "53.78 ± 0.73; 56.2",
        "difference 2.42 pp = 3.3 of the abstract's SDs",
        False,
    ),
    SelfCheck(
        '"98.7% of single-task performance" vs the tables\' ratios',
        "abstract; 1; 14",
        "98.7%",
        "Table 14 I-AUROC 99.8%, Table 14 P-AP 107.0%, Table 1 I-AUROC 99.9%",
        False,
    ),
    SelfCheck(
        "Tail weight: Table 2's setting vs Table 11's best",
        "2; 11",
        "0.7",
        "Table 11's highest P-AP at 1.0",
        False,
    ),
    SelfCheck(
        '"Improves monotonically with the tail weight": image AUROC',
        "11",
        "monotone",
        "95 -> 97.8 -> 97.9 -> 98.1 -> 98",
        False,
    ),
    SelfCheck(
        "Configuration: Tables 2 and 12 vs the authors' main script",
        "2; 12; script",
        "Table 2, Table 12's reference",
        "all equal",
        True,
    ),
    SelfCheck(
        "Configuration: Tables 2 and 12 vs the authors' method outline (v1.6)",
        "2; 12; outline",
        "Table 2, Table 12's reference",
        "MoLE Blocks 8 vs 6; Learning Rate 0.0002 vs 0.0003; Tail Weight 0.3 vs 0.7; LogDet Weight 3e-05 vs 0.0001; Tail Top-K Ratio 0.05 vs 0.02",
        False,
    ),
    SelfCheck(
        "The reference configuration's image AUROC across tables",
        "7; 9; 11-14",
        "one configuration",
        "T7 97.9, T9 97.9, T11 98, T12 98, T13 98, T14 97.9",
        False,
    ),
    SelfCheck(
        "Table 3: printed averages vs their categories' mean",
        "3",
        "averages",
        "MoLE-Flow 0.979 vs 0.9806",
        False,
    ),
    SelfCheck(
        "Table 4: printed averages vs their categories' mean",
        "4",
        "averages",
        "Joint_PatchCore 0.594 vs 0.5968; Joint_PatchCore(R) 0.573 vs 0.5748; DFM 0.113 vs 0.4987; MoLE-Flow 0.562 vs 0.5581",
        False,
    ),
    SelfCheck(
        "Table 5: printed averages vs their categories' mean",
        "5",
        "averages",
        "all within rounding",
        True,
    ),
    SelfCheck(
        "Table 6: printed averages vs their categories' mean",
        "6",
        "averages",
        "FT_PatchCore 0.311 vs 0.0979",
        False,
    ),
    SelfCheck(
        "Table 7: printed Δ vs the difference of its rows",
        "7",
        "Δ columns",
        "w/o Whitening Adapter Δ P-AP -7.3 vs -7.4; w/o LogDet Regularization Δ I-AUC +0.1 vs +0.2",
        False,
    ),
    SelfCheck(
        "Table 11: printed Δ vs the difference of its rows",
        "11",
        "Δ columns",
        "all 4 equal",
        True,
    ),
    SelfCheck(
        "Table 12: printed Δ vs the difference of its rows",
        "12",
        "Δ columns",
        "all 4 equal",
        True,
    ),
    SelfCheck(
        "Table 13: printed Δ vs the difference of its rows",
        "13",
        "Δ columns",
        "all 3 equal",
        True,
    ),
    SelfCheck(
        "Table 14: printed Δ vs the difference of its rows",
        "14",
        "Δ columns",
        "all 4 equal",
        True,
    ),
    SelfCheck(
        "Per-task overhead at Table 2's configuration (this harness's model, D = 768)",
        "abstract; 1; 2",
        "8%",
        "41.5% (21.6% without DIA; 3,706,368 / 8,928,775 parameters)",
        False,
    ),
    SelfCheck(
        'Table 4: "Ours" bold as the best continual method',
        "4",
        "0.562 (bold)",
        "CADIC 0.584",
        False,
    ),
    SelfCheck(
        'Table 5: "Ours" bold as the best continual method',
        "5",
        "0.900 (bold)",
        "CFRDC 0.910",
        False,
    ),
    SelfCheck(
        "Table 1's 5-class Fine-tune vs Table 3's 15-class FT_PatchCore average",
        "1; 3",
        "0.602",
        "0.602 (the same number from a different experiment)",
        False,
    ),
    SelfCheck(
        "Table 9: the bold 6/2 image AUROC vs the other depths",
        "9",
        "97.9 (bold)",
        "6 depth(s) higher: M8 N2, M10 N2, M6 N4, M6 N6, M4 N8, M0 N4",
        False,
    ),
    SelfCheck(
        "Table 8, Whitening Adapter: residual df its interaction F and rounded p imply (runs per cell not stated)",
        "8",
        "F 8.47, p 0.008",
        "df 21-24; balanced: 24 (7 runs per cell); 5 per cell (df 16) would give p = 0.010",
        True,
    ),
    SelfCheck(
        "Table 8, Tail-Aware Loss: residual df its interaction F and rounded p imply (runs per cell not stated)",
        "8",
        "F 6.23, p 0.021",
        "df 20-22; balanced: 20 (6 runs per cell); 5 per cell (df 16) would give p = 0.024",
        True,
    ),
    SelfCheck(
        "Table 8, DIA: residual df its interaction F and rounded p imply (runs per cell not stated)",
        "8",
        "F 5.12, p 0.034",
        "df 21-22; none balanced; 5 per cell (df 16) would give p = 0.038",
        False,
    ),
    SelfCheck(
        "Table 8, Scale Context: residual df its interaction F and rounded p imply (runs per cell not stated)",
        "8",
        "F 0.89, p 0.356",
        "df 19-25; balanced: 20 (6 runs per cell), 24 (7 runs per cell); 5 per cell (df 16) would give p = 0.360",
        True,
    ),
    SelfCheck(
        "Table 8, Spatial Context: residual df its interaction F and rounded p imply (runs per cell not stated)",
        "8",
        "F 1.24, p 0.278",
        "df 19-23; balanced: 20 (6 runs per cell); 5 per cell (df 16) would give p = 0.282",
        True,
    ),
    SelfCheck(
        "Table 8: one residual df for all five interaction tests (one design, the same runs)",
        "8",
        "F and p per component",
        "df fitting every row: 21-22",
        True,
    ),
]


def test_every_recomputation_of_the_paper_word_for_word() -> None:
    found = checks()
    assert [c.what for c in found] == [c.what for c in EXPECTED]
    for got, want in zip(found, EXPECTED):
        assert got == want, want.what


def test_the_first_two_by_hand() -> None:
    gap = (56.2 - 53.78) / 0.73  # Tables 4, 7, 9 and 16's P-AP against the abstract's mean and SD
    assert f"{56.2 - 53.78:.2f} pp = {gap:.1f}" == "2.42 pp = 3.3" and abs(gap) > 2
    ratios = [97.9 / 98.1, 56.2 / 52.5, 98.1 / 98.2]  # Table 14 (frozen / separated) and Table 1 (ours / oracle)
    assert [f"{100 * r:.1f}%" for r in ratios] == ["99.8%", "107.0%", "99.9%"]
    assert not any(abs(100 * r - 98.7) < 0.15 for r in ratios)
    assert EXPECTED[0].computed.endswith("3.3 of the abstract's SDs") and not EXPECTED[0].consistent
    assert EXPECTED[1].computed == "Table 14 I-AUROC 99.8%, Table 14 P-AP 107.0%, Table 1 I-AUROC 99.9%"
    assert pytest.approx(98.7) == float(EXPECTED[1].printed.rstrip("%"))


def test_a_delta_check_that_finds_no_delta_cell_does_not_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import analysis.audit.paper_check as paper_check

    full = paper_check.paper_values()
    without = full[~((full["paper_table"] == "13") & full["column"].str.startswith("Δ"))]
    monkeypatch.setattr(paper_check, "paper_values", lambda: without)
    (check,) = [c for c in paper_check.checks() if c.what.startswith("Table 13: printed Δ")]
    assert (check.computed, check.consistent) == ("all 0 equal", False)
    deltas = full[(full["paper_table"] == "13") & full["column"].str.startswith("Δ")]
    one = full.drop(index=deltas.index[1:])  # one Δ cell left: one comparison is a check
    monkeypatch.setattr(paper_check, "paper_values", lambda: one)
    (check,) = [c for c in paper_check.checks() if c.what.startswith("Table 13: printed Δ")]
    assert (check.computed, check.consistent) == ("all 1 equal", True)
