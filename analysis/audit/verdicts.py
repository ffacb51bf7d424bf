"""From tested parts to verdicts: Holm's correction within a family, then one verdict per claim.

A part is ``supported`` when its Holm-adjusted ``p_support`` is below alpha,
``contradicted`` when its adjusted ``p_contradict`` is (support is checked first), and
undecided otherwise; exact parts carry their status. A claim is ``contradicted`` when
any part is, ``supported`` when every part is, ``inconclusive`` otherwise (with the
undecided parts' reasons), and ``not tested here`` when no planned data meets its needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.audit.evidence import Part
from analysis.stats import holm

SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_TESTED = "supported", "contradicted", "inconclusive", "not tested here"
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
    adjusted: list[tuple[float, float]] = field(default_factory=list)  # per part: Holm-adjusted (support, contradict)


def adjust(outcomes: list[Outcome]) -> None:
    """Holm-adjust ``p_support`` and ``p_contradict`` of every part within each family (and dataset), in place."""
    groups: dict[tuple[str, str], list[tuple[Outcome, int]]] = {}
    for outcome in outcomes:
        outcome.adjusted = [(np.nan, np.nan)] * len(outcome.parts)
        for i, _ in enumerate(outcome.parts):
            groups.setdefault((outcome.family, outcome.dataset), []).append((outcome, i))
    for members in groups.values():
        support = holm([o.parts[i].p_support for o, i in members])
        contradict = holm([o.parts[i].p_contradict for o, i in members])
        for (outcome, i), s, c in zip(members, support, contradict):
            outcome.adjusted[i] = (s, c)


def part_status(part: Part, adjusted: tuple[float, float], alpha: float) -> str:
    """``supported``, ``contradicted`` or ``inconclusive`` for one part."""
    if part.status:
        return part.status
    support, contradict = adjusted
    if np.isfinite(support) and support < alpha:
        return SUPPORTED
    if np.isfinite(contradict) and contradict < alpha:
        return CONTRADICTED
    return SUPPORTED if part.guard else INCONCLUSIVE


def decide(outcome: Outcome, alpha: float) -> None:
    """Set ``outcome.verdict`` and ``outcome.why`` from its parts (after :func:`adjust`)."""
    if outcome.not_tested:
        outcome.verdict, outcome.why = NOT_TESTED, outcome.not_tested
        return
    if not outcome.parts:
        outcome.verdict, outcome.why = INCONCLUSIVE, "no evidence planned"
        return
    statuses = [part_status(p, a, alpha) for p, a in zip(outcome.parts, outcome.adjusted)]
    if CONTRADICTED in statuses:
        outcome.verdict = CONTRADICTED
        outcome.why = "; ".join(_explain(p, a, CONTRADICTED) for p, a, s in zip(outcome.parts, outcome.adjusted, statuses)
                                if s == CONTRADICTED)
    elif all(s == SUPPORTED for s in statuses):
        outcome.verdict, outcome.why = SUPPORTED, "; ".join(_explain(p, a, SUPPORTED) for p, a in zip(outcome.parts, outcome.adjusted))
    else:
        outcome.verdict = INCONCLUSIVE
        outcome.why = "; ".join(f"{p.label}: {p.reason or _undecided(p, a)}"
                                for p, a, s in zip(outcome.parts, outcome.adjusted, statuses) if s == INCONCLUSIVE)


def _explain(part: Part, adjusted: tuple[float, float], status: str) -> str:
    if part.status:
        return f"{part.label}{': ' + part.reason if part.reason else ''}"
    p = adjusted[0] if status == SUPPORTED else adjusted[1]
    side = "for" if status == SUPPORTED else "against"
    return f"{part.label}: {part.shown()} (Holm p {side} {_p(p)})"


def _undecided(part: Part, adjusted: tuple[float, float]) -> str:
    return f"Holm p {_p(adjusted[0])} for, {_p(adjusted[1])} against: the interval does not decide"


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "--"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
