"""From tested parts to verdicts, with the error controlled over the whole audit.

Every part with a p-value enters one multiplicity procedure over the whole audit (every claim,
every family, every dataset): the Benjamini-Hochberg step-up at ``q`` (the registry's alpha) on
the parts' p-values (:attr:`Part.p_part`, twice the smaller of its one-sided p-values), which
selects ``R`` of the ``m`` tested parts. Every part is then decided by its two-sided interval at
the one common level ``1 - R q / m`` (``a = R q / (2 m)`` on each side; ``R = 1`` when nothing is
selected), the false-coverage-rate adjusted intervals of Benjamini and Yekutieli (2005): a part
is supported when that interval lies inside its region, contradicted when it lies entirely
outside, inconclusive otherwise; exactly the parts BH selects are decided. The expected share of
wrong decisions among all the audit's decisions (a part called supported whose true value lies
outside its region, or contradicted whose true value lies inside) is then at most ``q``, under
independence or positive dependence of the parts' estimates (parts that share runs are
dependent; the procedure is the one designed for this, not a proof for every dependence). Exact
parts (bitwise equality, counts) are decided without error and outside the procedure.

A claim is supported when every part is, contradicted when any part is, inconclusive otherwise
(with the undecided parts' reasons), and ``not tested here`` when no planned data meets its needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.audit.evidence import CONTRADICTED, INCONCLUSIVE, SUPPORTED, Part

NOT_TESTED = "not tested here"
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED)


@dataclass
class Outcome:
    """The evaluation of one claim on one dataset (or none)."""

    claim_id: str
    family: str
    dataset: str
    parts: list[Part] = field(default_factory=list)
    not_tested: str = ""  # why the claim is not tested here
    note: str = ""  # numbers shown beside (not decided): memory per task, exploratory tests
    verdict: str = ""
    why: str = ""
    statuses: list[str] = field(default_factory=list)  # per part: its decision
    scope: str = ""  # the studies and categories the verdict covers


@dataclass(frozen=True)
class AuditLevel:
    """The audit's multiplicity: ``m`` tested parts, ``selected`` of them by Benjamini-Hochberg at ``q``, and the
    one-sided level ``a`` of every part's interval (two-sided coverage ``1 - 2a``)."""

    q: float
    m: int
    selected: int

    @property
    def a(self) -> float:
        return max(self.selected, 1) * self.q / (2 * max(self.m, 1))

    @property
    def coverage(self) -> float:
        return 1 - 2 * self.a

    def text(self) -> str:
        return (
            f"Benjamini-Hochberg at q = {self.q:g} over the {self.m} tested parts of the audit selects {self.selected}; "
            f"every part is decided by its {self.coverage:.2%} interval (one-sided level {self.a:.2g}): the expected "
            f"share of wrong decisions among the audit's part decisions is at most {self.q:g}"
        )


def bh_selected(pvalues: list[float], q: float) -> int:
    """How many p-values the Benjamini-Hochberg step-up selects at ``q`` (NaN values are not tested)."""
    finite = sorted(v for v in pvalues if np.isfinite(v))
    m = len(finite)
    return max((k for k in range(1, m + 1) if finite[k - 1] <= k * q / m), default=0)


def audit_level(outcomes: list[Outcome], q: float) -> AuditLevel:
    """The audit's level: BH over every tested part's :attr:`Part.p_part`."""
    pvalues = [p.p_part for o in outcomes for p in o.parts]
    return AuditLevel(q, int(sum(np.isfinite(v) for v in pvalues)), bh_selected(pvalues, q))


def decide(outcome: Outcome, level: AuditLevel) -> None:
    """Decide every part at the audit's level (setting its deciding interval), then the claim."""
    if outcome.not_tested:
        outcome.verdict, outcome.why = NOT_TESTED, outcome.not_tested
        return
    if not outcome.parts:
        outcome.verdict, outcome.why = INCONCLUSIVE, "no evidence planned"
        return
    for part in outcome.parts:
        part.settle(level.a)
    outcome.statuses = [part.decide(level.a) for part in outcome.parts]
    pairs = list(zip(outcome.parts, outcome.statuses))
    if CONTRADICTED in outcome.statuses:
        outcome.verdict = CONTRADICTED
        outcome.why = "; ".join(_explain(p, s) for p, s in pairs if s == CONTRADICTED)
    elif all(s == SUPPORTED for s in outcome.statuses):
        outcome.verdict, outcome.why = SUPPORTED, "; ".join(_explain(p, s) for p, s in pairs)
    else:
        outcome.verdict = INCONCLUSIVE
        outcome.why = "; ".join(f"{p.label}: {_undecided(p)}" for p, s in pairs if s == INCONCLUSIVE)


def _explain(part: Part, status: str) -> str:
    if part.status:  # an exact part: its detail is the Harness column's; say how it was decided
        verb = "meets" if status == SUPPORTED else "breaks"
        return f"{part.label}: {verb} its rule exactly (a count or an exact comparison, no sampling error)"
    where = "inside" if status == SUPPORTED else "outside"
    if np.isfinite(part.low):
        return f"{part.label}: interval [{part.low:+.4f}, {part.high:+.4f}] {where} the region {part.region_text()}"
    p = part.p_support if status == SUPPORTED else part.p_contradict
    return f"{part.label}: p {'for' if status == SUPPORTED else 'against'} {_p(p)}"


def _undecided(part: Part) -> str:
    if part.reason and not np.isfinite(part.p_part):
        return part.reason
    if np.isfinite(part.low):
        text = f"the interval [{part.low:+.4f}, {part.high:+.4f}] crosses the region's boundary ({part.region_text()})"
    else:
        text = f"p {_p(part.p_support)} for, {_p(part.p_contradict)} against: neither reaches the audit's level"
    return text + (f"; {part.reason}" if part.reason else "")


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "--"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
