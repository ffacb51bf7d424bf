"""The blocked 2 x 2 design's statistics at their edges, against values by hand: a contrast's t tests and
intervals (and NaN where no test is defined), the partial eta squared interval by inverting the noncentral F,
the contrasts' names and estimates, the analysis' notes word for word, the verdict's strict inequalities, and
the one-way ANOVA's refusals."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.blocked import Contrast, _contrast, contrasts
from analysis.stats import AnovaResult, blocked_anova, holm, one_way_anova

T = Contrast("x", 0.5, 0.25, 4)  # t = 2 on 3 df


def test_a_contrasts_t_tests_by_hand() -> None:
    assert (T.df, T.testable, T.f) == (3, True, 4.0)
    assert T.p_greater() == pytest.approx(sps.t.sf(2.0, 3), rel=1e-12)
    assert T.p_greater(0.1) == pytest.approx(sps.t.sf(1.6, 3), rel=1e-12)
    assert T.p_less() == pytest.approx(sps.t.cdf(2.0, 3), rel=1e-12)
    assert T.p_less(1.0) == pytest.approx(sps.t.cdf(-2.0, 3), rel=1e-12)
    assert T.p_two_sided() == pytest.approx(2 * sps.t.sf(2.0, 3), rel=1e-12)
    assert T.p_equivalent(0.3) == pytest.approx(max(sps.t.sf(3.2, 3), sps.t.cdf(0.8, 3)), rel=1e-12)
    half = sps.t.ppf(0.975, 3) * 0.25
    assert T.interval() == pytest.approx((0.5 - half, 0.5 + half), rel=1e-12)
    assert T.interval(0.5) == pytest.approx((0.5 - sps.t.ppf(0.75, 3) * 0.25, 0.5 + sps.t.ppf(0.75, 3) * 0.25))
    assert T.eta2_partial == pytest.approx(4 / 7, rel=1e-12)


@pytest.mark.parametrize(
    "untestable", [Contrast("x", 0.5, 0.0, 4), Contrast("x", 0.5, float("nan"), 1), Contrast("x", 0.5, 0.1, 1)]
)
def test_no_test_without_two_blocks_and_a_spread(untestable: Contrast) -> None:
    assert not untestable.testable
    values = [
        untestable.p_greater(), untestable.p_less(), untestable.p_two_sided(), untestable.p_equivalent(0.1),
        untestable.f, untestable.eta2_partial, *untestable.interval(), *untestable.eta2_interval(),
    ]  # fmt: skip
    assert all(isinstance(v, float) and math.isnan(v) for v in values)


def _lam(eta2: float, df: int) -> float:
    """eta2 = lambda / (lambda + df1 + df2 + 1) with df1 = 1, solved for lambda."""
    return eta2 / (1 - eta2) * (1 + df + 1)


# F = 9 on (1, 5) df lies below F(1, 5)'s 0.975 quantile (10.0) but above F(2, 5)'s; F = 10.5 lies above it, its
# lower bound's noncentrality below 1: the cases where the bound's test at zero must read the right distribution
@pytest.mark.parametrize("t, n", [(0.5, 6), (3.0, 6), (10.5**0.5, 6), (5.0, 6), (30.0, 9), (200.0, 4)])
@pytest.mark.parametrize("level", [0.95, 0.9])
def test_the_eta_squared_interval_inverts_the_noncentral_f(t: float, n: int, level: float) -> None:
    contrast = Contrast("x", t * 0.01, 0.01, n)
    f, df = t * t, n - 1
    low, high = contrast.eta2_interval(level)
    upper_q, lower_q = 0.5 + level / 2, 0.5 - level / 2
    if sps.ncf.cdf(f, 1, df, 0.0) < upper_q:  # even no effect makes an F this large unremarkable: the bound is 0
        assert low == 0.0
    else:
        assert low > 0 and sps.ncf.cdf(f, 1, df, _lam(low, df)) == pytest.approx(upper_q, abs=1e-7)
    assert 0 < high < 1 and sps.ncf.cdf(f, 1, df, _lam(high, df)) == pytest.approx(lower_q, abs=1e-7)
    assert low < contrast.eta2_partial < high
    if t == 0.5:
        assert low == 0.0  # the case above is reached
    if t >= 30:
        assert _lam(high, df) > 10  # the bracket had to grow past its first guess


def test_a_contrast_over_blocks_with_and_without_values() -> None:
    found = _contrast("c", pd.Series([1.0, np.nan, 3.0, 5.0]))
    assert (found.name, found.estimate, found.n) == ("c", 3.0, 3)
    assert found.se == pytest.approx(2.0 / np.sqrt(3), rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one block: no spread computed (numpy would warn of zero degrees of freedom)
        one = _contrast("c", pd.Series([2.5, np.nan]))
    assert (one.name, one.estimate, one.n) == ("c", 2.5, 1) and math.isnan(one.se)
    empty = _contrast("c", pd.Series([np.nan], dtype=float))
    assert (empty.name, empty.n) == ("c", 0) and math.isnan(empty.estimate) and math.isnan(empty.se)


BLOCKS = ["s0", "s1", "s2"]
CELLS = {
    ("frozen", "on"): [0.90, 0.94, 0.91],
    ("frozen", "off"): [0.80, 0.81, 0.83],
    ("a:lr1e-4", "on"): [0.70, 0.73, 0.69],
    ("a:lr1e-4", "off"): [0.68, 0.70, 0.70],
}


def _frame(cells: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"block": b, "base": arm, "component": c, "y": y}
            for (arm, c), ys in cells.items()
            for b, y in zip(BLOCKS, ys)
        ]
    )


def test_contrasts_are_named_and_estimated_by_hand() -> None:
    a = {cell: np.array(ys) for cell, ys in CELLS.items()}
    on_f, off_f, on_o, off_o = a[("frozen", "on")], a[("frozen", "off")], a[("a:lr1e-4", "on")], a[("a:lr1e-4", "off")]
    found = contrasts(_frame(CELLS))
    # the frozen arm first, though another name sorts before it
    assert list(found) == ["simple:frozen", "simple:a:lr1e-4", "interaction", "component", "base"]
    assert all(c.name == key for key, c in found.items())
    for key, per_block in {
        "simple:frozen": on_f - off_f,
        "simple:a:lr1e-4": on_o - off_o,
        "interaction": (on_f - off_f) - (on_o - off_o),
        "component": ((on_f - off_f) + (on_o - off_o)) / 2,
        "base": ((on_f + off_f) - (on_o + off_o)) / 2,
    }.items():
        assert found[key].estimate == pytest.approx(per_block.mean(), rel=1e-12), key
        assert found[key].se == pytest.approx(per_block.std(ddof=1) / np.sqrt(3), rel=1e-9), key
        assert found[key].n == 3
    renamed = {(arm.replace("frozen", "locked"), c): ys for (arm, c), ys in CELLS.items()}
    other = contrasts(_frame(renamed), frozen="locked")
    assert other["interaction"].estimate == pytest.approx(found["interaction"].estimate)


def test_the_analysis_names_what_it_read_and_keeps_each_arms_name() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete design warns of nothing
        result = blocked_anova(_frame(CELLS), "WA", "pixel_ap_routed")
    assert (result.component, result.response, result.n, result.valid, result.note) == (
        "WA",
        "pixel_ap_routed",
        3,
        True,
        "",
    )
    assert result.cells == {"frozen/off": 3, "frozen/on": 3, "a:lr1e-4/off": 3, "a:lr1e-4/on": 3}
    assert sorted(result.simple) == ["a:lr1e-4", "frozen"]  # an arm's name keeps its colon
    renamed = {(arm.replace("frozen", "locked"), c): ys for (arm, c), ys in CELLS.items()}
    locked = blocked_anova(_frame(renamed), "WA", "y", frozen="locked")
    assert locked.valid and locked.interaction is not None
    assert locked.interaction.estimate == pytest.approx(result.interaction.estimate)  # type: ignore[union-attr]


def _notes(cells: dict[tuple[str, str], list[float]]) -> tuple[AnovaResult, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = blocked_anova(_frame(cells), "DIA", "y")
    return result, [str(w.message) for w in caught]


def test_each_note_word_for_word() -> None:
    missing = "missing value(s): blocks without all four cells left out"
    lost = {**CELLS, ("a:lr1e-4", "off"): [np.nan] * 3}
    result, messages = _notes(lost)
    assert result.note == f"a cell of the 2x2 design is empty; 3 {missing}"
    assert messages == [f"ANOVA DIA / y: {result.note}"]
    assert (result.n, result.valid, result.verdict(0.001)) == (0, False, "untested")
    one = {cell: [ys[0], np.nan, np.nan] for cell, ys in CELLS.items()}
    assert _notes(one)[0].note == f"fewer than 2 blocks (seeds) with all four cells; 8 {missing}"
    flat = {cell: [ys[0]] * 3 for cell, ys in CELLS.items()}
    assert _notes(flat)[0].note == "zero variance of the interaction contrast over the blocks"
    gapped, _ = _notes({**CELLS, ("frozen", "on"): [0.90, np.nan, 0.91]})  # block s1 lost one run
    assert gapped.valid and gapped.note == f"1 {missing}" and gapped.n == 2
    three = {**CELLS, ("other", "on"): [0.5, 0.6, 0.55], ("other", "off"): [0.5, 0.5, 0.52]}
    assert _notes(three)[0].note == "a cell of the 2x2 design is empty"  # not a 2 x 2 design: no interaction


def _result(estimate: float = 0.02, valid: bool = True) -> AnovaResult:
    return AnovaResult("X", "y", 4, valid=valid, interaction=Contrast("interaction", estimate, 0.005, 4))


def test_the_verdicts_inequalities_are_strict() -> None:
    assert _result().verdict(0.049) == "Integral" and _result(-0.02).verdict(0.049) == "Opposite"
    assert _result().verdict(0.05) == "no interaction detected"  # p equal to alpha is not below it
    assert _result().verdict(0.2, 0.05, 0.05) == "no interaction detected"
    assert _result().verdict(0.2, 0.05, 0.049) == "Generic"
    assert _result().verdict(float("nan")) == "untested"  # a valid design whose adjusted p is missing
    assert _result(valid=False).verdict(0.001) == "untested"
    assert AnovaResult("X", "y", 4, valid=True).verdict(0.001) == "untested"  # no interaction contrast


def test_holm_keeps_nan_where_it_was() -> None:
    out = holm([np.nan])
    assert len(out) == 1 and math.isnan(out[0])
    assert holm([]) == []
    assert holm([0.02, np.nan, 0.01]) == pytest.approx([0.02, np.nan, 0.02], nan_ok=True)


def _levels(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"level": k, "y": y} for k, ys in values.items() for y in ys])


def test_one_way_anova_refuses_by_name_and_tests_from_two_levels_of_two() -> None:
    assert one_way_anova(_levels({"a": [0.1, 0.2, 0.3]}), "level", "y")[1] == "fewer than 2 levels"
    assert one_way_anova(_levels({"a": [0.1], "b": [0.2], "c": [0.4]}), "level", "y")[1] == "no replicates"
    p, note = one_way_anova(_levels({"a": [0.1, 0.2], "b": [0.5, 0.7]}), "level", "y")
    assert note == "" and p == pytest.approx(sps.f_oneway([0.1, 0.2], [0.5, 0.7]).pvalue, rel=1e-9)
    p, note = one_way_anova(_levels({"a": [0.1, 0.2], "b": [0.5]}), "level", "y")  # one level with a replicate
    assert note == "" and p == pytest.approx(sps.f_oneway([0.1, 0.2], [0.5]).pvalue, rel=1e-9)


@pytest.mark.parametrize(
    "centre, d, zero",
    [
        (100.0, 1e-4, True),  # residual SS 1e-8 below 1e-12 x sum(y^2) = 1e-7: no residual variance
        (100.0, 1e-3, False),  # 1e-6 above it
        (0.01, 1.2247e-6, False),  # 1.5e-12 above 1e-12 x max(1, sum(y^2) = 0.001)
    ],
)
def test_zero_residual_variance_is_relative_to_the_values_size(centre: float, d: float, zero: bool) -> None:
    data = _levels({"a": [centre, centre + d], "b": [2 * centre, 2 * centre + d]})
    p, note = one_way_anova(data, "level", "y")
    if zero:
        assert math.isnan(p) and note == "zero residual variance"
    else:
        assert note == "" and 0 <= p < 1e-3
