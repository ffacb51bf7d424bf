"""``python -m analysis [--results results] [--plan FILE | --config FILE] [--docs DIR]``: runs.csv, every table and
figure (and the documentation's generated page).

The analysis reads the plan record (``results/plan.json``, written by the workflow:
which runs each study and variant needs) and the run folders' ``summary.json`` files;
nothing else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from analysis.audit import audit
from analysis.audit.figure import effects_figure
from analysis.collect import collect, load_summaries, run_configs
from analysis.figures import _save
from analysis.figures import build_all as build_figures
from analysis.render import to_html, write
from analysis.table_registry import build_all
from moleflow.config import read_workflow_config
from moleflow.errors import MoleflowError
from moleflow.io import write_json_atomic, write_text_atomic

COMPLETE = "complete.json"


def _mark_completeness(frame: pd.DataFrame, marker: Path) -> int:
    """Write ``tables/complete.json`` when every planned run has a summary, remove it otherwise.

    The workflow's ``all_tables`` rule lists it as an output: tables drawn from a partial
    folder (``python -m analysis`` run by hand after a killed job) never pass for up to
    date, so the next ``snakemake all_tables`` still runs the missing jobs.
    """
    runs = frame.drop_duplicates("run_id")
    missing = int((runs["status"] == "missing").sum())
    if missing:
        marker.unlink(missing_ok=True)
    else:
        write_json_atomic(
            marker, {"runs": int(len(runs)), "status": runs["status"].value_counts().sort_index().to_dict()}
        )
    return missing


def read_json(path: str | Path, what: str) -> dict:
    """A JSON record; one line naming the file when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise MoleflowError(
            f"{what}: cannot read {path} ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


PLAN_KEYS = ("results", "datasets", "studies", "runs")


def _checked_plan(record: object, path: str | Path) -> dict:
    """A plan record as the workflow writes it; one line naming the file when it is not one."""
    if not isinstance(record, dict) or any(key not in record for key in PLAN_KEYS):
        raise MoleflowError(
            f"{path}: not a plan record (it needs {', '.join(PLAN_KEYS)}; the workflow writes results/plan.json)"
        )
    return record


def _plan_record(args: argparse.Namespace) -> dict:
    """The plan the tables are drawn from: ``--plan``, else planned now from ``--config``, else the results
    folder's ``plan.json`` (the workflow writes it), else planned from ``config/config.yaml``."""
    if args.plan:
        return _checked_plan(read_json(args.plan, "--plan"), args.plan)
    default = Path(args.results or "results") / "plan.json"
    if not args.config and default.is_file():
        return _checked_plan(read_json(default, "plan record"), default)
    from moleflow.planning import WorkflowPlan  # only to plan a folder that has no record of its plan

    config = Path(args.config or "config/config.yaml")
    if not args.config and not config.is_file():
        raise MoleflowError(
            f"{default.parent} holds no plan.json (the record the workflow writes) and there is no "
            f"{config} to plan from; give --plan FILE or --config FILE"
        )
    return WorkflowPlan.from_config(read_workflow_config(config)).record()


def _warn_foreign_runs(plan: dict, results: str | Path) -> None:
    """Say so when the results folder holds run folders and none of them belongs to the plan (a plan of another config)."""
    from analysis.collect import recorded_runs

    runs = Path(results) / "runs"
    present = {p.name for p in runs.iterdir() if p.is_dir()} if runs.is_dir() else set()
    planned = set(recorded_runs(plan))
    if present and not present & planned:
        print(
            f"analysis: warning: none of the {len(present)} run folder(s) under {runs} belongs to this plan "
            f"({len(planned)} planned runs): is the plan from another configuration?",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    parser.add_argument(
        "--plan", help="the workflow's plan record (default: RESULTS/plan.json, which the workflow writes)"
    )
    parser.add_argument("--config", help="plan from this workflow configuration instead (a folder without plan.json)")
    parser.add_argument("--results", help="results folder (default: the plan's `results`)")
    parser.add_argument(
        "--docs",
        metavar="DIR",
        help="also write DIR/default.md: the headline tables, the verdict counts and the claims figure with where "
        "they come from (the documentation's generated page: docs/generated)",
    )
    args = parser.parse_args(argv)
    try:
        if args.docs:  # before any work: the tables must not be written and the page then lost
            from moleflow.io import ensure_writable_dir

            ensure_writable_dir(args.docs, "--docs")
        plan = _plan_record(args)
        results = args.results or plan["results"]
        _warn_foreign_runs(plan, results)
        summaries = load_summaries(plan, results)  # each summary.json is read once
        frame = collect(plan, results, summaries)
        write_text_atomic(
            f"{results}/runs.csv", frame.to_csv(index=False, float_format="%.12g")
        )  # exact enough for any count or statistic
        index = []
        audit_tables, outcomes, parts = audit(frame, plan, summaries)
        write_text_atomic(f"{results}/tables/claims_parts.csv", parts.to_csv(index=False, float_format="%.12g"))
        silent = sorted(s for s, keys in (plan.get("tables") or {}).items() if not keys and s in set(frame["study"]))
        if silent:  # a study with runs that lists no table (the workflow schema's studies.*.tables)
            print(
                f"analysis: note: {', '.join(silent)} list no tables (studies.<name>.tables): none built",
                file=sys.stderr,
            )
        for spec in build_all(frame, plan, run_configs(plan, results, summaries)) + audit_tables:
            files = write(spec, f"{results}/tables")
            index.append(
                {"id": spec.table_id, "paper_table": spec.paper_table, "title": spec.title, "files": " ".join(files)}
            )
            # the pages of the Snakemake report (snakemake all_tables --report results/report.html)
            page = "audit" if spec in audit_tables else "tables"
            write_text_atomic(f"{results}/report/{page}/{spec.table_id}.html", to_html(spec))
        write_text_atomic(
            f"{results}/tables/index.csv",
            pd.DataFrame(index, columns=["id", "paper_table", "title", "files"]).to_csv(index=False),
        )
        figures = build_figures(frame, results, plan, summaries)
        effects = effects_figure(outcomes)
        if effects is not None:
            figures.append(
                {
                    "id": "claims_effects",
                    "title": "Claims audit: tested effects and the paper's values",
                    "files": " ".join(_save(effects, Path(results) / "figures", "claims_effects")),
                }
            )
        write_text_atomic(
            f"{results}/figures/index.csv", pd.DataFrame(figures, columns=["id", "title", "files"]).to_csv(index=False)
        )
        missing = _mark_completeness(frame, Path(results) / "tables" / COMPLETE)
        if args.docs:
            from analysis.docs_page import write_docs

            print(f"documentation page -> {write_docs(results, args.docs)}")
        print(
            f"{len(frame)} rows -> {results}/runs.csv; {len(index)} tables -> {results}/tables/; "
            f"{len(figures)} figures -> {results}/figures/"
            + (f"; partial: {missing} planned run(s) have no summary yet" if missing else "")
        )
        return 0
    except MoleflowError as exc:
        print(f"analysis: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
