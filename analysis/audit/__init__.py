"""The claims audit: every checkable claim of the paper, its rule, and a verdict from the runs.

``registry.yaml`` is the claims registry (read it for the claims, rules and their
changes); :mod:`.claims` reads the evidence each check names, :mod:`.evidence` tests
it, :mod:`.verdicts` adjusts within families (Holm) and decides; :mod:`.paper_check`
recomputes the paper's own numbers against each other. :func:`audit` returns the
tables (``claims``, ``paper_self_check``) and the outcomes (for the figure).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import yaml

from analysis.audit.claims import EVALUATORS, Context, order_note
from analysis.audit.paper_check import checks as self_checks
from analysis.audit.verdicts import VERDICTS, Outcome, adjust, decide
from analysis.collect import Summaries
from analysis.render import Cell, TableSpec
from analysis.tables import run_level
from moleflow.errors import ConfigError

KEYS = {"id", "family", "claim", "where", "paper", "needs", "check", "rule", "changed", "definition"}
REQUIRED = KEYS - {"changed", "definition"}
KINDS = {"mvtec", "visa", "any", "none"}
RUN_COLUMNS = ["study", "variant", "dataset", "run_id", "seed", "order", "status", "strategy"]


def registry() -> dict[str, Any]:
    """The validated registry (45 claims, each with the keys of :data:`KEYS`, a known test and known needs)."""
    with resources.files("analysis.audit").joinpath("registry.yaml").open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
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


def _datasets(entry: dict[str, Any], plan: dict[str, Any], runs: pd.DataFrame, summaries: Summaries,
              paper_backbone: str) -> tuple[list[str], str]:
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
        return [], (f"needs the real {'VisA' if needs['kind'] == 'visa' else 'MVTec AD'}: the plan's "
                    f"{', '.join(kind)} is generated data, whose numbers are not the benchmark's")
    if needs.get("backbone") == "paper":
        ok = [d for d in real if _backbones(runs, summaries, d) and
              all(b.split(".")[0] == paper_backbone for b in _backbones(runs, summaries, d))]
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
            outcome = Outcome(entry["id"], entry["family"], dataset, parts=EVALUATORS[entry["check"]["test"]](ctx, entry["check"]))
            if entry["check"]["test"] == "order_robust":
                outcome.note = order_note(ctx, entry["check"])
            if entry["check"]["test"] == "strategy_order":
                outcome.note = _memory_note(ctx.rows(entry["check"]["study"]))
            outcomes.append(outcome)
    adjust(outcomes)
    for outcome in outcomes:
        decide(outcome, reg["alpha"])
    return outcomes, reg


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
    rows, cells = [], {}
    for o in outcomes:
        row = f"{o.claim_id} ({o.dataset})" if several and o.dataset else o.claim_id
        entry = entries[o.claim_id]
        harness = "; ".join(f"{p.label}: {p.shown()}" for p in o.parts if p.shown()) or "--"
        if o.note:
            harness += f" ({o.note})"
        rule = entry["rule"] + (f" [changed from the proposal: {entry['changed']}]" if entry.get("changed") else "")
        rule += f" [runs: {entry['definition']}]" if entry.get("definition") else ""
        for column, text in (("Family", o.family), ("Claim", entry["claim"]), ("Paper", f"{entry['paper']} ({entry['where']})"),
                             ("Harness", harness), ("Rule", rule), ("Verdict", o.verdict), ("Why", o.why)):
            cells[(row, column)] = Cell(text=str(text))
        rows.append(row)
    counts = {v: sum(o.verdict == v for o in outcomes) for v in VERDICTS}
    caption = (f"The claims audit (registry version {reg['version']}): each claim of the paper, the harness's evidence "
               "(estimate [95% interval], n = replicates: seeds, or seeds x task orders; Δ = variant - reference, paired), "
               f"the pre-registered rule and the verdict. Tests at alpha {reg['alpha']}; Holm's correction within each family "
               "(column Family), separately for the p-values for and against a claim. Verdicts: "
               + ", ".join(f"{v} {n}" for v, n in counts.items()) + ".")
    return TableSpec("claims", "audit", "What the runs say about each claim of the paper", caption, rows,
                     ["Family", "Claim", "Paper", "Harness", "Rule", "Verdict", "Why"], cells=cells,
                     latex_format="lp{1.4cm}p{3cm}p{2.6cm}p{3.6cm}p{3.4cm}p{1.6cm}p{3.4cm}")


def self_check_table() -> TableSpec:
    """The paper against itself (:mod:`.paper_check`)."""
    found = self_checks()
    rows, cells = [], {}
    for i, check in enumerate(found, start=1):
        row = f"P{i}"
        rows.append(row)
        for column, text in (("Check", check.what), ("Tables", check.tables), ("Printed", check.printed),
                             ("Computed", check.computed), ("Agrees", "yes" if check.consistent else "no")):
            cells[(row, column)] = Cell(text=text)
    bad = sum(not c.consistent for c in found)
    caption = (f"The paper against itself: {len(found)} quantities recomputed from the paper's own printed values "
               f"(analysis/paper_tables.csv, analysis/literature.csv); {bad} disagree with what is printed beyond rounding.")
    return TableSpec("paper_self_check", "audit", "The paper's numbers checked against each other", caption, rows,
                     ["Check", "Tables", "Printed", "Computed", "Agrees"], cells=cells,
                     latex_format="lp{4.5cm}p{1.4cm}p{2.6cm}p{5cm}p{1cm}")


def audit(frame: pd.DataFrame, plan: dict[str, Any], summaries: Summaries) -> tuple[list[TableSpec], list[Outcome]]:
    """The audit's tables and outcomes."""
    outcomes, reg = evaluate(frame, plan, summaries)
    return [claims_table(outcomes, reg), self_check_table()], outcomes
