"""``moleflow plan``: a workflow configuration's runs, and the grid's smoke check."""

from __future__ import annotations

import argparse

from moleflow.cli.common import positive_int, set_threads


def _cmd_plan(args: argparse.Namespace) -> int:
    from collections import Counter

    from moleflow.config import read_workflow_config
    from moleflow.errors import ConfigError
    from moleflow.planning import plan_runs
    from moleflow.planning.plan import check_studies

    _check_smoke_options(args)
    workflow = read_workflow_config(args.configfile)  # its errors name the file already
    try:
        runs = plan_runs(workflow)
        if args.studies:
            check_studies(workflow, args.studies)
    except ConfigError as exc:
        raise ConfigError(f"{args.configfile}: {exc}") from None
    if args.smoke:  # before any work: the device and the report's file
        from moleflow.device import resolve_device
        from moleflow.io import ensure_writable_file

        resolve_device(args.device, "--device")
        if args.json:
            ensure_writable_file(args.json, "--json")
    per_study = Counter(study for run in runs.values() for study in run.studies)
    for study, count in per_study.items():
        datasets = sorted({r.dataset for r in runs.values() if study in r.studies})
        print(f"{study}: {count} runs ({', '.join(datasets)})")
    print(f"total: {len(runs)} distinct runs")
    if not args.smoke:
        return 0
    return _smoke(args)


def _check_smoke_options(args: argparse.Namespace) -> None:
    """The smoke check's options are refused without ``--smoke`` (they would be ignored silently)."""
    from moleflow.errors import ConfigError

    given = [
        option
        for option, value in (
            ("--json", args.json),
            ("--studies", args.studies),
            ("--threads", args.threads),
            ("--jobs", args.jobs),
            ("--every-group", args.every_group),
        )
        if value
    ] + (["--device"] if args.device != "auto" else [])
    if given and not args.smoke:
        raise ConfigError(f"{', '.join(given)} only apply to the smoke check: add --smoke, or leave them out")


def _hours(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.0f} min"


def _jobs(args: argparse.Namespace) -> tuple[int, int]:
    """``(processes, torch threads each)`` of the smoke check: ``--jobs`` (default: the cores over ``--threads``,
    one thread each when unset)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = args.threads or 1
    jobs = args.jobs or max(1, cores // threads)
    return jobs, threads


def _smoke(args: argparse.Namespace) -> int:
    from moleflow.config import read_workflow_config
    from moleflow.io import write_json_atomic
    from moleflow.planning import WorkflowPlan
    from moleflow.planning.smoke import smoke

    jobs, threads = _jobs(args)
    set_threads(args)  # this process's (the feature extraction's, and the checks' when they run here)
    report = smoke(
        WorkflowPlan.from_config(read_workflow_config(args.configfile)),
        device=args.device,
        studies=args.studies,
        jobs=jobs,
        threads=threads,
        every_group=args.every_group,
    )
    est, failed = report["estimate"], [g for g in report["groups"] if g["status"] == "failed"]
    covered = sum(g["status"] == "covered" for g in report["groups"])
    jobs_said = (
        f", summed over jobs of {report['threads']} thread(s) as checked, {report['jobs']} at a time"
        if report["jobs"] > 1
        else ""
    )
    missing = (
        f"; {est['runs_without_estimate']} run(s) without one (dataset sizes unknown or check failed)"
        if est["runs_without_estimate"]
        else ""
    )
    print(
        f"smoke: {len(report['groups']) - len(failed)} of {len(report['groups'])} groups ok"
        f"{f' ({covered} covered by another of their code path)' if covered else ''} in {report['seconds']:.0f} s on "
        f"{report['device']}; the grid on this device: about {_hours(est['train_eval_hours'])} of training and "
        f"evaluation (an upper estimate{jobs_said}) and {_hours(est['extraction_hours'])} of feature extraction{missing}"
    )
    if args.json:
        write_json_atomic(args.json, report)
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    """The ``plan`` subcommand."""
    plan = sub.add_parser(
        "plan", help="count the runs a workflow configuration plans, per study (--smoke: check each kind)"
    )
    plan.add_argument("configfile", help="workflow configuration (config/config.yaml, config/paper.yaml)")
    plan.add_argument(
        "--smoke",
        action="store_true",
        help="run one step of each task kind and one evaluation of every "
        "distinct kind of run at its real shapes on a stand-in dataset; print parameters, peak memory, "
        "step times and the grid's estimated cost on this device (exit 1 if any check fails)",
    )
    plan.add_argument(
        "--device", default="auto", help="(--smoke) device of the checks: auto, cpu, cuda, cuda:1 (default auto)"
    )
    plan.add_argument("--json", help="(--smoke) also write the full report as JSON here")
    plan.add_argument("--studies", nargs="+", metavar="STUDY", help="(--smoke) check only the runs of these studies")
    plan.add_argument(
        "--threads",
        type=positive_int,
        help="(--smoke) torch threads of each check (default: 1 when checks run at once, else torch's, one per core)",
    )
    plan.add_argument(
        "--jobs",
        type=positive_int,
        help="(--smoke) groups checked at once on the CPU, each in its own process (default: the cores over --threads)",
    )
    plan.add_argument(
        "--every-group",
        action="store_true",
        help="(--smoke) check every group, also those whose code path a larger group runs",
    )
    plan.set_defaults(func=_cmd_plan)
