"""The statistical tests of the claims audit, each returning a :class:`Part`.

A part is one tested statement ("Δ pixel AP < 0") with its estimate, 95% interval, n
and two one-sided p-values: ``p_support`` (small when the data support the statement)
and ``p_contradict`` (small when they contradict it). The verdict module adjusts both
with Holm's method over a family of claims. Exact statements (bitwise equality, a
count) carry ``status`` directly and no p-value. Every test comes from scipy or
statsmodels; a test the data cannot support (n = 1, no variance to estimate) leaves
the p-values NaN and says why in ``reason``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.weightstats import ttost_paired

from analysis.blocked import Contrast
from analysis.stats import t_interval

NAN = float("nan")


@dataclass
class Part:
    """One tested statement of a claim."""

    label: str
    estimate: float = NAN
    low: float = NAN
    high: float = NAN
    n: int = 0
    p_support: float = NAN
    p_contradict: float = NAN
    status: str | None = None  # "supported"/"contradicted" for exact statements (no p-value)
    reason: str = ""  # why the data cannot decide (n, missing runs), empty otherwise
    paper: float = NAN  # the paper's value of the same quantity (the effect figure)
    guard: bool = False  # a statement that only a significant violation decides (supported unless contradicted)
    origin: float = 0.0  # the figure draws estimate - origin (1 for a ratio, so that it sits beside the differences)
    sd: float = NAN  # SD of the per-replicate values the test used (the power analysis reads it)
    threshold: float = 0.0  # the value the tested mean is compared with
    margin: float = NAN  # the smallest effect of interest (an equivalence part: its half-width)
    kind: str = ""  # "equivalence" for a two-one-sided-tests part
    units: str = ""  # what n counts when it is not replicates (e.g. "levels x 1 seed")

    def shown(self) -> str:
        """What the harness found, for the table: the estimate with its interval and n, or an exact part's detail."""
        if self.status and self.reason:
            return self.reason
        if not np.isfinite(self.estimate):
            return ""
        n = f"n={self.n}" + (f" {self.units}" if self.units else "")
        if np.isfinite(self.low):
            return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}], {n}"
        return f"{self.estimate:+.4f}, {n}"


NO_VARIANCE = "the replicates do not vary: a t-test is undefined"


def _one_sided(values: np.ndarray, popmean: float, alternative: str) -> float:
    """One-sided one-sample t-test p (scipy); NaN when the values do not vary (identical replicates are
    not certainty: with a handful of test images, two seeds can give the same AUROC)."""
    if np.ptp(values) == 0:
        return NAN
    return float(stats.ttest_1samp(values, popmean, alternative=alternative).pvalue)


def _described(label: str, values: np.ndarray, paper: float) -> tuple[Part, np.ndarray]:
    """The finite ``values``' mean, 95% interval and n; ``reason`` set when no t-test can follow
    (no value, a single one, or values that do not vary)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    part = Part(label, n=len(values), paper=paper)
    if len(values) == 0:
        part.reason = "no finished run"
        return part, values
    part.estimate = float(values.mean())
    part.low, part.high = t_interval(values)
    if len(values) >= 2:
        part.sd = float(values.std(ddof=1))
    if len(values) < 2:
        part.reason = "n = 1: no interval"
    elif np.ptp(values) == 0:
        part.reason = NO_VARIANCE
    return part, values


def sign_test(
    label: str, values: np.ndarray, direction: str, threshold: float = 0.0, margin: float = 0.0, paper: float = NAN
) -> Part:
    """``mean(values) < threshold`` (``direction '<'``) or ``> threshold`` (``'>'``).

    ``p_support``: one-sided t-test of that statement. ``p_contradict``: one-sided test that
    the mean lies on the other side of ``threshold`` moved by ``margin`` against the claim
    (for ``'<'``: mean > threshold - margin: any effect in the claimed direction is smaller
    than ``margin``). ``values`` are per-replicate differences (or values).
    """
    part, values = _described(label, values, paper)
    part.threshold, part.margin = threshold, margin
    if part.reason:
        return part
    if direction == "<":
        part.p_support = _one_sided(values, threshold, "less")
        part.p_contradict = _one_sided(values, threshold - margin, "greater")
    else:
        part.p_support = _one_sided(values, threshold, "greater")
        part.p_contradict = _one_sided(values, threshold + margin, "less")
    return part


def equivalence_test(label: str, values: np.ndarray, low: float, high: float, paper: float = NAN) -> Part:
    """``low < mean(values) < high``: two one-sided t-tests (statsmodels ``ttost_paired``).

    ``p_support`` is the TOST p-value; ``p_contradict`` the smaller one-sided p that the mean
    lies below ``low`` or above ``high``, doubled (Bonferroni over the two sides, at most 1).
    """
    part, values = _described(label, values, paper)
    part.kind, part.threshold, part.margin = "equivalence", (low + high) / 2, (high - low) / 2
    if part.reason:
        return part
    part.p_support = float(ttost_paired(values, np.zeros_like(values), low, high)[0])
    below = float(stats.ttest_1samp(values, low, alternative="less").pvalue)
    above = float(stats.ttest_1samp(values, high, alternative="greater").pvalue)
    part.p_contradict = min(1.0, 2.0 * min(below, above))
    return part


def exact(label: str, holds: bool, estimate: float = NAN, n: int = 0, detail: str = "", paper: float = NAN) -> Part:
    """A statement decided without a test (bitwise equality, a count)."""
    return Part(
        label, estimate=estimate, n=n, status="supported" if holds else "contradicted", reason=detail, paper=paper
    )


def welch_vs_paper(label: str, values: np.ndarray, mean: float, sd: float, n: int, margin: float) -> Part:
    """The harness's runs against the paper's reported mean, SD and n: an equivalence test within ``±margin``.

    Welch's standard error and degrees of freedom (from both samples' SDs and sizes); ``p_support``:
    the two one-sided tests that the difference of the means lies within ``±margin``;
    ``p_contradict``: the smaller one-sided p that it lies beyond ``-margin`` or ``+margin``,
    doubled. Both go through Holm's correction with the family's other parts: a failure to
    reject a difference is never support.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    part = Part(label, n=len(values), paper=mean, kind="equivalence", margin=margin)
    if len(values) < 2:
        part.reason = "fewer than 2 runs" if len(values) else "no finished run"
        if len(values):
            part.estimate = float(values.mean())
        return part
    ours, s_ours = float(values.mean()), float(np.std(values, ddof=1))
    part.estimate, part.sd = ours - mean, s_ours
    v1, v2 = s_ours**2 / len(values), sd**2 / n
    se = float(np.sqrt(v1 + v2))
    if se == 0:
        part.reason = NO_VARIANCE
        return part
    df = (v1 + v2) ** 2 / (v1**2 / (len(values) - 1) + (v2**2 / (n - 1) if n > 1 else 0.0))
    q = float(stats.t.ppf(0.975, df))
    part.low, part.high = part.estimate - q * se, part.estimate + q * se
    below = float(stats.t.sf((part.estimate + margin) / se, df))  # p that the difference is below -margin: reject it
    above = float(stats.t.cdf((part.estimate - margin) / se, df))
    part.p_support = max(below, above)
    outside_low = float(stats.t.cdf((part.estimate + margin) / se, df))
    outside_high = float(stats.t.sf((part.estimate - margin) / se, df))
    part.p_contradict = min(1.0, 2.0 * min(outside_low, outside_high))
    return part


def slope_test(label: str, frame: pd.DataFrame, direction: str = ">") -> Part:
    """Least-squares slope of ``y`` on ``level`` with replicates as blocks (statsmodels OLS).

    ``frame`` has columns ``level`` (numeric), ``block`` and ``y``. ``p_support`` is the
    one-sided p of the slope in ``direction``; ``p_contradict`` that of the other direction.
    """
    data = frame[["level", "block", "y"]].dropna()
    part = Part(label, n=len(data))
    if data["level"].nunique() < 3 or len(data) <= data["block"].nunique() + 1:
        part.reason = f"{data['level'].nunique()} value(s), {len(data)} run(s): too few for a slope"
        return part
    part.units = f"runs ({data['level'].nunique()} values x {data['block'].nunique()} seed block(s))"
    formula = "y ~ level + C(block)" if data["block"].nunique() > 1 else "y ~ level"
    fit = smf.ols(formula, data=data).fit()
    slope, se, df = float(fit.params["level"]), float(fit.bse["level"]), float(fit.df_resid)
    part.estimate = slope
    part.low, part.high = [float(v) for v in fit.conf_int().loc["level"]]
    if df <= 0 or not np.isfinite(se) or se == 0:
        part.reason = "no residual variance"
        return part
    t = slope / se
    greater, less = float(stats.t.sf(t, df)), float(stats.t.cdf(t, df))
    part.p_support, part.p_contradict = (greater, less) if direction == ">" else (less, greater)
    return part


def kendall_agreement(label: str, paper_order: list[float], ours: list[float]) -> Part:
    """Kendall's tau between the paper's values and ours (scipy, one-sided p for tau > 0 and tau < 0)."""
    x, y = np.asarray(paper_order, dtype=float), np.asarray(ours, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    part = Part(label, n=int(keep.sum()))
    if keep.sum() < 3:
        part.reason = f"{int(keep.sum())} ranked item(s): too few"
        return part
    part.estimate = float(stats.kendalltau(x[keep], y[keep]).statistic)
    part.p_support = float(stats.kendalltau(x[keep], y[keep], alternative="greater").pvalue)
    part.p_contradict = float(stats.kendalltau(x[keep], y[keep], alternative="less").pvalue)
    return part


def contrast_part(label: str, contrast: Contrast | None, kind: str, margin: float, paper: float = NAN) -> Part:
    """A blocked interaction contrast (:mod:`analysis.blocked`) as a part.

    Integral: contrast > 0 (contradicted: contrast < margin, one-sided). Generic: |contrast| <
    margin (TOST; contradicted: two-sided significance of the contrast).
    """
    part = Part(label, paper=paper, margin=margin, kind="equivalence" if kind != "Integral" else "")
    if contrast is None or contrast.n == 0:
        part.reason = "a cell of the 2 x 2 design has no finished run"
        return part
    part.estimate, part.n, part.sd = contrast.estimate, contrast.n, contrast.se * np.sqrt(contrast.n)
    if not contrast.testable:
        part.reason = "fewer than 2 seeds with all four cells" if contrast.n < 2 else NO_VARIANCE
        return part
    part.low, part.high = contrast.interval()
    if kind == "Integral":
        part.p_support, part.p_contradict = contrast.p_greater(0.0), contrast.p_less(margin)
    else:
        part.p_support, part.p_contradict = contrast.p_equivalent(margin), contrast.p_two_sided()
    return part
