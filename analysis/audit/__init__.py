"""The claims audit: every checkable claim of the paper, its rule, and a verdict from the runs.

``registry.yaml`` is the claims registry (read it for the claims, rules and their
changes); :mod:`.claims` reads the evidence each check names, :mod:`.evidence` states
each part with its region, :mod:`.verdicts` sets the audit-wide level (Benjamini-Hochberg
over every tested part) and decides each part by its interval; :mod:`.paper_check`
recomputes the paper's own numbers against each other. :func:`audit` returns the
tables (``claims``, ``claims_parts``, ``paper_self_check``) and the outcomes (for the figure).
"""

from __future__ import annotations

import csv
import hashlib
import io
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis.audit.claims import EVALUATORS, Context, order_note
from analysis.audit.context import describe
from analysis.audit.paper_check import checks as self_checks
from analysis.audit.power import part_power
from analysis.audit.verdicts import VERDICTS, AuditLevel, Outcome, audit_level, decide
from analysis.collect import Summaries
from analysis.render import Cell, TableSpec
from analysis.table_frames import run_level
from moleflow.errors import ConfigError

KEYS = {"id", "family", "claim", "where", "paper", "needs", "check", "rule", "changed", "definition"}
REQUIRED = KEYS - {"changed", "definition"}
KINDS = {"mvtec", "visa", "any", "none"}
RUN_COLUMNS = ["study", "variant", "dataset", "run_id", "seed", "order", "status", "strategy"]


def registry() -> dict[str, Any]:
    """The validated registry (49 claims: C1-C45, C18g, C18d, O1 and O2, each with the keys of :data:`KEYS`, a known test and known needs),
    with ``sha256``: the first 12 hex digits of the file's digest, printed with every claims table."""
    text = resources.files("analysis.audit").joinpath("registry.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data["sha256"] = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    validate(data["claims"])
    return data


def validate(claims: list[dict[str, Any]]) -> None:
    """Each claim has the keys of :data:`KEYS` (those of :data:`REQUIRED` at least), a known test, known needs and
    an id of its own; else a :class:`ConfigError` naming the claim and what is wrong."""
    seen = set()
    for entry in claims:
        where = f"analysis/audit/registry.yaml: claim {entry.get('id', '?')}"
        if set(entry) - KEYS:
            raise ConfigError(f"{where}: unknown key(s) {sorted(set(entry) - KEYS)}")
        if REQUIRED - set(entry):
            raise ConfigError(f"{where}: missing key(s) {sorted(REQUIRED - set(entry))}")
        if entry["check"].get("test") not in EVALUATORS:
            raise ConfigError(f"{where}: unknown test {entry['check'].get('test')!r}")
        if entry["needs"].get("kind") not in KINDS or set(entry["needs"]) - {"kind", "real", "backbone"}:
            raise ConfigError(f"{where}: needs must be kind in {sorted(KINDS)}, optional real and backbone")
        if entry["id"] in seen:
            raise ConfigError(f"{where}: listed twice")
        seen.add(entry["id"])


def registrations() -> list[dict[str, str]]:
    """``REGISTRATIONS.csv``: each registry version's digest, the date it was committed and what it judges.

    A line is appended, in the commit that changes ``registry.yaml``, before any run it judges exists
    (``tests/test_audit.py`` fails when the current registry's digest has no line): the digest dates the rules.
    """
    text = resources.files("analysis.audit").joinpath("REGISTRATIONS.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def deviations() -> list[dict[str, str]]:
    """``DEVIATIONS.csv``: each change made to the registry after the runs it judges had been seen, per claim
    (``*`` for the whole audit), with the verdicts before and after on the same runs, both registries applied."""
    text = resources.files("analysis.audit").joinpath("DEVIATIONS.csv").read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def deviation_note(claim_id: str, logged: list[dict[str, str]]) -> str:
    """`` [deviation, version 7: what; on the default at ...: inconclusive under version 6, contradicted under 7]``."""
    return "".join(
        f" [deviation, version {d['version']}: {d['what']}; on {d['on']}: {d['before']} under version "
        f"{int(d['version']) - 1}, {d['after']} under version {d['version']}]"
        for d in logged
        if d["claim"] == claim_id
    )


def registration_note(reg: dict[str, Any]) -> str:
    """``; registered 2026-12-06 (REGISTRATIONS.csv)``, or a warning when this digest was never registered."""
    found = [r for r in registrations() if r["sha256"] == reg["sha256"]]
    if not found:
        return "; NOT REGISTERED: this digest is in no line of analysis/audit/REGISTRATIONS.csv"
    return f"; registered {found[0]['date']} (analysis/audit/REGISTRATIONS.csv)"


def _backbones(runs: pd.DataFrame, summaries: Summaries, dataset: str) -> set[str]:
    ids = runs[runs["dataset"] == dataset]["run_id"].unique()
    found = set()
    for run_id in ids:
        config = (summaries.get(run_id) or {}).get("config")
        if config:
            feats = config["features"]
            found.add(f"{feats['backbone']}{'' if feats['pretrained'] else ' (random init)'}")
    return found


def _datasets(
    entry: dict[str, Any], plan: dict[str, Any], runs: pd.DataFrame, summaries: Summaries, paper_backbone: str
) -> tuple[list[str], str]:
    """Planned datasets that meet a claim's needs, or none and why."""
    needs = entry["needs"]
    if needs["kind"] == "none":
        return [""], ""
    datasets = plan.get("datasets", {})
    kind = [d for d, info in datasets.items() if needs["kind"] in ("any", info.get("kind"))]
    if not kind:
        return [], f"needs a {'VisA' if needs['kind'] == 'visa' else 'MVTec AD'} dataset; the plan has none"
    real = [d for d in kind if not datasets[d].get("generate")] if needs.get("real") else kind
    if not real:
        return [], (
            f"needs the real {'VisA' if needs['kind'] == 'visa' else 'MVTec AD'}: the plan's "
            f"{', '.join(kind)} is generated data, whose numbers are not the benchmark's"
        )
    if needs.get("backbone") == "paper":
        ok = [
            d
            for d in real
            if _backbones(runs, summaries, d)
            and all(b.split(".")[0] == paper_backbone for b in _backbones(runs, summaries, d))
        ]
        if not ok:
            used = ", ".join(sorted(set().union(*(_backbones(runs, summaries, d) for d in real))) or {"unknown"})
            return [], f"needs the paper's backbone ({paper_backbone}, ImageNet weights); the runs use {used}"
        real = ok
    return real, ""


def evaluate(
    frame: pd.DataFrame, plan: dict[str, Any], summaries: Summaries
) -> tuple[list[Outcome], dict[str, Any], AuditLevel]:
    """Every claim's outcome (verdict decided at the audit's level), in registry order, the registry and the level."""
    reg = registry()
    runs = run_level(frame) if not frame.empty else pd.DataFrame(columns=RUN_COLUMNS)
    outcomes: list[Outcome] = []
    for entry in reg["claims"]:
        datasets, why = _datasets(entry, plan, runs, summaries, reg["paper_backbone"])
        if not datasets:
            outcomes.append(Outcome(entry["id"], entry["family"], "", not_tested=why))
            continue
        for dataset in datasets:
            ctx = Context(runs, summaries, dataset)
            ctx.reads.clear()
            outcome = Outcome(
                entry["id"],
                entry["family"],
                dataset,
                parts=EVALUATORS[entry["check"]["test"]](ctx, entry["check"]),
                scope=_scope(ctx, entry["check"]),
            )
            claim_runs = ctx.describe_reads() or _study_runs(ctx, entry["check"])
            for part in outcome.parts:  # a part that does not say which runs entered read the claim's runs
                part.runs = part.runs or claim_runs
            if entry["check"]["test"] == "order_robust":
                outcome.note = order_note(ctx, entry["check"])
            if entry["check"]["test"] == "strategy_order":
                outcome.note = _memory_note(ctx.rows(entry["check"]["study"]))
            outcomes.append(outcome)
    level = audit_level(outcomes, reg["alpha"])
    for outcome in outcomes:
        decide(outcome, level)
    return outcomes, reg, level


#: checks that read every finished run of the dataset (of the check's ``strategy`` when it names one), not one study
EVERY_RUN = {"fingerprints_unchanged", "invertible"}


def _study_of(check: dict[str, Any]) -> str | None:
    """The study whose runs a check reads (None for checks over every run or of the paper's own numbers)."""
    return check.get("study") or (
        "sensitivity" if "sweep" in check or check.get("test") == "sensitivity_classes" else None
    )


def _claim_rows(ctx: Context, check: dict[str, Any]) -> tuple[str, pd.DataFrame] | None:
    """What a check's runs are called and their rows: its study's, every run's (:data:`EVERY_RUN`), or None for a
    check of the paper's own numbers."""
    study = _study_of(check)
    if study is not None:
        return study, ctx.rows(study)
    if check.get("test") not in EVERY_RUN:
        return None
    rows = ctx.runs[ctx.runs["dataset"] == ctx.dataset]
    if "strategy" in check:
        return f"every {check['strategy']} run", rows[rows["strategy"] == check["strategy"]]
    return "every run", rows


def _study_runs(ctx: Context, check: dict[str, Any]) -> str:
    """``study: seeds ...`` of every run the check reads, or ``the paper's numbers``."""
    found = _claim_rows(ctx, check)
    return f"{found[0]}: {describe(found[1])}" if found else "the paper's numbers"


def _scope(ctx: Context, check: dict[str, Any]) -> str:
    """``study: categories`` of the runs a check reads (the categories its finished runs trained on)."""
    found = _claim_rows(ctx, check)
    if found is None:
        return "the paper's numbers"
    categories: set[str] = set()
    for run_id in found[1]["run_id"]:
        categories.update((ctx.summaries.get(run_id) or {}).get("tasks") or [])
    return f"{found[0]}: {', '.join(sorted(categories)) if categories else 'no finished run'}"


def _power(outcome: Outcome, level: AuditLevel) -> str:
    """What each undecided t-tested part of the claim would need at the audit's level (:mod:`.power`)."""
    texts = [part_power(p, s, level.a) for p, s in zip(outcome.parts, outcome.statuses)]
    return "; ".join(t for t in texts if t) or "--"


def _memory_note(rows: pd.DataFrame) -> str:
    sub = rows[rows["status"] == "ok"]
    if sub.empty or "memory_pct_of_base" not in sub:
        return ""
    per = sub.groupby("variant", sort=False)["memory_pct_of_base"].first()
    return "memory per task (% of the base): " + ", ".join(f"{v} {p:.1f}%" for v, p in per.items() if np.isfinite(p))


def claims_table(outcomes: list[Outcome], reg: dict[str, Any], level: AuditLevel) -> TableSpec:
    """One row per claim (and dataset): claim, paper, harness, rule, verdict, why."""
    entries = {e["id"]: e for e in reg["claims"]}
    several = len({o.dataset for o in outcomes if o.dataset}) > 1
    rows, cells = [], {}
    logged = deviations()
    for o in outcomes:
        row = f"{o.claim_id} ({o.dataset})" if several and o.dataset else o.claim_id
        entry = entries[o.claim_id]
        harness = "; ".join(f"{p.label}: {p.shown()}" for p in o.parts if p.shown()) or "--"
        if o.note:
            harness += f" ({o.note})"
        rule = entry["rule"] + (f" [changed from the proposal: {entry['changed']}]" if entry.get("changed") else "")
        rule += f" [runs: {entry['definition']}]" if entry.get("definition") else ""
        rule += deviation_note(o.claim_id, logged)
        for column, text in (
            ("Family", o.family),
            ("Claim", entry["claim"]),
            ("Paper", f"{entry['paper']} ({entry['where']})"),
            ("Harness", harness),
            ("Scope", o.scope or "--"),
            ("Rule", rule),
            ("Verdict", o.verdict),
            ("Why", o.why),
            ("Power", _power(o, level) if not o.not_tested else "--"),
        ):
            cells[(row, column)] = Cell(text=str(text))
        rows.append(row)
    counts = {v: sum(o.verdict == v for o in outcomes) for v in VERDICTS}
    whole = [d for d in logged if d["claim"] == "*" and d["version"] == str(reg["version"])]
    caption = (
        f"The claims audit (registry version {reg['version']}, registry.yaml sha256 {reg['sha256']}"
        f"{registration_note(reg)}; its changes: analysis/audit/CHANGELOG.md): each claim of the paper, the "
        "harness's evidence (estimate [the deciding interval (its coverage)], n = replicates: seeds, or seeds x task "
        "orders; Δ = variant - reference, paired by seed and task order over every run of the two configurations, "
        "whatever study planned it: claims_parts.csv names them), the runs it covers (Scope), the pre-registered "
        "rule and the verdict; a rule changed after its runs had been seen says so in the Rule column ([deviation]: "
        "what changed, with the verdicts before and after on the same runs; analysis/audit/DEVIATIONS.csv"
        + (
            f"; the whole audit: {whole[0]['before']} under version {int(whole[0]['version']) - 1}, {whole[0]['after']} "
            f"under version {whole[0]['version']}, on {whole[0]['on']}"
            if whole
            else ""
        )
        + f"). Error control over the whole audit: {level.text()}. A part is supported when its "
        "interval lies inside the claim's region, contradicted when it lies entirely outside (the complement, where "
        "an effect no larger than the smallest effect of interest lies too), inconclusive otherwise; exact parts "
        "(bitwise equality, counts) are decided without a test. A claim is supported when every part is, "
        "contradicted when any part is. Power: for each undecided t-tested part, the replicates it would need at "
        "the audit's level, or that its estimate lies outside its region. Verdicts: "
        + ", ".join(f"{v} {n}" for v, n in counts.items())
        + "."
    )
    return TableSpec(
        "claims",
        "audit",
        "What the runs say about each claim of the paper",
        caption,
        rows,
        ["Family", "Claim", "Paper", "Harness", "Scope", "Rule", "Verdict", "Why", "Power"],
        cells=cells,
        # the page keeps the claim, the paper's number, the harness's and the verdict; the rest is in the CSV
        latex_columns=["Claim", "Paper", "Harness", "Verdict"],
        latex_format="lp{2.6cm}p{1.7cm}p{4.0cm}p{1.9cm}",
    )


#: Columns of ``claims_parts.csv``: one row per part of every claim.
PART_COLUMNS = [
    "claim",
    "dataset",
    "part",
    "estimate",
    "low",
    "high",
    "coverage",
    "region_low",
    "region_high",
    "n",
    "runs",
    "p_support",
    "p_contradict",
    "p_part",
    "audit_level",
    "decision",
    "reason",
]


def parts_frame(outcomes: list[Outcome], level: AuditLevel) -> pd.DataFrame:
    """Every part of every claim: its estimate, the deciding interval and its coverage, the region, n, the runs
    that entered, its p-values, the audit's one-sided level and the decision (``claims_parts.csv``)."""
    rows = []
    for o in outcomes:
        for part, status in zip(o.parts, o.statuses):
            rows.append(
                {
                    "claim": o.claim_id,
                    "dataset": o.dataset,
                    "part": part.label,
                    "estimate": part.estimate,
                    "low": part.low,
                    "high": part.high,
                    "coverage": part.level,
                    "region_low": part.region[0],
                    "region_high": part.region[1],
                    "n": part.n,
                    "runs": part.runs,
                    "p_support": part.p_support,
                    "p_contradict": part.p_contradict,
                    "p_part": part.p_part,
                    "audit_level": level.a,
                    "decision": status,
                    "reason": part.reason,
                }
            )
    return pd.DataFrame(rows, columns=PART_COLUMNS)


def self_check_table() -> TableSpec:
    """The paper against itself (:mod:`.paper_check`)."""
    found = self_checks()
    rows, cells = [], {}
    for i, check in enumerate(found, start=1):
        row = f"P{i}"
        rows.append(row)
        for column, text in (
            ("Check", check.what),
            ("Tables", check.tables),
            ("Printed", check.printed),
            ("Computed", check.computed),
            ("Agrees", "yes" if check.consistent else "no"),
        ):
            cells[(row, column)] = Cell(text=text)
    bad = sum(not c.consistent for c in found)
    caption = (
        f"The paper against itself: {len(found)} quantities recomputed from the paper's own printed values "
        f"(analysis/paper_tables.csv, analysis/literature.csv); {bad} disagree with what is printed beyond rounding."
    )
    return TableSpec(
        "paper_self_check",
        "audit",
        "The paper's numbers checked against each other",
        caption,
        rows,
        ["Check", "Tables", "Printed", "Computed", "Agrees"],
        cells=cells,
        latex_format="lp{3.2cm}p{1.3cm}p{1.7cm}p{3.0cm}p{1.0cm}",  # fits a one-column page
    )


def audit(
    frame: pd.DataFrame, plan: dict[str, Any], summaries: Summaries
) -> tuple[list[TableSpec], list[Outcome], pd.DataFrame]:
    """The audit's tables, outcomes and parts (``claims_parts.csv``)."""
    outcomes, reg, level = evaluate(frame, plan, summaries)
    return [claims_table(outcomes, reg, level), self_check_table()], outcomes, parts_frame(outcomes, level)
