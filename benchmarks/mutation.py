"""Mutation testing of the code that decides the science, in parts that fit a 2-core machine (mutmut).

``python -m benchmarks.mutation --part PART [--work DIR] [--children 2]``  (``--part all`` runs every part in turn)
``python -m benchmarks.mutation --part PART --rejudge``  (the recorded survivors only, after tests were added)
``python -m benchmarks.mutation --report``  (rewrites ``benchmarks/MUTATION.md`` from the parts' records)

Each part names the modules it mutates and the test files that judge them (:data:`PARTS`). The part runs in a
copy of the repository's tracked files under ``--work`` (default ``mutation/<part>``, ignored by git), whose
``pyproject.toml`` gets the part's ``[tool.mutmut]`` section, so parts run one at a time or on different
machines and a killed part resumes where it stopped (mutmut keeps its state in the copy's ``mutants/``).
mutmut first records which tests reach which function, then runs, for each mutant, only the tests that reach
its function, each in a forked process. The result of a part is written to
``benchmarks/mutation/<part>.json``: the commit, the date, the counts per module and every surviving mutant
with its diff. Survivors that no test can kill because they do not change behaviour (equivalent mutants) are
listed with the reason in ``benchmarks/mutation/equivalent.yaml``; the score is killed / (all - equivalent -
skipped), per module and per part. Not run in CI (hours of CPU); the contributing page asks for it when a part's
modules change, and the recorded score is a ratchet: it must not fall.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "benchmarks" / "mutation"
EQUIVALENT = RECORDS / "equivalent.yaml"
REPORT = ROOT / "benchmarks" / "MUTATION.md"

#: part -> (modules mutated, test files that judge them). Tests that start the CLI or Snakemake in a subprocess
#: are left out: a subprocess imports the unmutated package.
PARTS: dict[str, tuple[list[str], list[str]]] = {
    "metrics": (["moleflow/metrics/*"], ["tests/test_metrics.py", "tests/test_metrics_contract.py"]),
    "model": (
        [
            "moleflow/model/loss.py",
            "moleflow/model/scoring.py",
            "moleflow/model/router.py",
            "moleflow/model/coupling.py",
            "moleflow/model/lora.py",
            "moleflow/model/gaussian_memory.py",
        ],
        [
            "tests/test_model.py",
            "tests/test_model_parts.py",
            "tests/test_model_values.py",  # defaults, errors and constants by hand
            "tests/test_fidelity.py",
            "tests/test_fidelity_authors.py",  # the blur against scipy, the permutation seeds, the router's float32
            "tests/test_fidelity_variants.py",
            "tests/test_objective.py",
            "tests/test_baselines.py",
            "tests/test_knn.py",
        ],
    ),
    "continual": (
        [
            "moleflow/continual/summary.py",
            "moleflow/continual/evaluate.py",
            "moleflow/continual/learner.py",
            "moleflow/continual/strategies/*",  # what each strategy trains, keeps and costs (was in learner.py)
        ],
        [
            "tests/test_continual.py",
            "tests/test_strategy_registry.py",
            "tests/test_knn.py",  # the knn strategy's bank and accounting
            "tests/test_smoke.py",  # each strategy's cost for the planner
            # the default grid's smoke run reaches every function of the part and adds 45 s to each surviving mutant;
            # the runs it makes are the loop's, judged by the end-to-end tests above and below
            "--deselect=tests/test_smoke.py::test_the_default_grid_passes_its_smoke_check",
            "tests/test_continual_data.py",
            "tests/test_strategies.py",
            "tests/test_fidelity_authors.py",
            "tests/test_baselines.py",
            "tests/test_strategy_values.py",  # each strategy's accounting, costs and summary reading, by hand
            "tests/test_continual_values.py",  # prototype rows, NaN scores, separated's forms, refusals, by hand
            "tests/test_score_cache.py",  # evaluation's cache of unchanged models' scores and metrics
            "tests/test_objective.py",  # the patch scores evaluation keeps for the input-collapse diagnostic
        ],
    ),
    "cache": (
        ["moleflow/features/cache.py"],
        ["tests/test_features.py", "tests/test_bad_input.py", "tests/test_cache_contract.py"],
    ),
    "statistics": (  # Table 8's analysis, the tests and intervals every table prints, the mixed model
        ["analysis/stats.py", "analysis/blocked.py", "analysis/interaction.py", "analysis/mixed.py"],
        [
            "tests/test_analysis_stats.py",
            "tests/test_stats_values.py",  # intervals, pairs and table directions at their edges, by hand
            "tests/test_interaction_values.py",  # Table 8 cell by cell, by hand
            "tests/test_blocked_values.py",  # contrasts, t tests, eta squared interval, notes and verdicts, by hand
            "tests/test_analysis_mixed.py",
            "tests/test_mixed_values.py",  # the category model's notes, fallbacks and edges, by hand
        ],
    ),
    "tables": (
        ["analysis/tables.py"],
        [
            "tests/test_stats_values.py",
            "tests/test_analysis_tables.py",
            "tests/test_analysis_figures.py",
            "tests/test_per_category_values.py",  # Tables 3-6 cell by cell, reported rows, caption
            "tests/test_dilemma_values.py",  # Table 1 cell by cell, memory, zero FM
        ],
    ),
    "audit": (
        ["analysis/audit/*"],
        [
            "tests/test_audit.py",
            "tests/test_audit_control.py",
            "tests/test_audit_rankings.py",
            "tests/test_evidence_values.py",  # the Welch, slope and p-value parts and the headline checks, by hand
            "tests/test_paper_check_values.py",  # the paper against itself, every check word for word
            "tests/test_audit_values.py",  # the parts CSV, notes, sweep spreads, printed averages, by hand
            "tests/test_structural_values.py",  # forgetting, fingerprints, invertibility, passes, router, overhead
            "tests/test_designs_values.py",  # depth, sweeps and re-scored top-k, by hand
            "tests/test_comparisons_values.py",  # ratio, forgetting and strategy orders, interaction parts, by hand
            "tests/test_audit_evaluate_values.py",  # datasets a claim may read, scope, notes, runs, the figure
            "tests/test_paired_values.py",  # every form of a paired part, bounds, the ranking's part, helpers
            "tests/test_verdict_values.py",  # contrast and t parts at their edges, verdicts' words, the paper's df
        ],
    ),
}


def mutmut_section(modules: list[str], tests: list[str]) -> str:
    """The ``[tool.mutmut]`` section of a part."""
    lines = [
        "[tool.mutmut]",
        'source_paths = ["moleflow/", "analysis/"]',
        "only_mutate = [" + ", ".join(json.dumps(m) for m in modules) + "]",
        'also_copy = ["config/", "benchmarks/", "docs/", "Snakefile", "workflow/", "profiles/"]',
        "pytest_add_cli_args_test_selection = [" + ", ".join(json.dumps(t) for t in tests) + "]",
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "no:randomly", "-q"]',
        "timeout_multiplier = 10.0",
        "timeout_constant = 30.0",  # a forked mutant run also loads what the test touches first (registry, caches)
    ]
    return "\n".join(lines) + "\n"


def prepare(part: str, work: Path) -> Path:
    """A copy of the tracked files at ``work`` with the part's mutmut section (kept when it exists: a rerun resumes)."""
    modules, tests = PARTS[part]
    if not (work / "pyproject.toml").is_file():
        work.mkdir(parents=True, exist_ok=True)
        files = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        for name in files.splitlines():
            source = ROOT / name
            if source.is_file():
                (work / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, work / name)
        text = (work / "pyproject.toml").read_text()
        (work / "pyproject.toml").write_text(text.rstrip() + "\n\n" + mutmut_section(modules, tests))
    return work


def commit() -> str:
    """The checkout's commit, ``+changes`` when its tracked files differ from it."""
    return subprocess.run(
        ["git", "describe", "--always", "--dirty=+changes"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()


def _one_thread_env() -> dict[str, str]:
    """The environment a part runs mutmut in: one thread per process (a forked child of a process with an OpenMP
    thread pool waits forever on the pool's lock)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _equivalents() -> dict[str, str]:
    """``equivalent.yaml``: mutant name -> why it cannot change a result."""
    return (yaml.safe_load(EQUIVALENT.read_text()) or {}) if EQUIVALENT.is_file() else {}


def run_part(part: str, work: Path, children: int) -> dict[str, Any]:
    """Run mutmut on a part and return its record (see the module docstring)."""
    prepare(part, work)
    started = datetime.datetime.now(datetime.UTC)
    run = ["mutmut", "run", "--max-children", str(children)]  # mutmut forks each mutant's run: one thread each
    done = subprocess.run(run, cwd=work, check=False, env=_one_thread_env())
    if done.returncode != 0 or not _results(work):  # e.g. a judging test failed on the unmutated code
        raise SystemExit(f"mutation: part {part}: mutmut run failed (exit {done.returncode}); no record written")
    return record(part, work, started)


def _results(work: Path) -> dict[str, str]:
    """mutant name -> status (killed, survived, timeout, suspicious, skipped, no tests, ...) of every mutant."""
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=work, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        if ":" in line:
            name, status = line.rsplit(":", 1)
            found[name.strip()] = status.strip()
    return found


def _diff(work: Path, name: str) -> str:
    return subprocess.run(["mutmut", "show", name], cwd=work, capture_output=True, text=True).stdout.strip()


def module_of(mutant: str) -> str:
    """``analysis.audit.evidence.x_sign_test__mutmut_3`` -> ``analysis/audit/evidence.py`` (a package's own
    functions: its ``__init__.py``)."""
    dotted = mutant.split(".x_")[0].split(".xǁ")[0]
    path = dotted.replace(".", "/")
    return f"{path}/__init__.py" if (ROOT / path).is_dir() else f"{path}.py"


def record(part: str, work: Path, started: datetime.datetime | None = None) -> dict[str, Any]:
    """The part's counts per module and its survivors, written to ``benchmarks/mutation/<part>.json``."""
    results = _results(work)
    equivalent = _equivalents()
    modules: dict[str, dict[str, int]] = {}
    survivors = []
    for name, status in sorted(results.items()):
        counts = modules.setdefault(module_of(name), {})
        kind = "equivalent" if status == "survived" and name in equivalent else status
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "survived":
            survivors.append({"mutant": name, "diff": _diff(work, name)})
    rec = {
        "part": part,
        "commit": commit(),
        "date": (started or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%d"),
        "tests": PARTS[part][1],
        "sources": sources_digests(part, work),
        "modules": modules,
        "survivors": survivors,
    }
    RECORDS.mkdir(exist_ok=True)
    (RECORDS / f"{part}.json").write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def sources_digests(part: str, root: Path | None = None) -> dict[str, str]:
    """Per file the part mutates or reads beside its modules (``analysis/audit/registry.yaml``), the SHA-256 of
    its text under ``root`` (the part's copy: what was mutated), so that a re-judging run knows which changed
    since the record, committed or not."""
    import glob
    import hashlib

    root = root or ROOT
    return {
        name: hashlib.sha256((root / name).read_bytes()).hexdigest()
        for pattern in PARTS[part][0]
        for name in sorted(glob.glob(pattern, root_dir=root))
        if (root / name).is_file()
    }


def _whole_digest(files: dict[str, bytes]) -> str:
    """The one digest over a part's files that records written before :func:`sources_digests` keep."""
    import hashlib

    digest = hashlib.sha256()
    for name, text in files.items():
        digest.update(name.encode() + b"\0" + text + b"\0")
    return digest.hexdigest()


def _committed(part: str, revision: str) -> dict[str, bytes]:
    """The part's files as ``revision`` has them (in :func:`sources_digests`' order; files it lacks left out)."""
    import glob

    out = {}
    for pattern in PARTS[part][0]:
        for name in sorted(glob.glob(pattern, root_dir=ROOT)):
            shown = subprocess.run(["git", "show", f"{revision}:{name}"], cwd=ROOT, capture_output=True, check=False)
            if shown.returncode == 0:
                out[name] = shown.stdout
    return out


def _dated(rec: dict[str, Any], part: str) -> dict[str, bytes] | None:
    """The files a record with one whole-part digest judged: those of the commit (its own, its re-judging's, or
    one of the checkout's last 30) whose files give that digest; None when none does."""
    named = [rec.get("rejudged", {}).get("commit", ""), rec["commit"]]
    recent = subprocess.run(
        ["git", "rev-list", "--max-count=30", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    for revision in [c.removesuffix("+changes") for c in named if c] + recent:
        files = _committed(part, revision)
        if _whole_digest(files) == rec["sources"]:
            return files
    return None


def changed_files(rec: dict[str, Any], part: str) -> list[str]:
    """The part's files that differ from those the record judged. A record with one digest over the whole part
    (written before per-file digests) is dated by the commit whose files give that digest (:func:`_dated`); a
    record without a digest by its commit (which cannot see uncommitted changes)."""
    import hashlib

    now = sources_digests(part)
    was = rec.get("sources")
    if isinstance(was, str):
        committed = _dated(rec, part)
        if committed is None:
            raise SystemExit(
                f"mutation: part {part}: no commit has the files {rec['commit']} judged: run the whole part"
            )
        was = {name: hashlib.sha256(text).hexdigest() for name, text in committed.items()}
    elif was is None:
        diff = subprocess.run(
            ["git", "diff", "--name-only", rec["commit"].removesuffix("+changes"), "--", *PARTS[part][0]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        return sorted(diff)
    return sorted(name for name in set(now) | set(was) if now.get(name) != was.get(name))


def dotted(module: str) -> str:
    """``analysis/audit/designs.py`` -> ``analysis.audit.designs`` (a package's ``__init__.py``: the package)."""
    return module.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def _run_for(command: list[str], work: Path, env: dict[str, str], minutes: float | None) -> int:
    """Run ``command`` in ``work``; after ``minutes`` (None: no limit) stop it and its forked mutants: 0 then."""
    import signal

    proc = subprocess.Popen(command, cwd=work, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=None if minutes is None else 60 * minutes)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        return 0


def rejudge(
    part: str,
    work: Path,
    children: int,
    untested: list[str] | None = None,
    minutes: float | None = None,
    whole: list[str] | None = None,
) -> dict[str, Any]:
    """Run mutmut again on the survivors of the part's record only (after tests were added) and fold the new
    verdicts into it: the record's killed mutants stay killed. A module changed since the record (its digest,
    uncommitted changes included) and the modules named in ``whole`` are run whole instead, and their counts and
    survivors replaced by this run's (dated in the record's ``run_whole`` by the commit the copy was made from); a changed file that is not a module (the registry, a table of the paper's
    values) is read by every mutant, so the part must run whole.
    ``untested``: name patterns (fnmatch) of mutants the record counts as reached by no test or not yet run (a
    stopped part), judged too; those the run judged before it was stopped are folded in, the rest stay as they were.
    ``minutes``: stop mutmut after this long and fold in what it judged (a module run whole: its mutants not
    reached count as not yet run)."""
    from fnmatch import fnmatch

    path = RECORDS / f"{part}.json"
    rec = json.loads(path.read_text())
    changed = changed_files(rec, part)
    data = [name for name in changed if not name.endswith(".py")]
    if data:
        raise SystemExit(f"mutation: part {part}: {', '.join(data)} changed since {rec['commit']}: run the whole part")
    anew = sorted(set(changed) | set(whole or []))
    names = [s["mutant"] for s in rec["survivors"] if module_of(s["mutant"]) not in anew]
    copied = commit()  # what the copy below holds: the commit a verdict is dated by
    shutil.rmtree(work, ignore_errors=True)  # a fresh copy: the tests added since are what judges
    prepare(part, work)
    env = _one_thread_env()
    patterns = untested or []
    run = ["mutmut", "run", "--max-children", str(children), *names, *patterns, *(f"{dotted(m)}.x*" for m in anew)]
    returncode = _run_for(run, work, env, minutes)
    results = _results(work)
    if minutes is not None:  # a stopped run: the survivors it did not reach again stay survivors
        names = [n for n in names if results.get(n) not in (None, "not checked")]
    extra = sorted(  # the record's untested or not yet run mutants that this run judged (a stopped run: some)
        n
        for n in results
        if n not in names
        and module_of(n) not in anew
        and any(fnmatch(n, p) for p in patterns)
        and results[n] != "not checked"
    )
    if returncode != 0 or any(results.get(n) in (None, "not checked") for n in names):
        raise SystemExit(f"mutation: part {part}: mutmut run failed (exit {returncode}); the record is unchanged")
    equivalent = _equivalents()
    survivors = []
    for name in [*names, *extra]:
        counts = rec["modules"][module_of(name)]
        was = "survived" if name in names else "no tests" if counts.get("no tests", 0) else "not checked"
        if counts.get(was, 0) < 1:
            raise SystemExit(f"mutation: part {part}: the record counts no {was!r} mutant of {module_of(name)}")
        counts[was] -= 1
        kind = "equivalent" if results[name] == "survived" and name in equivalent else results[name]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "survived":
            survivors.append({"mutant": name, "diff": _diff(work, name)})
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    for module in anew:  # run whole: this run's counts and survivors replace the record's
        rec["modules"].pop(module, None)
        rec.setdefault("run_whole", {})[module] = {"commit": copied, "date": today}
    for name, status in sorted(results.items()):
        if module_of(name) in anew:
            counts = rec["modules"].setdefault(module_of(name), {})
            kind = "equivalent" if status == "survived" and name in equivalent else status
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "survived":
                survivors.append({"mutant": name, "diff": _diff(work, name)})
    judged = set(names) | set(extra)
    rec["survivors"] = [
        s for s in rec["survivors"] if s["mutant"] not in judged and module_of(s["mutant"]) not in anew
    ] + survivors
    rec["sources"] = sources_digests(part, work)
    rec["rejudged"] = {
        "commit": copied,
        "date": today,
        "mutants": len(names) + len(extra) + sum(module_of(n) in anew for n in results),
        "tests": PARTS[part][1],
        **({"whole": anew} if anew else {}),
    }
    path.write_text(json.dumps(rec, indent=1) + "\n")
    return rec


def apply_equivalents(path: Path) -> None:
    """Count a record's survivors listed in ``equivalent.yaml`` since the record was written as equivalent."""
    equivalent = _equivalents()
    rec = json.loads(path.read_text())
    listed = [s for s in rec["survivors"] if s["mutant"] in equivalent]
    if not listed:
        return
    for s in listed:
        counts = rec["modules"][module_of(s["mutant"])]
        counts["survived"] -= 1
        counts["equivalent"] = counts.get("equivalent", 0) + 1
    rec["survivors"] = [s for s in rec["survivors"] if s["mutant"] not in equivalent]
    path.write_text(json.dumps(rec, indent=1) + "\n")


def score(counts: dict[str, int]) -> tuple[int, int, float]:
    """``(killed, judged, share)``: killed (and timeouts, which a test run ends) over every mutant but the
    equivalent, skipped and untested-by-design ones."""
    killed = counts.get("killed", 0) + counts.get("timeout", 0)
    judged = killed + counts.get("survived", 0) + counts.get("no tests", 0) + counts.get("suspicious", 0)
    return killed, judged, killed / judged if judged else float("nan")


def report() -> str:
    """``benchmarks/MUTATION.md`` from every part's record."""
    lines = [
        "# Mutation score of the code that decides the science",
        "",
        "Produced by `python -m benchmarks.mutation` (mutmut 3; see its docstring for how a part runs). Score = "
        "mutants killed (a judging test failed, or timed out) / mutants judged (all but the equivalent ones listed "
        "in `benchmarks/mutation/equivalent.yaml` with why, and those mutmut skips); a mutant that no test reaches "
        "counts as a survivor; a part stopped before the end says how many of its mutants were not yet run (they are "
        "in no count).",
        "",
        "| part | module | killed | judged | score | equivalent | not yet run | commit, date |",
        "|---|---|---|---|---|---|---|---|",
    ]
    total_k = total_j = 0
    for path in sorted(RECORDS.glob("*.json")):
        apply_equivalents(path)
        rec = json.loads(path.read_text())
        for module, counts in sorted(rec["modules"].items()):
            k, j, s = score(counts)
            total_k, total_j = total_k + k, total_j + j
            whole = rec.get("run_whole", {}).get(module)  # a module run whole again since the part's run
            when = f"run whole at {whole['commit']}, {whole['date']}" if whole else f"{rec['commit']}, {rec['date']}"
            rejudged = rec.get("rejudged")
            if rejudged and (not whole or (whole["commit"], whole["date"]) != (rejudged["commit"], rejudged["date"])):
                when += f"; survivors re-judged at {rejudged['commit']}, {rejudged['date']}"
            lines.append(
                f"| {rec['part']} | `{module}` | {k} | {j} | {s:.1%} | {counts.get('equivalent', 0)} | "
                f"{counts.get('not checked', 0)} | {when} |"
            )
    if total_j:
        lines += ["", f"All parts: {total_k} of {total_j} judged mutants killed ({total_k / total_j:.1%})."]
    survivors = [
        (json.loads(p.read_text())["part"], s)
        for p in sorted(RECORDS.glob("*.json"))
        for s in json.loads(p.read_text())["survivors"]
    ]
    if survivors:
        lines += ["", "## Survivors", ""]
        lines += [f"- `{s['mutant']}` ({part})" for part, s in survivors]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mutation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=[*PARTS, "all"], help="the part to run")
    parser.add_argument("--work", help="working copy (default mutation/<part>)")
    parser.add_argument("--children", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--record-only", action="store_true", help="write the part's record from its copy, run nothing")
    parser.add_argument(
        "--rejudge", action="store_true", help="run the part's recorded survivors only, after tests were added"
    )
    parser.add_argument("--minutes", type=float, help="with --rejudge: stop after this long, keep what was judged")
    parser.add_argument(
        "--untested",
        nargs="+",
        metavar="PATTERN",
        help="with --rejudge: also the mutants matching these names (fnmatch) that the record counts as untested or not run",
    )
    parser.add_argument(
        "--whole",
        nargs="+",
        metavar="MODULE",
        help="with --rejudge: run these modules (paths) whole and replace their counts (a module changed since the "
        "record is run whole anyway)",
    )
    parser.add_argument("--report", action="store_true", help="rewrite benchmarks/MUTATION.md from the records")
    args = parser.parse_args(argv)
    if shutil.which("mutmut") is None:
        print("mutation: mutmut is not installed (pip install -e '.[mutation]')", file=sys.stderr)
        return 2
    for part in PARTS if args.part == "all" else [args.part] if args.part else []:
        work = Path(args.work) if args.work and args.part != "all" else ROOT / "mutation" / part
        if args.rejudge:
            rec = rejudge(part, work, args.children, args.untested, args.minutes, args.whole)
        else:
            rec = record(part, work) if args.record_only else run_part(part, work, args.children)
        for module, counts in rec["modules"].items():
            k, j, s = score(counts)
            print(f"{part}: {module}: {k}/{j} killed ({s:.1%})")
    if args.report or args.part:
        REPORT.write_text(report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
