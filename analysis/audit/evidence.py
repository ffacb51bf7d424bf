"""The statistical parts of the claims audit: each a statement about one estimand, decided by one interval.

A part holds an estimate, the region the claim puts the estimand in (``region = (low, high)``,
either end infinite) and what decides it:

* a t pivot (``se`` and ``df``: a mean of per-replicate values, a Welch difference against the
  paper, a least-squares slope, a seed-blocked contrast). The audit fixes one one-sided level
  ``a`` for every part (:mod:`.verdicts`); the part's two-sided ``1 - 2a`` interval decides:
  **supported** when it lies inside the region, **contradicted** when it lies entirely outside
  it, **inconclusive** otherwise. The regions of support and contradiction are disjoint, so no
  part is both, and a guard (a non-inferiority or equivalence statement) is supported only by
  an interval that shows it, never by a difference that was merely not significant;
* or only the one-sided p-values of a test without an interval (a one-way ANOVA): supported
  when ``p_support <= a``, contradicted when ``p_contradict <= a``;
* or an exact ``status`` (bitwise equality, a count), decided without error.

``p_support`` and ``p_contradict`` are the one-sided p-values that the estimand lies inside the
region and entirely on one side outside it; they are what the interval decides at level ``a``
(``p_support <= a`` exactly when the interval lies inside). Regions follow the registry's
conventions (``analysis/audit/README.md``): a directional statement against 0 with the smallest
effect of interest ``m`` has the region ``(m, inf)`` (or ``(-inf, -m)``): an effect the size of
the margin or smaller lies in the complement, with the opposite effects; a statement against a
stated threshold ``t`` has ``(t, inf)`` (or ``(-inf, t)``) and no margin; an equivalence
within ``±m`` has ``(-m, m)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats

from analysis.blocked import Contrast

NAN = float("nan")
INF = math.inf
SUPPORTED, CONTRADICTED, INCONCLUSIVE = "supported", "contradicted", "inconclusive"


@dataclass
class Part:
    """One tested statement of a claim."""

    label: str
    estimate: float = NAN
    n: int = 0
    se: float = NAN  # standard error of the estimate (a t pivot with ``df``); NaN for a part without an interval
    df: float = NAN
    region: tuple[float, float] = (-INF, INF)  # where the claim puts the estimand
    p_support: float = NAN  # one-sided p that the estimand lies inside the region
    p_contradict: float = NAN  # one-sided p that it lies entirely outside (on either side)
    status: str | None = None  # "supported"/"contradicted" for exact statements (no p-value)
    reason: str = ""  # why the data cannot decide (n, missing runs), empty otherwise
    paper: float = NAN  # the paper's value of the same quantity (the effect figure, the power target)
    origin: float = 0.0  # the figure draws estimate - origin (1 for a ratio, so that it sits beside the differences)
    sd: float = NAN  # SD of the per-replicate values behind the estimate (the power analysis reads it)
    margin: float = NAN  # the smallest effect of interest the region was drawn with (NaN: none)
    kind: str = ""  # "equivalence" for a bounded region
    units: str = ""  # what n counts when it is not replicates (e.g. "levels x 1 seed")
    runs: str = ""  # which runs entered: seeds and the studies that planned them
    low: float = NAN  # the deciding interval, set by the audit at its level (:meth:`settle`)
    high: float = NAN
    level: float = NAN  # two-sided coverage of ``low, high``

    @property
    def has_pivot(self) -> bool:
        return np.isfinite(self.se) and self.se > 0 and np.isfinite(self.df) and self.df > 0

    def interval(self, a: float) -> tuple[float, float]:
        """The two-sided ``1 - 2a`` t interval of the estimate (NaN without a pivot)."""
        if not self.has_pivot:
            return NAN, NAN
        half = float(stats.t.ppf(1 - a, self.df)) * self.se
        return self.estimate - half, self.estimate + half

    @property
    def p_part(self) -> float:
        """The part's p-value in the audit's multiplicity procedure: twice the smaller of its one-sided p-values
        (at most 1; NaN for an exact or undecidable part)."""
        finite = [p for p in (self.p_support, self.p_contradict) if np.isfinite(p)]
        if self.status or not finite:
            return NAN
        return min(1.0, 2.0 * min(finite))

    def decide(self, a: float) -> str:
        """``supported``, ``contradicted`` or ``inconclusive`` at the one-sided level ``a``."""
        if self.status:
            return self.status
        if not np.isfinite(self.p_part):
            return INCONCLUSIVE
        if np.isfinite(self.p_support) and self.p_support <= a:
            return SUPPORTED
        if np.isfinite(self.p_contradict) and self.p_contradict <= a:
            return CONTRADICTED
        return INCONCLUSIVE

    def settle(self, a: float) -> None:
        """Set the deciding interval (and its coverage) at the audit's level ``a``."""
        if self.has_pivot:
            self.low, self.high = self.interval(a)
            self.level = 1 - 2 * a

    def region_text(self) -> str:
        lo, hi = self.region
        if np.isinf(lo) and np.isinf(hi):
            return "any"
        if np.isinf(lo):
            return f"< {hi:+.4g}"
        if np.isinf(hi):
            return f"> {lo:+.4g}"
        return f"in [{lo:+.4g}, {hi:+.4g}]"

    def shown(self) -> str:
        """The estimate with its deciding interval (and its coverage) and n, or an exact part's detail."""
        if self.status and self.reason:
            return self.reason
        if not np.isfinite(self.estimate):
            return ""
        n = f"n={self.n}" + (f" {self.units}" if self.units else "")
        if np.isfinite(self.low):
            return f"{self.estimate:+.4f} [{self.low:+.4f}, {self.high:+.4f}] ({self.level:.1%}), {n}"
        return f"{self.estimate:+.4f}, {n}"


NO_VARIANCE = "the replicates do not vary: a t interval is undefined"


def region_of(direction: str, threshold: float = 0.0, margin: float = 0.0) -> tuple[float, float]:
    """The region of ``estimand > threshold`` (``'>'``) or ``< threshold`` (``'<'``): against a stated threshold
    its value is the boundary; against 0 the boundary is moved out by the smallest effect of interest ``margin``."""
    boundary = threshold if threshold != 0 else (margin if direction == ">" else -margin)
    return (boundary, INF) if direction == ">" else (-INF, boundary)


def pivot_pvalues(estimate: float, se: float, df: float, region: tuple[float, float]) -> tuple[float, float]:
    """``(p_support, p_contradict)`` of a t pivot for ``region``: the one-sided p that the estimand exceeds the
    lower end and lies below the upper end (the larger: both must hold), and the one-sided p that it lies
    below the lower end or above the upper end (the smaller: either contradicts)."""
    lo, hi = region
    t = lambda bound: (estimate - bound) / se  # noqa: E731
    above_lo = float(stats.t.sf(t(lo), df)) if np.isfinite(lo) else 0.0  # rejects "estimand <= lo"
    below_hi = float(stats.t.cdf(t(hi), df)) if np.isfinite(hi) else 0.0  # rejects "estimand >= hi"
    below_lo = float(stats.t.cdf(t(lo), df)) if np.isfinite(lo) else 1.0  # rejects "estimand >= lo"
    above_hi = float(stats.t.sf(t(hi), df)) if np.isfinite(hi) else 1.0  # rejects "estimand <= hi"
    return max(above_lo, below_hi), min(below_lo, above_hi)


def pivot_part(
    label: str,
    estimate: float,
    se: float,
    df: float,
    region: tuple[float, float],
    n: int,
    paper: float = NAN,
    margin: float = NAN,
) -> Part:
    """A part decided by the t pivot ``(estimate - value) / se ~ t(df)``."""
    part = Part(label, estimate=estimate, n=n, se=se, df=df, region=region, paper=paper, margin=margin)
    part.kind = "equivalence" if np.isfinite(region[0]) and np.isfinite(region[1]) else ""
    if not (np.isfinite(se) and se > 0 and df > 0):
        part.reason = NO_VARIANCE
        return part
    part.p_support, part.p_contradict = pivot_pvalues(estimate, se, df, region)
    return part


def t_part(
    label: str, values: np.ndarray, region: tuple[float, float], paper: float = NAN, margin: float = NAN
) -> Part:
    """The mean of per-replicate ``values`` (paired differences, or values) in ``region``: a one-sample t."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return Part(label, region=region, paper=paper, margin=margin, reason="no finished run")
    mean = float(values.mean())
    if n < 2:
        return Part(label, estimate=mean, n=1, region=region, paper=paper, margin=margin, reason="n = 1: no interval")
    sd = float(values.std(ddof=1))
    part = pivot_part(label, mean, sd / math.sqrt(n), n - 1, region, n, paper, margin)
    part.sd = sd
    return part


def sign_test(
    label: str, values: np.ndarray, direction: str, threshold: float = 0.0, margin: float = 0.0, paper: float = NAN
) -> Part:
    """``mean(values) > threshold`` (``'>'``) or ``< threshold`` (``'<'``) on per-replicate values:
    :func:`t_part` on :func:`region_of`."""
    return t_part(label, values, region_of(direction, threshold, margin), paper, margin if threshold == 0 else NAN)


def equivalence_test(label: str, values: np.ndarray, low: float, high: float, paper: float = NAN) -> Part:
    """``low < mean(values) < high`` on per-replicate values (two one-sided tests: the interval inside)."""
    return t_part(label, values, (low, high), paper, (high - low) / 2)


def exact(label: str, holds: bool, estimate: float = NAN, n: int = 0, detail: str = "", paper: float = NAN) -> Part:
    """A statement decided without a test (bitwise equality, a count)."""
    return Part(label, estimate=estimate, n=n, status=SUPPORTED if holds else CONTRADICTED, reason=detail, paper=paper)


def welch_vs_paper(label: str, values: np.ndarray, mean: float, sd: float, n: int, margin: float) -> Part:
    """The harness's runs against the paper's reported mean, SD and n: the difference of the means within
    ``±margin``, with Welch's standard error and degrees of freedom (both samples' SDs and sizes)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        part = Part(label, n=len(values), paper=mean, margin=margin, region=(-margin, margin), kind="equivalence")
        part.reason = "fewer than 2 runs" if len(values) else "no finished run"
        if len(values):
            part.estimate = float(values.mean()) - mean
        return part
    ours, s_ours = float(values.mean()), float(np.std(values, ddof=1))
    v1, v2 = s_ours**2 / len(values), sd**2 / n
    se = float(np.sqrt(v1 + v2))
    df = (v1 + v2) ** 2 / (v1**2 / (len(values) - 1) + (v2**2 / (n - 1) if n > 1 else 0.0)) if se > 0 else NAN
    part = pivot_part(label, ours - mean, se, df, (-margin, margin), len(values), paper=mean, margin=margin)
    part.sd = s_ours
    return part


def slope_test(label: str, frame: pd.DataFrame, direction: str = ">") -> Part:
    """Least-squares slope of ``y`` on ``level`` with replicates as blocks (statsmodels OLS), its region ``> 0``
    (``direction '>'``) or ``< 0``. ``frame`` has columns ``level`` (numeric), ``block`` and ``y``."""
    data = frame[["level", "block", "y"]].dropna()
    region = (0.0, INF) if direction == ">" else (-INF, 0.0)
    if data["level"].nunique() < 3 or len(data) <= data["block"].nunique() + 1:
        return Part(
            label,
            n=len(data),
            region=region,
            reason=f"{data['level'].nunique()} value(s), {len(data)} run(s): too few for a slope",
        )
    formula = "y ~ level + C(block)" if data["block"].nunique() > 1 else "y ~ level"
    fit = smf.ols(formula, data=data).fit()
    part = pivot_part(
        label, float(fit.params["level"]), float(fit.bse["level"]), float(fit.df_resid), region, len(data)
    )
    part.units = f"runs ({data['level'].nunique()} values x {data['block'].nunique()} seed block(s))"
    return part


def contrast_part(label: str, contrast: Contrast | None, kind: str, margin: float, paper: float = NAN) -> Part:
    """A seed-blocked contrast (:mod:`analysis.blocked`) as a part: ``Integral``: the contrast beyond the margin,
    region ``(margin, inf)``; ``Generic``: within it, ``(-margin, margin)``."""
    region = (margin, INF) if kind == "Integral" else (-margin, margin)
    if contrast is None or contrast.n == 0:
        return Part(
            label, paper=paper, margin=margin, region=region, reason="a cell of the 2 x 2 design has no finished run"
        )
    if contrast.n < 2:
        return Part(
            label,
            estimate=contrast.estimate,
            n=contrast.n,
            region=region,
            margin=margin,
            reason="fewer than 2 seeds with all four cells",
        )
    part = pivot_part(label, contrast.estimate, contrast.se, contrast.df, region, contrast.n, paper, margin)
    part.sd = contrast.se * math.sqrt(contrast.n)
    return part


def p_part(label: str, p_support: float, p_contradict: float = NAN, n: int = 0, estimate: float = NAN) -> Part:
    """A part decided by a test without an interval (its one-sided p-values only)."""
    part = Part(label, estimate=estimate, n=n, p_support=p_support, p_contradict=p_contradict)
    if not (np.isfinite(p_support) or np.isfinite(p_contradict)):
        part.reason = "the test is undefined on these runs"
    return part
