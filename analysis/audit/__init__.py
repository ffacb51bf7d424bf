"""The claims audit: every checkable claim of the paper, its rule, and a verdict from the runs.

``registry.yaml`` is the claims registry (read it for the claims, rules and their
changes); :mod:`.claims` reads the evidence each check names, :mod:`.evidence` tests
it, :mod:`.verdicts` adjusts within families (Holm) and decides; :mod:`.paper_check`
recomputes the paper's own numbers against each other. :func:`audit` returns the
tables (``claims``, ``paper_self_check``) and the outcomes (for the figure).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis.audit.claims import EVALUATORS, Context, order_note
from analysis.audit.context import MARGIN
from analysis.audit.paper_check import checks as self_checks
from analysis.audit.power import part_power, strictest
from analysis.audit.verdicts import VERDICTS, Outcome, adjust, decide
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
    seen = set()
    for entry in data["claims"]:
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
    return data


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


def evaluate(frame: pd.DataFrame, plan: dict[str, Any], summaries: Summaries) -> tuple[list[Outcome], dict[str, Any]]:
    """Every claim's outcome (verdict decided), in registry order."""
    reg = registry()
    runs = run_level(frame) if not frame.empty else pd.DataFrame(columns=RUN_COLUMNS)
    outcomes: list[Outcome] = []
    for entry in reg["claims"]:
        datasets, why = _datasets(entry, plan, runs, summaries, reg["paper_backbone"])
        if not datasets:
            outcomes.append(Outcome(entry["id"], entry["family"], "", not_tested=why))
            continue
        for dataset in datasets:
            ctx = Context(runs, summaries, plan, dataset)
            outcome = Outcome(
                entry["id"],
                entry["family"],
                dataset,
                parts=EVALUATORS[entry["check"]["test"]](ctx, entry["check"]),
                scope=_scope(ctx, entry["check"]),
            )
            if entry["check"]["test"] == "order_robust":
                outcome.note = order_note(ctx, entry["check"])
            if entry["check"]["test"] == "strategy_order":
                outcome.note = _memory_note(ctx.rows(entry["check"]["study"]))
            outcomes.append(outcome)
    adjust(outcomes, reg["alpha"])
    for outcome in outcomes:
        decide(outcome, reg["alpha"])
    return outcomes, reg


def _scope(ctx: Context, check: dict[str, Any]) -> str:
    """``study: categories`` of the runs a check reads (the categories its finished runs trained on)."""
    study = check.get("study") or (
        "sensitivity" if "sweep" in check or check.get("test") == "sensitivity_classes" else None
    )
    if study is None:
        return "the paper's numbers"
    categories: set[str] = set()
    for run_id in ctx.rows(study)["run_id"]:
        categories.update((ctx.summaries.get(run_id) or {}).get("tasks") or [])
    return f"{study}: {', '.join(sorted(categories)) if categories else 'no finished run'}"


def _power(outcome: Outcome, family_size: int, alpha: float) -> str:
    """What each t-tested part of the claim could detect, and the replicates it would need (:mod:`.power`)."""
    step = outcome.support_step if np.isfinite(outcome.support_step) else strictest(alpha, family_size)
    texts = []
    for part in outcome.parts:
        found = part_power(part, step, MARGIN)
        if found is not None:
            texts.append(f"{part.label}: {found.text(part.n)}")
    return "; ".join(texts) or "--"


def _memory_note(rows: pd.DataFrame) -> str:
    sub = rows[rows["status"] == "ok"]
    if sub.empty or "memory_pct_of_base" not in sub:
        return ""
    per = sub.groupby("variant", sort=False)["memory_pct_of_base"].first()
    return "memory per task (% of the base): " + ", ".join(f"{v} {p:.1f}%" for v, p in per.items() if np.isfinite(p))


def claims_table(outcomes: list[Outcome], reg: dict[str, Any]) -> TableSpec:
    """One row per claim (and dataset): claim, paper, harness, rule, verdict, why."""
    entries = {e["id"]: e for e in reg["claims"]}
    several = len({o.dataset for o in outcomes if o.dataset}) > 1
    family_sizes: dict[tuple[str, str], int] = {}
    for o in outcomes:
        family_sizes[(o.family, o.dataset)] = family_sizes.get((o.family, o.dataset), 0) + 1
    rows, cells = [], {}
    for o in outcomes:
        row = f"{o.claim_id} ({o.dataset})" if several and o.dataset else o.claim_id
        entry = entries[o.claim_id]
        harness = "; ".join(f"{p.label}: {p.shown()}" for p in o.parts if p.shown()) or "--"
        if o.note:
            harness += f" ({o.note})"
        rule = entry["rule"] + (f" [changed from the proposal: {entry['changed']}]" if entry.get("changed") else "")
        rule += f" [runs: {entry['definition']}]" if entry.get("definition") else ""
        power = _power(o, family_sizes[(o.family, o.dataset)], reg["alpha"]) if not o.not_tested else "--"
        for column, text in (
            ("Family", o.family),
            ("Claim", entry["claim"]),
            ("Paper", f"{entry['paper']} ({entry['where']})"),
            ("Harness", harness),
            ("Scope", o.scope or "--"),
            ("Rule", rule),
            ("Verdict", o.verdict),
            ("Why", o.why),
            ("Power", power),
        ):
            cells[(row, column)] = Cell(text=str(text))
        rows.append(row)
    counts = {v: sum(o.verdict == v for o in outcomes) for v in VERDICTS}
    caption = (
        f"The claims audit (registry version {reg['version']}, registry.yaml sha256 {reg['sha256']}; its changes: "
        "analysis/audit/CHANGELOG.md): each claim of the paper, the harness's evidence (estimate [95% interval, "
        "unadjusted], n = replicates: seeds, or seeds x task orders; Δ = variant - reference, paired), the runs it "
        "covers (Scope), the pre-registered rule and the verdict. Tests at alpha "
        f"{reg['alpha']}. A claim is supported when every part is (an intersection-union test: its largest one-sided "
        "p), with Holm's correction across the claims of a family (column Family); contradicted when a part is, with "
        "Holm's correction across every part of the family; so within a family the chance of any wrong 'supported', "
        "and of any wrong 'contradicted', is at most alpha each. The intervals shown are unadjusted 95% intervals; the "
        "verdicts use the adjusted p-values. Power: for each t-tested part, the smallest effect it detects with 80% "
        "power at its n and at the level its claim is tested at (its Holm step), the replicates it would need for "
        "the paper's effect (or the margin), and its detectable effect at the paper grid's 5 seeds, from the observed "
        "SD. Verdicts: " + ", ".join(f"{v} {n}" for v, n in counts.items()) + "."
    )
    return TableSpec(
        "claims",
        "audit",
        "What the runs say about each claim of the paper",
        caption,
        rows,
        ["Family", "Claim", "Paper", "Harness", "Scope", "Rule", "Verdict", "Why", "Power"],
        cells=cells,
        latex_format="lp{1.2cm}p{2.6cm}p{2.2cm}p{3cm}p{1.8cm}p{3cm}p{1.4cm}p{3cm}p{3cm}",
    )


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
        latex_format="lp{4.5cm}p{1.4cm}p{2.6cm}p{5cm}p{1cm}",
    )


def audit(frame: pd.DataFrame, plan: dict[str, Any], summaries: Summaries) -> tuple[list[TableSpec], list[Outcome]]:
    """The audit's tables and outcomes."""
    outcomes, reg = evaluate(frame, plan, summaries)
    return [claims_table(outcomes, reg), self_check_table()], outcomes
