"""Power of the audit's tests: what each part could detect with its replicates, and how many it would need.

A part tested by a one-sample (paired) t on ``n`` replicates with standard deviation ``sd``
detects, with 80 % power at a one-sided level ``alpha``, an effect of ``d * sd`` beyond its
threshold, where ``d`` is the standardised minimum detectable effect of statsmodels'
``TTestPower``. ``alpha`` is the level the claim is tested at: its Holm step on the
support side (``alpha / (m - rank + 1)`` among the family's claims), or the family's
strictest step (``alpha / m``) where the claim has no support p-value yet. The replicates
needed are those for 80 % power against the paper's own effect (its value beyond the
part's threshold), or against the smallest effect of interest (the registry's margin)
where the paper gives none; an equivalence part needs 90 % power on each of its two
one-sided tests, about 80 % overall, when the true difference is zero. Everything is
computed with the part's observed SD, so it is a projection from the runs at hand, not a
promise.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.power import TTestPower

from analysis.audit.evidence import Part

POWER = 0.8
PAPER_SEEDS = 5  # config/paper.yaml's seeds: the projection for the paper's grid
MAX_REPLICATES = 1000


@dataclass(frozen=True)
class PartPower:
    """Minimum detectable effects and replicates needed for one part (NaN / None where undefined)."""

    alpha: float
    mde: float  # at the part's n
    mde_paper_seeds: float  # at PAPER_SEEDS replicates
    target: float  # the effect the replicates are counted for
    target_is_paper: bool
    needed: int | None  # replicates for POWER against ``target`` (None: more than MAX_REPLICATES)

    def text(self, n: int) -> str:
        """``MDE 0.021 at n=2 (alpha 0.0042); 80 % power for the paper's 0.076 needs n=9; n=5: MDE 0.006``."""
        target = "the paper's" if self.target_is_paper else "the margin"
        needed = f"n={self.needed}" if self.needed is not None else f"more than {MAX_REPLICATES}"
        return (
            f"MDE {self.mde:.4f} at n={n} (alpha {self.alpha:.4g}); 80 % power for {target} {self.target:.4f} needs "
            f"{needed}; at {PAPER_SEEDS} seeds MDE {self.mde_paper_seeds:.4f}"
        )


def _d(n: int, alpha: float, power: float) -> float:
    """Standardised effect a one-sided one-sample t detects with ``power`` at ``n`` replicates."""
    if n < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="larger"))


def replicates_for(effect_sd: float, alpha: float, power: float) -> int | None:
    """Smallest ``n >= 2`` with ``power`` to detect ``effect_sd`` (in SDs) one-sided at ``alpha``."""
    if not np.isfinite(effect_sd) or effect_sd <= 0:
        return None
    test = TTestPower()
    for n in range(2, MAX_REPLICATES + 1):
        if test.power(effect_size=effect_sd, nobs=n, alpha=alpha, alternative="larger") >= power:
            return n
    return None


def part_power(part: Part, alpha: float, default_margin: float) -> PartPower | None:
    """The power of ``part`` (a t-tested part with an SD), tested at ``alpha``; ``None`` when it has no SD to use."""
    if part.status or not np.isfinite(part.sd) or part.sd <= 0 or part.n < 2 or not np.isfinite(alpha):
        return None
    equivalence = part.kind == "equivalence"
    margin = part.margin if np.isfinite(part.margin) and part.margin > 0 else default_margin
    power = 1 - (1 - POWER) / 2 if equivalence else POWER
    paper = part.paper - part.threshold if np.isfinite(part.paper) else float("nan")
    target_is_paper = not equivalence and np.isfinite(paper) and paper != 0
    target = abs(paper) if target_is_paper else margin
    return PartPower(
        alpha=alpha,
        mde=_d(part.n, alpha, power) * part.sd,
        mde_paper_seeds=_d(PAPER_SEEDS, alpha, power) * part.sd,
        target=target,
        target_is_paper=bool(target_is_paper),
        needed=replicates_for(target / part.sd, alpha, power),
    )


def strictest(alpha: float, family_size: int) -> float:
    """The first Holm step of a family of ``family_size`` claims."""
    return alpha / max(family_size, 1)


__all__ = ["PAPER_SEEDS", "PartPower", "part_power", "replicates_for", "strictest"]
