"""Where the workflow's time goes: a breakdown by job kind of one finished results folder.

``python -m benchmarks.breakdown RESULTS --elapsed SECONDS --cores N [--record NAME]`` reads the
per-job timings Snakemake recorded (the rules' ``benchmark:`` files under
``RESULTS/benchmarks/``) and the runs' own timings (``summary.json``), and prints a
Markdown table: per job kind, the jobs, their summed wall time and its share of the
lane time (elapsed x cores); with ``--record NAME`` it also keeps the table, with what
produced it, as ``benchmarks/breakdown/NAME.md``, which ``python -m benchmarks`` copies
into ``benchmarks/RESULTS.md`` (a measurement of a whole workflow is not repeated by
the benchmark script: it takes the workflow's time). A run job (one process training
one or several runs, see ``runs_per_job``) has its wall time split into what its runs
timed (training, evaluation with the invertibility checks, loading cached features)
and the rest of the process (start-up and imports, writing its outputs). Lane time no
job used is Snakemake's own (scheduling, job start) or idle cores at the ends. Below the
table, the task-0 training that runs repeated bit for bit (:func:`repeated_task0`): what
sharing identical training prefixes across runs could save.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

KINDS = {
    "synth": "dataset generation",
    "features": "feature extraction",
    "run": "run jobs",
    "mlflow_init": "MLflow store",
    "track": "MLflow logging",
    "all_tables": "analysis (tables, figures, audit)",
}


def job_walls(results: Path) -> pd.DataFrame:
    """One row per benchmarked job: ``kind``, ``job`` (file stem) and ``seconds`` (Snakemake's ``s``)."""
    rows = []
    folder = results / "benchmarks"
    for path in sorted(folder.glob("**/*.tsv")):
        frame = pd.read_csv(path, sep="\t")
        rows.append(
            {"kind": path.relative_to(folder).parts[0], "job": path.stem, "seconds": float(frame["s"].iloc[-1])}
        )
    return pd.DataFrame(rows, columns=["kind", "job", "seconds"])


def _job_runs(results: Path) -> dict[str, list[str]]:
    """``{training job: [run id, ...]}`` from the plan record (``RESULTS/plan.json``); a job named
    after its one run (results of earlier versions, one run per job) maps to itself."""
    try:
        return json.loads((results / "plan.json").read_text()).get("jobs", {})
    except (OSError, ValueError):
        return {}


def run_split(results: Path, walls: pd.DataFrame) -> dict[str, float]:
    """Summed seconds of the run jobs: training, evaluation, other timed work, and the process around it."""
    out = {
        "training": 0.0,
        "evaluation": 0.0,
        "features loaded, checks, records": 0.0,
        "process start-up and outputs": 0.0,
    }
    jobs = _job_runs(results)
    for job, wall in zip(walls["job"], walls["seconds"]):
        timed = 0.0
        for run_id in jobs.get(job, [job]):
            summary_path = results / "runs" / run_id / "summary.json"
            if not summary_path.is_file():
                continue
            timings = json.loads(summary_path.read_text())["timings"]
            out["training"] += timings["training"]
            out["evaluation"] += timings["evaluation"]
            out["features loaded, checks, records"] += timings["total"] - timings["training"] - timings["evaluation"]
            timed += timings["total"]
        if timed:
            out["process start-up and outputs"] += wall - timed
    return out


def repeated_task0(results: Path) -> tuple[int, float]:
    """Task-0 training that a run repeated bit for bit: ``(runs, seconds)``.

    Runs whose task 0 ended in the same tensors (the summary's task-0 ``fingerprints``: the base's and every
    task's digests) after the same epoch losses trained the same prefix; of each such group of ``n`` runs,
    ``n - 1`` trainings are repeats, costed at the group's mean task-0 training seconds. That is what
    sharing identical training prefixes across runs could save, measured on finished runs rather than
    predicted from their configurations. Runs without a trained flow (no fingerprints or no training) count
    for nothing.
    """
    groups: dict[str, list[float]] = {}
    for path in sorted((results / "runs").glob("*/summary.json")):
        summary = json.loads(path.read_text())
        per_task, seconds = summary.get("per_task") or [], summary["timings"].get("training_per_task") or []
        if not per_task or not seconds or not per_task[0].get("fingerprints") or not seconds[0]:
            continue
        key = json.dumps([per_task[0]["fingerprints"], per_task[0]["epoch_losses"]], sort_keys=True)
        groups.setdefault(key, []).append(float(seconds[0]))
    repeats = [(len(g) - 1, (len(g) - 1) * sum(g) / len(g)) for g in groups.values() if len(g) > 1]
    return sum(n for n, _ in repeats), sum(s for _, s in repeats)


def table(results: Path, elapsed: float, cores: int) -> str:
    """The breakdown as Markdown (see the module docstring)."""
    walls = job_walls(results)
    lane = elapsed * cores
    lines = ["| job kind | jobs | wall time summed (s) | share of lane time |", "|---|---|---|---|"]
    for kind, group in walls.groupby("kind", sort=False):
        lines.append(
            f"| {KINDS.get(kind, kind)} | {len(group)} | {group['seconds'].sum():,.0f} | "
            f"{100 * group['seconds'].sum() / lane:.1f} % |"
        )
        if kind == "run":
            for part, seconds in run_split(results, group).items():
                lines.append(f"| - of which {part} | | {seconds:,.0f} | {100 * seconds / lane:.1f} % |")
    rest = lane - walls["seconds"].sum()
    lines.append(
        f"| Snakemake's own and idle cores (lane time no job used) | | {rest:,.0f} | {100 * rest / lane:.1f} % |"
    )
    lines.append(f"| lane time: {elapsed:,.0f} s elapsed x {cores} cores | {len(walls)} | {lane:,.0f} | 100 % |")
    runs, seconds = repeated_task0(results)
    lines.append("")
    lines.append(
        f"Task-0 training repeated bit for bit (the same task-0 tensors after the same losses as another run's): "
        f"{runs} runs, {seconds:,.0f} s ({100 * seconds / lane:.1f} % of the lane time)."
    )
    return "\n".join(lines) + "\n"


RECORDS = Path(__file__).resolve().parent / "breakdown"


def records() -> str:
    """Every kept breakdown (``benchmarks/breakdown/*.md``), for ``benchmarks/RESULTS.md``."""
    kept = sorted(RECORDS.glob("*.md"))
    if not kept:
        return ""
    return "## Where the main command's time goes\n\n" + "\n".join(p.read_text() for p in kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.breakdown", description=__doc__)
    parser.add_argument("results", help="a finished results folder (the workflow's `results`)")
    parser.add_argument("--elapsed", type=float, required=True, help="the workflow's wall time in seconds")
    parser.add_argument("--cores", type=int, required=True, help="the --cores it ran with")
    parser.add_argument("--record", help="keep the table as benchmarks/breakdown/RECORD.md")
    parser.add_argument("--what", default="", help="one line: what produced the measurement (command, commit, machine)")
    args = parser.parse_args(argv)
    text = table(Path(args.results), args.elapsed, args.cores)
    print(text, end="")
    if args.record:
        from moleflow.io import write_text_atomic

        write_text_atomic(RECORDS / f"{args.record}.md", f"### {args.record}\n\n{args.what}\n\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
