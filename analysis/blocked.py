"""Seed-blocked contrasts of a 2 x 2 design (base arm x component on/off): one estimate per contrast.

Every cell of an interaction study runs with the same seeds (and task orders), so each
replicate is a block. A component's effect within one base arm is the per-block difference
``on - off``; the interaction is the per-block difference of those two differences; the
main effects average over the other factor. Each contrast is then a one-sample t over the
blocks that have every cell it needs, with its own variance: nothing is pooled across the
arms (whose spreads can differ tenfold) and no degrees of freedom are borrowed from another
contrast. This is the repeated-measures ANOVA with the blocks as subjects, in which each
effect is tested against its own effect-by-block error (statsmodels' ``AnovaRM`` gives the
same F = t^2 on (1, n - 1) degrees of freedom; ``tests/test_analysis_stats.py`` checks
it). Table 8, the simple effects and every claim that reads such a design use these
numbers, so the same runs cannot get two estimates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

FROZEN = "frozen"  # the base arm the paper's criterion names (variants COMPONENT|frozen|on ...)


@dataclass(frozen=True)
class Contrast:
    """A per-block contrast: its mean, standard error and the number of blocks ``n`` (df = n - 1)."""

    name: str
    estimate: float
    se: float
    n: int

    @property
    def df(self) -> int:
        return self.n - 1

    @property
    def testable(self) -> bool:
        """At least two blocks and a non-zero spread: a t-test is defined."""
        return self.n >= 2 and np.isfinite(self.se) and self.se > 0

    def interval(self, level: float = 0.95) -> tuple[float, float]:
        """Two-sided t interval of the contrast (NaN when it is not testable)."""
        if not self.testable:
            return float("nan"), float("nan")
        half = float(stats.t.ppf(0.5 + level / 2, self.df)) * self.se
        return self.estimate - half, self.estimate + half

    def p_greater(self, threshold: float = 0.0) -> float:
        """One-sided p that the contrast exceeds ``threshold``."""
        return float(stats.t.sf((self.estimate - threshold) / self.se, self.df)) if self.testable else float("nan")

    def p_less(self, threshold: float = 0.0) -> float:
        """One-sided p that the contrast lies below ``threshold``."""
        return float(stats.t.cdf((self.estimate - threshold) / self.se, self.df)) if self.testable else float("nan")

    def p_two_sided(self) -> float:
        return float(2 * stats.t.sf(abs(self.estimate) / self.se, self.df)) if self.testable else float("nan")

    def p_equivalent(self, margin: float) -> float:
        """TOST p that the contrast lies within ``±margin`` (the larger of the two one-sided p)."""
        return max(self.p_greater(-margin), self.p_less(margin)) if self.testable else float("nan")

    @property
    def f(self) -> float:
        """The repeated-measures ANOVA's F on (1, n - 1) df: t squared."""
        return float((self.estimate / self.se) ** 2) if self.testable else float("nan")

    @property
    def eta2_partial(self) -> float:
        """Partial eta squared, SS_effect / (SS_effect + SS_effect-by-block) = F / (F + df)."""
        return self.f / (self.f + self.df) if self.testable else float("nan")

    def eta2_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Interval of partial eta squared by inverting the noncentral F (Steiger 2004): ``lambda / (lambda + n)``."""
        if not self.testable:
            return float("nan"), float("nan")
        f, df2 = self.f, self.df

        def bound(quantile: float) -> float:
            if stats.ncf.cdf(f, 1, df2, 0.0) < quantile:
                return 0.0
            upper = 10.0
            while stats.ncf.cdf(f, 1, df2, upper) > quantile:
                upper *= 2
            return float(optimize.brentq(lambda lam: stats.ncf.cdf(f, 1, df2, lam) - quantile, 0.0, upper))

        low, high = bound(0.5 + level / 2), bound(0.5 - level / 2)
        total = 1 + df2 + 1  # df1 + df2 + 1
        return low / (low + total), high / (high + total)


def _contrast(name: str, per_block: pd.Series) -> Contrast:
    values = per_block.dropna().to_numpy(dtype=float)
    n = len(values)
    if n == 0:
        return Contrast(name, float("nan"), float("nan"), 0)
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return Contrast(name, float(values.mean()), se, n)


def cells(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (columns ``block``, ``base``, ``component``, ``y``) as one row per block, one column per cell."""
    data = frame[["block", "base", "component", "y"]].dropna()
    return data.pivot_table(index="block", columns=["base", "component"], values="y", aggfunc="mean")


def contrasts(frame: pd.DataFrame, frozen: str = FROZEN) -> dict[str, Contrast]:
    """The design's contrasts from ``frame`` (columns ``block``, ``base``, ``component`` on/off, ``y``).

    Keys: ``simple:<arm>`` (on - off within that base arm, over the blocks that have both
    cells), and, when both arms exist, ``interaction`` ((on - off) with ``frozen`` minus
    (on - off) with the other arm), ``component`` (on - off averaged over the arms) and
    ``base`` (``frozen`` minus the other arm, averaged over on and off), each over the blocks
    that have all four cells.
    """
    table = cells(frame)
    out: dict[str, Contrast] = {}
    arms = sorted({b for b, _ in table.columns}, key=lambda b: (b != frozen, b))
    for arm in arms:
        if (arm, "on") in table and (arm, "off") in table:
            out[f"simple:{arm}"] = _contrast(f"simple:{arm}", table[(arm, "on")] - table[(arm, "off")])
    others = [a for a in arms if a != frozen]
    needed = [(frozen, "on"), (frozen, "off")] + [(o, c) for o in others[:1] for c in ("on", "off")]
    if len(others) == 1 and all(c in table for c in needed):
        full = table[needed].dropna()
        on_f, off_f, on_o, off_o = (full[cell] for cell in needed)
        out["interaction"] = _contrast("interaction", (on_f - off_f) - (on_o - off_o))
        out["component"] = _contrast("component", ((on_f - off_f) + (on_o - off_o)) / 2)
        out["base"] = _contrast("base", ((on_f + off_f) - (on_o + off_o)) / 2)
    return out


def design_frame(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Run-level rows of one component (variants ``COMPONENT|BASE|LEVEL``, finished runs) as the design's frame."""
    parts = rows["variant"].str.split("|", expand=True)
    blocks = rows["seed"].astype(str) + "/" + rows["order"].astype(str)
    values = rows[column].astype(float).where(rows["status"] == "ok")
    return pd.DataFrame(
        {
            "block": blocks.to_numpy(),
            "base": parts[1].to_numpy(),
            "component": parts[2].to_numpy(),
            "y": values.to_numpy(),
        }
    )
