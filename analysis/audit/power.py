"""What an undecided part would need: replicates to decide it at the audit's final level.

For a part decided by a t interval from per-replicate values: the smallest ``n`` for which its
interval, at the audit's one-sided level ``a``, would fall inside the region with 80 % power
(90 % on each side of an equivalence region, about 80 % overall), when the true value is the
paper's (where the claim states one inside the region) or lies the smallest effect of interest
beyond the region's boundary (where it does not), and the replicates' SD is the 80 % upper
confidence bound of the observed one (chi-square). A part whose estimate lies outside its
region says so instead: more replicates of the same runs would not support it. A projection
from the runs at hand, not a promise.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from analysis.audit.context import MARGIN
from analysis.audit.evidence import Part

POWER = 0.8
SD_BOUND = 0.8  # the one-sided confidence of the SD's upper bound
MAX_REPLICATES = 1000


def sd_upper(sd: float, n: int, confidence: float = SD_BOUND) -> float:
    """The one-sided ``confidence`` upper bound of a standard deviation ``sd`` observed on ``n`` values."""
    return sd * math.sqrt((n - 1) / float(stats.chi2.ppf(1 - confidence, n - 1)))


def replicates_for(distance: float, sd: float, a: float, power: float = POWER) -> int | None:
    """Smallest ``n >= 2`` with ``(t_{1-a,n-1} + t_{power,n-1}) sd / sqrt(n) <= distance``; ``None`` beyond
    :data:`MAX_REPLICATES` or for a distance that is not positive."""
    if not (np.isfinite(distance) and distance > 0 and np.isfinite(sd) and sd > 0):
        return None
    for n in range(2, MAX_REPLICATES + 1):
        if (stats.t.ppf(1 - a, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n) <= distance:
            return n
    return None


def _target(part: Part) -> tuple[float, str]:
    """How far inside the region the true value is assumed to lie, and which assumption that is."""
    lo, hi = part.region
    margin = part.margin if np.isfinite(part.margin) and part.margin > 0 else MARGIN
    if np.isfinite(lo) and np.isfinite(hi):
        return (hi - lo) / 2, "the region's centre"
    boundary = lo if np.isfinite(lo) else hi
    inside = 1.0 if np.isfinite(lo) else -1.0
    if np.isfinite(part.paper) and inside * (part.paper - boundary) > 0:
        return inside * (part.paper - boundary), f"the paper's {part.paper:+.4g}"
    return margin, f"{margin:g} beyond the boundary"


def part_power(part: Part, status: str, a: float) -> str:
    """What an undecided part would need at the audit's level ``a`` (empty for a decided or untestable part)."""
    if status != "inconclusive" or part.status or part.n < 2 or not np.isfinite(part.sd) or part.sd <= 0:
        return ""
    lo, hi = part.region
    if not (lo < part.estimate < hi):
        return f"{part.label}: the estimate {part.estimate:+.4f} lies outside the region {part.region_text()}: more replicates would not support it"
    distance, what = _target(part)
    equivalence = np.isfinite(lo) and np.isfinite(hi)
    power = 1 - (1 - POWER) / 2 if equivalence else POWER
    sd = sd_upper(part.sd, part.n)
    needed = replicates_for(distance, sd, a, power)
    count = f"n={needed}" if needed is not None else f"more than {MAX_REPLICATES}"
    return (
        f"{part.label}: {count} for 80 % power with the true value at {what} "
        f"(SD <= {sd:.4f}, the 80 % bound of the observed {part.sd:.4f} on n={part.n}; level {a:.2g})"
    )


__all__ = ["MAX_REPLICATES", "part_power", "replicates_for", "sd_upper"]
