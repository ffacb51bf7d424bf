"""Allocate the embedded default's replicates where they decide claims, chosen on the validation copy.

``python -m benchmarks.select_allocation [--out FILE] [--workers 2] [--work DIR] [--max-seeds 4] [--budget S]``

The default's studies other than the main one run two seeds (one for the sweeps and the
depths), which decides few comparative claims (``analysis/audit/README.md``, "Power").
This selection trains those studies of ``config/config.yaml`` with up to ``--max-seeds``
seeds on ``moleflow synth --seed 1`` only, the validation copy of the generator (the
default dataset is seed 0, so nothing here looks at the default's test images), runs the
claims audit on those runs with the first ``k`` seeds of each study, and chooses the
seeds per study.

Rule: for each searched study and each seed count from the default's current one to
``--max-seeds`` (the other studies at their current counts), the claims audit on the
validation runs gives the claims it decides (supported or contradicted); a combination
of seed counts is scored by the claims decided at the default's counts plus each study's
gain at its count (a claim reads one study's runs, so the gains add up), and the chosen
combination decides the most claims among those whose added training and evaluation
time fits the budget, the cheapest one on a tie; the chosen combination is then audited
as a whole to report what it decides. Cost of a combination: the validation runs' own training and
evaluation seconds (one thread each) plus a per-run start of :data:`PER_RUN_S`, summed
over the runs it adds to the default and divided by the two cores the default runs on.
Budget: 30 % of the main command's measured time (``--budget``, seconds of wall time).
The main study (three seeds, its claims exact ones) and the order study (one seed per
order, its claim exact) keep their runs. Writes ``benchmarks/ALLOCATION.md``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from benchmarks.select_profile import VALIDATION_SEED, write_selection

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "ALLOCATION.md"
SEARCHED = ("strategies", "ablation", "interaction", "depth", "sensitivity")
PER_RUN_S = 1.0  # what a run adds to its job besides training and evaluation (checks, records), measured ~1 s
DECIDED = ("supported", "contradicted")


def workflow(work: Path, max_seeds: int) -> dict[str, Any]:
    """``config/config.yaml`` on the validation copy, the searched studies at ``max_seeds`` seeds, main and order left out."""
    wf = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    wf["results"] = str(work / "results")
    wf["cache"] = str(work / "cache")
    for dataset in wf["datasets"].values():
        dataset["root"] = str(work / "data")
        dataset["generate"] = {**dataset["generate"], "seed": VALIDATION_SEED}
    wf["studies"] = {name: study for name, study in wf["studies"].items() if name in SEARCHED}
    for study in wf["studies"].values():
        study["seeds"] = list(range(max_seeds))  # a variant with seeds of its own (the kNN reference: [0]) keeps them
    return wf


def current_seeds() -> dict[str, int]:
    """Seeds per searched study in ``config/config.yaml`` as it is."""
    wf = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    default = len(wf.get("seeds", [0, 1, 2]))
    return {name: len(wf["studies"][name].get("seeds", range(default))) for name in SEARCHED}


def _train(job: tuple[str, dict[str, Any]]) -> tuple[str, str]:
    import torch

    from moleflow.continual import run

    torch.set_num_threads(1)
    out, config = job
    if (Path(out) / "summary.json").is_file():
        return out, "kept"
    return out, run(config, out, progress=False, log=lambda *a: None)["status"]


def train_all(wf: dict[str, Any], workers: int) -> Any:
    """Generate the validation copy, extract its features once, train every planned run (finished ones kept)."""
    from moleflow.continual.tasks import load_tasks
    from moleflow.data.synth import SynthCounts, generate
    from moleflow.features import FeatureStore
    from moleflow.planning import WorkflowPlan

    settings = next(iter(wf["datasets"].values()))
    g = settings["generate"]
    if not (Path(settings["root"]) / "synth.json").is_file():
        generate(
            Path(settings["root"]),
            seed=g["seed"],
            size=g["size"],
            categories=None,
            counts=SynthCounts(train=g["train"], test_good=g["test_good"], test_per_defect=g["test_defect"]),
        )
    plan = WorkflowPlan.from_config(wf)
    seen = set()
    for run in plan.runs.values():  # every feature setting extracted in this process; workers only read the cache
        key = str(run.config["features"])
        if key not in seen:
            seen.add(key)
            load_tasks(
                {**run.config, "dataset": {**run.config["dataset"], "categories": []}},
                FeatureStore(run.config, progress=False),
            )
    jobs = [(str(Path(wf["results"]) / "runs" / rid), run.config) for rid, run in plan.runs.items()]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for k, (out, status) in enumerate(pool.map(_train, jobs), 1):
            print(f"[allocation] {k}/{len(jobs)} {Path(out).name}: {status}", file=sys.stderr, flush=True)
    return plan


def run_seconds(summaries: dict[str, Any]) -> dict[str, float]:
    """Training and evaluation seconds of each run (one thread) plus the per-run start."""
    return {rid: s["timings"]["training"] + s["timings"]["evaluation"] + PER_RUN_S for rid, s in summaries.items() if s}


def decided(
    frame: Any, record: dict[str, Any], summaries: dict[str, Any], seeds: dict[str, int]
) -> tuple[int, list[str]]:
    """Claims the audit decides on the validation runs with the first ``seeds[study]`` seeds of each study."""
    from analysis.audit import evaluate

    keep = frame["seed"] < frame["study"].map(seeds).fillna(10**6)
    outcomes, _ = evaluate(frame[keep], record, summaries)
    ids = sorted({o.claim_id for o in outcomes if o.verdict in DECIDED}, key=lambda c: int(c[1:]))
    return len(ids), ids


def added_cost(plan: Any, seconds: dict[str, float], base: dict[str, int], seeds: dict[str, int]) -> float:
    """Wall seconds (two cores) of the runs that ``seeds`` adds over ``base``, each run counted once."""
    added = set()
    for rid, run in plan.runs.items():
        needed_now = any(run.seed < base[s] for s, _ in run.memberships)
        needed_then = any(run.seed < seeds[s] for s, _ in run.memberships)
        if needed_then and not needed_now:
            added.add(rid)
    return sum(seconds.get(rid, 0.0) for rid in added) / 2


def select(work: Path, workers: int, max_seeds: int, budget: float) -> dict[str, Any]:
    """Train, audit every combination, choose; return everything the report prints."""
    from analysis.collect import collect, load_summaries

    wf = workflow(work, max_seeds)
    plan = train_all(wf, workers)
    record = plan.record()
    summaries = load_summaries(record, wf["results"])
    frame = collect(record, wf["results"], summaries)
    seconds = run_seconds(summaries)
    base = current_seeds()
    _, base_ids = decided(frame, record, summaries, base)
    gains: dict[tuple[str, int], set[str]] = {}
    for name in SEARCHED:  # one study at a time, the others as they are
        for k in range(base[name] + 1, max_seeds + 1):
            _, ids = decided(frame, record, summaries, {**base, name: k})
            gains[(name, k)] = set(ids) - set(base_ids)
            print(f"[allocation] {name} at {k} seeds: +{len(gains[(name, k)])} claims", file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    for combo in itertools.product(*(range(base[name], max_seeds + 1) for name in SEARCHED)):
        seeds = dict(zip(SEARCHED, combo))
        claims = set(base_ids).union(*(gains.get((name, seeds[name]), set()) for name in SEARCHED))
        rows.append(
            {
                "seeds": seeds,
                "decided": len(claims),
                "claims": sorted(claims, key=lambda c: int(c[1:])),
                "cost": added_cost(plan, seconds, base, seeds),
            }
        )
    fits = [r for r in rows if r["cost"] <= budget]
    chosen = max(fits, key=lambda r: (r["decided"], -r["cost"]))
    baseline = next(r for r in rows if r["seeds"] == base)
    count, ids = decided(frame, record, summaries, chosen["seeds"])  # the chosen combination, audited as a whole
    chosen["audited"] = {"decided": count, "claims": ids}
    return {
        "rows": rows,
        "chosen": chosen,
        "baseline": baseline,
        "budget": budget,
        "max_seeds": max_seeds,
        "runs": len(plan.runs),
        "train_s": sum(seconds.values()),
        "gains": gains,
    }


def report(sel: dict[str, Any], seconds: float) -> str:
    """The selection as Markdown."""
    chosen, baseline = sel["chosen"], sel["baseline"]
    lines = [
        "# Replicates of the embedded default",
        "",
        f"Produced by `python -m benchmarks.select_allocation` on the validation copy of the generator (`moleflow "
        f"synth --seed {VALIDATION_SEED}`; the embedded default is seed 0): {sel['runs']} runs of the searched studies "
        f"at up to {sel['max_seeds']} seeds, {sel['train_s']:.0f} s of training and evaluation (one thread per run, "
        f"two at a time; this invocation took {seconds:.0f} s, reusing finished runs of `--work`).",
        "",
        "Rule: " + " ".join(__doc__.split("Rule: ")[1].split("Writes")[0].split()),
        "",
        f"Budget: {sel['budget']:.0f} s of wall time. The default's seeds as they were decide {baseline['decided']} "
        f"claims on the validation runs ({', '.join(baseline['claims']) or 'none'}); the chosen seeds are predicted "
        f"to decide {chosen['decided']} for +{chosen['cost']:.0f} s ("
        + ", ".join(f"{name} {k}" for name, k in chosen["seeds"].items())
        + " seeds), and audited as a whole they decide "
        f"{chosen['audited']['decided']} ({', '.join(chosen['audited']['claims']) or 'none'}).",
        "",
        "Gains per study (claims decided beyond the default's seeds, the other studies as they are):",
        "",
        "| study | seeds | claims gained |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {k} | {', '.join(sorted(ids, key=lambda c: int(c[1:]))) or '--'} |"
        for (name, k), ids in sel["gains"].items()
    ]
    lines += [
        "",
        f"The 15 combinations that decide the most (of {len(sel['rows'])}), the chosen one and the default's as "
        "it was:",
        "",
        "| " + " | ".join(SEARCHED) + " | claims decided | added wall s | within budget | |",
        "|---" * (len(SEARCHED) + 4) + "|",
    ]
    ranked = sorted(sel["rows"], key=lambda r: (-r["decided"], r["cost"]))
    shown = ranked[:15] + [r for r in (chosen, baseline) if r not in ranked[:15]]
    for r in shown:
        mark = "**chosen**" if r is chosen else ("as it was" if r is baseline else "")
        lines.append(
            "| "
            + " | ".join(str(r["seeds"][s]) for s in SEARCHED)
            + f" | {r['decided']} | {r['cost']:.0f} | {'yes' if r['cost'] <= sel['budget'] else 'no'} | {mark} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.select_allocation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="Markdown file to write")
    parser.add_argument("--workers", type=int, default=2, help="runs trained at once (one thread each)")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--max-seeds", type=int, default=4, help="most seeds any searched study may get")
    parser.add_argument(
        "--budget",
        type=float,
        required=True,
        help="seconds of wall time the added runs may take (30 %% of the main command's measured time)",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    write_selection(
        args.out,
        args.work,
        lambda work: report(select(work, args.workers, args.max_seeds, args.budget), time.perf_counter() - start),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
