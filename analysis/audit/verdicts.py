"""From tested parts to verdicts: one verdict per claim, with the error controlled per family.

A claim is supported only when every part is (an intersection-union test): its support
p-value is the largest of its parts' one-sided ``p_support``, which controls the error of
calling that claim supported at alpha without any adjustment inside the claim; across
the claims of one family (and dataset), those claim p-values are Holm-adjusted, so the
probability that any claim of a family is wrongly called supported is at most alpha. A
claim is contradicted when any part is (a union): every part's ``p_contradict`` is
Holm-adjusted over all the parts of its family, so the probability that any claim of a
family is wrongly called contradicted is at most alpha. Exact parts (bitwise equality, a
count, an interval against a tolerance) carry their status; a guard part (a statement only
a violation decides) counts as supported only when it was tested and not contradicted. A
claim neither supported nor contradicted is ``inconclusive`` (with the undecided parts'
reasons), and ``not tested here`` when no planned data meets its needs.
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
    adjusted: list[tuple[float, float]] = field(default_factory=list)  # per part: (the claim's Holm-adjusted
    # intersection-union support p, the part's Holm-adjusted contradiction p)
    support_p: float = float("nan")  # the claim's support p before Holm: the largest p_support of its tested parts
    support_step: float = float("nan")  # the alpha of the claim's Holm step (alpha / (m - rank + 1)), for the power
    scope: str = ""  # the studies and categories the verdict covers


def claim_support_p(outcome: Outcome) -> float:
    """The claim's intersection-union p: the largest ``p_support`` of its p-valued parts (NaN if one has none).

    Exact parts and guard parts carry no support p-value (their status, or a non-contradiction, decides them).
    """
    tested = [p.p_support for p in outcome.parts if not p.status and not p.guard]
    if not tested or not all(np.isfinite(v) for v in tested):
        return float("nan")
    return float(max(tested))


def holm_steps(pvalues: list[float], alpha: float) -> list[float]:
    """The alpha each p-value is compared with at its Holm step (``alpha / (m - rank + 1)``; NaN for NaN)."""
    finite = [(v, i) for i, v in enumerate(pvalues) if np.isfinite(v)]
    out = [float("nan")] * len(pvalues)
    for rank, (_, i) in enumerate(sorted(finite)):
        out[i] = alpha / (len(finite) - rank)
    return out


def adjust(outcomes: list[Outcome], alpha: float = 0.05) -> None:
    """Per family (and dataset), in place: Holm over the claims' intersection-union support p-values, and
    Holm over every part's ``p_contradict``."""
    groups: dict[tuple[str, str], list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault((outcome.family, outcome.dataset), []).append(outcome)
    for members in groups.values():
        claim_p = [claim_support_p(o) for o in members]
        support = holm(claim_p)
        steps = holm_steps(claim_p, alpha)
        indexed = [(o, i) for o in members for i in range(len(o.parts))]
        contradict = holm([o.parts[i].p_contradict for o, i in indexed])
        for outcome, raw, adj, step in zip(members, claim_p, support, steps):
            outcome.support_p, outcome.support_step = raw, step
            outcome.adjusted = [(adj, np.nan)] * len(outcome.parts)
        for (outcome, i), c in zip(indexed, contradict):
            outcome.adjusted[i] = (outcome.adjusted[i][0], c)


def part_status(part: Part, adjusted: tuple[float, float], alpha: float) -> str:
    """``supported``, ``contradicted`` or ``inconclusive`` for one part."""
    if part.status:
        return part.status
    support, contradict = adjusted
    if np.isfinite(contradict) and contradict < alpha:
        return CONTRADICTED
    if part.guard:  # supported only by a test that did not contradict it
        return SUPPORTED if np.isfinite(part.p_contradict) else INCONCLUSIVE
    if np.isfinite(support) and support < alpha:
        return SUPPORTED
    return INCONCLUSIVE


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
        outcome.why = "; ".join(
            _explain(p, a, CONTRADICTED)
            for p, a, s in zip(outcome.parts, outcome.adjusted, statuses)
            if s == CONTRADICTED
        )
    elif all(s == SUPPORTED for s in statuses):
        outcome.verdict, outcome.why = (
            SUPPORTED,
            "; ".join(_explain(p, a, SUPPORTED) for p, a in zip(outcome.parts, outcome.adjusted)),
        )
    else:
        outcome.verdict = INCONCLUSIVE
        outcome.why = "; ".join(
            f"{p.label}: {p.reason or _undecided(p, a)}"
            for p, a, s in zip(outcome.parts, outcome.adjusted, statuses)
            if s == INCONCLUSIVE
        )


def _explain(part: Part, adjusted: tuple[float, float], status: str) -> str:
    if part.status:
        return f"{part.label}{': ' + part.reason if part.reason else ''}"
    p = adjusted[0] if status == SUPPORTED else adjusted[1]
    side = "for" if status == SUPPORTED else "against"
    return f"{part.label}: {part.shown()} (Holm p {side} {_p(p)})"


def _undecided(part: Part, adjusted: tuple[float, float]) -> str:
    if part.guard:
        return "never tested: a guard supports only when a test did not contradict it"
    return (
        f"p {_p(part.p_support)} for (the claim's Holm p {_p(adjusted[0])}), Holm p {_p(adjusted[1])} against: "
        "the interval does not decide"
    )


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "--"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
