"""Numbers the documentation quotes from the default's results agree with the generated page they come from
(``docs/generated/default.md``, which the analysis writes): every estimate with its interval quoted after a claim
in docs/claims-audit.md, and the verdict counts."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ROOT / "docs" / "generated" / "default.md"
INTERVAL = re.compile(r"([-+]?\d+\.\d+) \[([-+]?\d+\.\d+),\s+([-+]?\d+\.\d+)\]")
CLAIM = re.compile(r"\b(C\d+[a-z]?|O\d)\b")


def _claim_rows(text: str) -> dict[str, str]:
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| (C\d+[a-z]?|O\d) \|.*$", text, re.M)}


def _decimals(number: str) -> int:
    return len(number.split(".")[1])


def quoted_intervals(doc: str) -> list[tuple[str, tuple[str, str, str]]]:
    """``(claim, (estimate, low, high))`` of every interval in ``doc``, with the claim named last before it."""
    out = []
    for found in INTERVAL.finditer(doc):
        claims = CLAIM.findall(doc[max(0, found.start() - 400) : found.start()])
        if claims:
            estimate, low, high = found.groups()
            out.append((claims[-1], (estimate, low, high)))
    return out


def agrees(quoted: tuple[str, str, str], row: str) -> bool:
    """Whether one of the row's intervals rounds to the quoted estimate and bounds at the quoted precision."""
    for values in INTERVAL.findall(row):
        if all(
            abs(float(v) - float(q)) <= 0.5 * 10 ** -_decimals(q) + 1e-12 for v, q in zip(values, quoted, strict=True)
        ):
            return True
    return False


def test_the_intervals_quoted_in_the_claims_page_are_the_generated_ones() -> None:
    rows = _claim_rows(GENERATED.read_text())
    quoted = quoted_intervals((ROOT / "docs" / "claims-audit.md").read_text())
    assert len(quoted) >= 10  # the page quotes the decided claims' intervals
    wrong = [(claim, numbers) for claim, numbers in quoted if claim not in rows or not agrees(numbers, rows[claim])]
    assert wrong == []


def test_the_verdict_counts_quoted_are_the_generated_ones() -> None:
    counts = re.search(
        r"49 claims: (\d+) supported, (\d+) contradicted, (\d+) inconclusive, (\d+) not tested", GENERATED.read_text()
    )
    assert counts is not None
    page = " ".join((ROOT / "docs" / "claims-audit.md").read_text().split())
    said = re.search(
        r"Verdicts of the embedded default \([^)]*\): (\d+) supported, (\d+) contradicted, (\d+) inconclusive, (\d+) not tested",
        page,
    )
    assert said is not None and said.groups() == counts.groups()


def test_the_checker_finds_a_wrong_number() -> None:
    row = "| C16 | ... | supported | Δ I-AUROC < 0: -0.1011 [-0.1434, -0.0588] (97.2%), n=4 |"
    assert agrees(("-0.101", "-0.143", "-0.059"), row)
    assert not agrees(("-0.101", "-0.143", "-0.050"), row)  # a stale bound
    assert quoted_intervals("forgets (C16: I-AUROC -0.101 [-0.143, -0.059])") == [
        ("C16", ("-0.101", "-0.143", "-0.059"))
    ]
