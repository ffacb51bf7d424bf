"""Allocate the embedded default's replicates where they decide claims, searched on the validation copy.

``python -m benchmarks.select_allocation [--spec FILE] [--out FILE] [--workers 2] [--work DIR] [--audited RESULTS]``

Everything the search may choose from is fixed in a committed file, ``benchmarks/allocation.yaml``
(``--spec``): the searched studies and the seeds each has before the search, the most seeds a
study may get, the budget and the objective. The search reads that file and nothing else of the
default's seeds (never ``config/config.yaml``, which it is meant to rewrite), and refuses to run
while the file has uncommitted changes, so the report names the commit that fixed the search
before any run of it.

It trains the searched studies of ``config/config.yaml`` with ``max_seeds`` seeds on ``moleflow
synth --seed <validation_seed>`` only, the validation copy of the generator (the default dataset
is seed 0, so nothing here looks at the default's test images).

Rule: a combination gives each searched study a seed count between its start and ``max_seeds``;
the runs it needs are those that some study holding their configuration reaches with its count
(a configuration shared by several studies, such as the ablation's MoLE-Flow, which is also the
interaction study's frozen all-on cell and the sweeps' default point, is trained once per seed
and read by every study that holds it, as the audit reads runs by configuration). Its cost is the
validation runs' own training and evaluation seconds (one thread each) plus a per-run start of
:data:`PER_RUN_S`, summed over the runs it adds to the start and divided by the two cores the
default runs on. Every combination within the budget is audited as a whole (the audit controls
its error rate over every part at once, so one study's gain depends on the others' parts and
gains do not add up), and the chosen one decides the most claims (``objective: claims_decided``;
or parts, ``parts_decided``), the cheapest one on a tie, then the one with fewer seeds in the
studies listed first. The main study and the order study keep their runs. Writes
``benchmarks/ALLOCATION.md``; with ``--audited`` it adds each claim's predicted verdict (the
validation runs at the chosen seeds) beside the verdict the default's own runs gave (that
results folder's ``tables/claims.csv``).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from benchmarks.select_profile import write_selection
from moleflow.errors import ConfigError
from moleflow.io import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path(__file__).resolve().parent / "ALLOCATION.md"
DEFAULT_SPEC = Path(__file__).resolve().parent / "allocation.yaml"
PER_RUN_S = 1.0  # what a run adds to its job besides training and evaluation (checks, records), measured ~1 s
DECIDED = ("supported", "contradicted")
OBJECTIVES = ("claims_decided", "parts_decided")
SPEC_KEYS = ("validation_seed", "max_seeds", "start", "budget_s", "objective")


@dataclass(frozen=True)
class AllocationSpec:
    """The committed search space: ``start`` maps each searched study to the seeds it has before the search."""

    validation_seed: int
    max_seeds: int
    start: dict[str, int]
    budget_s: float
    objective: str

    @property
    def studies(self) -> tuple[str, ...]:
        return tuple(self.start)


def load_spec(path: str | Path) -> AllocationSpec:
    """Read and check the allocation file; a missing, unknown or malformed key is a one-line :class:`ConfigError`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the allocation file ({err.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {', '.join(SPEC_KEYS)}")
    for key in data:
        if key not in SPEC_KEYS:
            raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(SPEC_KEYS)})")
    for key in SPEC_KEYS:
        if key not in data:
            raise ConfigError(f"{path}: missing key {key!r}")
    start = data["start"]
    if not isinstance(start, dict) or not start:
        raise ConfigError(f"{path}: 'start' must map each searched study to its seeds before the search")
    max_seeds = data["max_seeds"]
    for study, k in start.items():
        if not isinstance(k, int) or not 1 <= k <= max_seeds:
            raise ConfigError(f"{path}: start.{study} must be an integer from 1 to max_seeds ({max_seeds}), got {k!r}")
    if data["objective"] not in OBJECTIVES:
        raise ConfigError(f"{path}: objective must be one of {', '.join(OBJECTIVES)}, got {data['objective']!r}")
    if not isinstance(data["budget_s"], (int, float)) or data["budget_s"] < 0:
        raise ConfigError(f"{path}: budget_s must be a non-negative number of seconds")
    return AllocationSpec(
        int(data["validation_seed"]), int(max_seeds), dict(start), float(data["budget_s"]), data["objective"]
    )


def spec_commit(path: str | Path) -> str:
    """The commit that last changed the allocation file; a :class:`ConfigError` while it has uncommitted changes."""
    path = Path(path).resolve()
    git = ["git", "-C", str(path.parent)]
    try:
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", path.name], capture_output=True, text=True, check=True
        )
        commit = subprocess.run(  # no commit yet: empty
            [*git, "log", "-1", "--format=%H %cs", "--", path.name], capture_output=True, text=True, check=False
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise ConfigError(
            f"{path}: not in a git checkout; the search must be fixed by a commit before it runs"
        ) from None
    if dirty.stdout.strip() or not commit:
        raise ConfigError(f"{path}: has uncommitted changes; commit it before the search (the report names its commit)")
    return commit


def workflow(work: Path, spec: AllocationSpec) -> dict[str, Any]:
    """``config/config.yaml`` on the validation copy, the searched studies at ``max_seeds`` seeds, the others left out."""
    wf = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    wf["results"] = str(work / "results")
    wf["cache"] = str(work / "cache")
    for dataset in wf["datasets"].values():
        dataset["root"] = str(work / "data")
        dataset["generate"] = {**dataset["generate"], "seed": spec.validation_seed}
    missing = [s for s in spec.studies if s not in wf["studies"]]
    if missing:
        raise ConfigError(f"config/config.yaml: no study {', '.join(missing)} (named in the allocation file)")
    wf["studies"] = {name: study for name, study in wf["studies"].items() if name in spec.start}
    for study in wf["studies"].values():
        study["seeds"] = list(
            range(spec.max_seeds)
        )  # a variant with seeds of its own (the kNN reference: [0]) keeps them
    return wf


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


def needed(runs: dict[str, Any], seeds: dict[str, int]) -> set[str]:
    """Run ids that ``seeds`` needs: each run once, needed when any study holding it reaches its seed.

    ``runs``: run id -> an object with ``seed`` and ``memberships`` (``(study, variant)`` pairs)."""
    return {rid for rid, run in runs.items() if any(s in seeds and run.seed < seeds[s] for s, _ in run.memberships)}


def added_cost(runs: dict[str, Any], seconds: dict[str, float], start: dict[str, int], seeds: dict[str, int]) -> float:
    """Wall seconds (two cores) of the runs that ``seeds`` adds over ``start``, each run counted once."""
    return sum(seconds.get(rid, 0.0) for rid in needed(runs, seeds) - needed(runs, start)) / 2


def combinations(spec: AllocationSpec) -> list[dict[str, int]]:
    """Every seed count per searched study from its start to ``max_seeds``, in ``spec.start``'s order."""
    ranges = [range(spec.start[s], spec.max_seeds + 1) for s in spec.studies]
    return [dict(zip(spec.studies, combo)) for combo in itertools.product(*ranges)]


_AUDIT: dict[str, Any] = {}  # the frame, plan record and summaries the audit workers read (set before they fork)


def verdicts(keep: set[str]) -> tuple[dict[str, str], int]:
    """Each claim's verdict when the audit reads only the runs ``keep``, and the number of parts it decides."""
    from analysis.audit import evaluate

    frame = _AUDIT["frame"]
    outcomes, _, _ = evaluate(frame[frame["run_id"].isin(keep)], _AUDIT["record"], _AUDIT["summaries"])
    found: dict[str, str] = {}
    parts = 0
    for outcome in outcomes:
        found.setdefault(outcome.claim_id, outcome.verdict)
        parts += sum(status in DECIDED for status in outcome.statuses)
    return found, parts


@functools.cache
def _analysis_digest() -> str:
    """A digest of the analysis code and data files (the audit's code)."""
    code = hashlib.sha256()
    for path in sorted((ROOT / "analysis").rglob("*")):
        if path.suffix in (".py", ".yaml", ".csv") and path.is_file():
            code.update(path.read_bytes())
    return code.hexdigest()


def _audit_key(keep: set[str]) -> str:
    """The runs an audit reads and the code that audits them (a change to either audits again)."""
    return hashlib.sha256((_analysis_digest() + "|" + ",".join(sorted(keep))).encode()).hexdigest()


def _audit_job(keep: frozenset[str]) -> tuple[dict[str, str], int]:
    return verdicts(set(keep))


def claim_order(claim: str) -> tuple[str, int, str]:
    """``C18g`` -> ``("C", 18, "g")``: claims in the registry's order (C18, C18d, C18g, C19; O1 after the Cs)."""
    match = re.fullmatch(r"([A-Z]+)(\d+)(\w*)", claim)
    return (match.group(1), int(match.group(2)), match.group(3)) if match else (claim, 0, "")


def score(found: dict[str, str], parts: int, objective: str) -> int:
    return parts if objective == "parts_decided" else sum(v in DECIDED for v in found.values())


def select(work: Path, workers: int, spec: AllocationSpec) -> dict[str, Any]:
    """Train, audit every combination within the budget, choose; return everything the report prints."""
    from multiprocessing import get_context

    from analysis.collect import collect, load_summaries

    wf = workflow(work, spec)
    plan = train_all(wf, workers)
    record = plan.record()
    summaries = load_summaries(record, wf["results"])
    _AUDIT.update(frame=collect(record, wf["results"], summaries), record=record, summaries=summaries)
    seconds = run_seconds(summaries)
    rows: list[dict[str, Any]] = [
        {"seeds": seeds, "cost": added_cost(plan.runs, seconds, spec.start, seeds)} for seeds in combinations(spec)
    ]
    fits = [r for r in rows if r["cost"] <= spec.budget_s]
    print(f"[allocation] auditing {len(fits)} of {len(rows)} combinations (within the budget)", file=sys.stderr)
    cache_path = work / "audits.json"  # the audits of earlier invocations with the same analysis code
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    keys = [_audit_key(needed(plan.runs, r["seeds"])) for r in fits]
    todo = [(k, frozenset(needed(plan.runs, r["seeds"]))) for k, r in zip(keys, fits) if k not in cache]
    with get_context("fork").Pool(workers) as pool:
        for (key, _), result in zip(todo, pool.map(_audit_job, [runs for _, runs in todo])):
            cache[key] = result
    write_text_atomic(cache_path, json.dumps(cache))
    found = [tuple(cache[k]) for k in keys]
    for r, (claims, parts) in zip(fits, found):
        r["verdicts"], r["parts"] = claims, parts
        r["decided"] = sorted((c for c, v in claims.items() if v in DECIDED), key=claim_order)
        r["score"] = score(claims, parts, spec.objective)
    chosen = max(fits, key=lambda r: (r["score"], -r["cost"], [-r["seeds"][s] for s in spec.studies]))
    start = next(r for r in fits if r["seeds"] == spec.start)
    return {
        "spec": spec,
        "rows": rows,
        "fits": fits,
        "chosen": chosen,
        "start": start,
        "runs": len(plan.runs),
        "train_s": sum(seconds.values()),
    }


def audited_verdicts(results: str | Path) -> dict[str, str]:
    """Claim -> verdict of a results folder's claims table (``tables/claims.csv``)."""
    path = Path(results) / "tables" / "claims.csv"
    if not path.is_file():
        raise ConfigError(f"{path}: no claims table (run the main command, or the analysis, on that folder first)")
    table = pd.read_csv(path)
    return dict(zip(table["row"], table["Verdict"]))


def outside_search(studies: tuple[str, ...]) -> set[str]:
    """Claims that read a study the search leaves out (the main and order studies): the validation copy has none of
    their runs, so it cannot predict them. Claims that read every run (fingerprints, invertibility) or none (the
    paper's own numbers) stay in."""
    from analysis.audit import registry
    from analysis.audit.context import STUDY_FALLBACK

    out = set()
    for entry in registry()["claims"]:
        check = entry["check"]
        study = check.get("study") or (
            "sensitivity" if "sweep" in check or check["test"] == "sensitivity_classes" else None
        )
        if study is not None and STUDY_FALLBACK.get(study, study) not in studies:
            out.add(entry["id"])
    return out


def comparison(
    predicted: dict[str, str], audited: dict[str, str], outside: set[str] | None = None
) -> tuple[list[str], int, int]:
    """Markdown rows claim | predicted | audited | agree, the claims both decide alike, and the claims both test
    (those ``outside`` the search are shown, marked, and not counted)."""
    lines, agree, both = [], 0, 0
    for claim in sorted(set(predicted) | set(audited), key=claim_order):
        p, a = predicted.get(claim, "--"), audited.get(claim, "--")
        if outside and claim in outside:
            lines.append(f"| {claim} | -- (outside the search) | {a} | -- |")
            continue
        tested = p != "not tested here" and a != "not tested here" and "--" not in (p, a)
        both += tested
        agree += tested and p == a
        lines.append(f"| {claim} | {p} | {a} | {'yes' if p == a else ('no' if tested else '--')} |")
    return lines, agree, both


def report(sel: dict[str, Any], seconds: float, commit: str, spec_path: Path, audited: dict[str, str] | None) -> str:
    """The selection as Markdown."""
    spec, chosen, start = sel["spec"], sel["chosen"], sel["start"]
    studies = spec.studies
    lines = [
        "# Replicates of the embedded default",
        "",
        f"Produced by `python -m benchmarks.select_allocation` from `{spec_path.relative_to(ROOT)}` as committed in "
        f"{commit.split()[0][:12]} ({commit.split()[1]}), before the search ran; the file fixes the searched studies, "
        f"their seeds before the search ({', '.join(f'{s} {k}' for s, k in spec.start.items())}), at most "
        f"{spec.max_seeds} seeds, a budget of {spec.budget_s:.0f} s of wall time and the objective `{spec.objective}`. "
        f"On the validation copy of the generator (`moleflow synth --seed {spec.validation_seed}`; the embedded default "
        f"is seed 0): {sel['runs']} runs of the searched studies at up to {spec.max_seeds} seeds, {sel['train_s']:.0f} s "
        f"of training and evaluation (one thread per run, two at a time; this invocation took {seconds:.0f} s, reusing "
        "finished runs of `--work`).",
        "",
        "Rule: " + " ".join(__doc__.split("Rule: ")[1].split("Writes")[0].split()),
        "",
        f"{len(sel['fits'])} of {len(sel['rows'])} combinations fit the budget and were audited. The start decides "
        f"{len(start['decided'])} claims on the validation runs ({', '.join(start['decided']) or 'none'}); the chosen "
        f"seeds ({', '.join(f'{s} {k}' for s, k in chosen['seeds'].items())}) decide {len(chosen['decided'])} "
        f"({', '.join(chosen['decided']) or 'none'}) and {chosen['parts']} parts, for +{chosen['cost']:.0f} s.",
        "",
        "The 15 combinations within the budget that score the most, the chosen one and the start:",
        "",
        "| " + " | ".join(studies) + " | claims decided | parts decided | added wall s | |",
        "|---" * (len(studies) + 4) + "|",
    ]
    ranked = sorted(sel["fits"], key=lambda r: (-r["score"], r["cost"]))
    shown = ranked[:15] + [r for r in (chosen, start) if r not in ranked[:15]]
    for r in shown:
        mark = "**chosen**" if r is chosen else ("start" if r is start else "")
        lines.append(
            "| "
            + " | ".join(str(r["seeds"][s]) for s in studies)
            + f" | {len(r['decided'])} | {r['parts']} | {r['cost']:.0f} | {mark} |"
        )
    lines += ["", "## Predicted against audited", ""]
    if audited is None:
        lines.append("Not compared: run with `--audited RESULTS` once the default has run at the chosen seeds.")
    else:
        rows, agree, both = comparison(chosen["verdicts"], audited, outside_search(spec.studies))
        lines += [
            "Each claim's verdict on the validation runs at the chosen seeds (predicted) and on the default's own "
            f"runs (audited): {agree} of the {both} claims that both test agree. Claims that read a study the search leaves "
            "out (the main and order studies) are outside it: shown, not counted.",
            "",
            "| claim | predicted | audited | agree |",
            "|---|---|---|---|",
            *rows,
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.select_allocation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--spec", default=str(DEFAULT_SPEC), help="the committed allocation file")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="Markdown file to write")
    parser.add_argument("--workers", type=int, default=2, help="runs trained (and combinations audited) at once")
    parser.add_argument("--work", help="working folder (default: a temporary one)")
    parser.add_argument("--audited", help="a results folder of the default at the chosen seeds, to compare with")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        commit = spec_commit(args.spec)
        audited = audited_verdicts(args.audited) if args.audited else None
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    write_selection(
        args.out,
        args.work,
        lambda work: report(
            select(work, args.workers, spec), time.perf_counter() - start, commit, Path(args.spec).resolve(), audited
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
