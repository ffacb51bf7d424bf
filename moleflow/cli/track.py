"""``moleflow track init|log|study``: the MLflow mirror of run folders."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moleflow.errors import MoleflowError


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise MoleflowError(f"--descriptions-json gives {', '.join(map(repr, twice))} more than once")
    return dict(pairs)


def _descriptions(text: str | None, experiments: list[str]) -> dict[str, str]:
    """``--descriptions-json``: ``{"main (synth)": "what it is", ...}``, each key one of ``experiments``, once."""
    if not text:
        return {}
    try:
        found = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise MoleflowError(f"--descriptions-json is not valid JSON ({exc})") from None
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise MoleflowError('--descriptions-json must be one JSON object {"NAME": "text", ...}')
    unknown = sorted(set(found) - set(experiments))
    if unknown:
        raise MoleflowError(
            f"--descriptions-json describes {', '.join(map(repr, unknown))}, not among the experiments "
            f"({', '.join(experiments)})"
        )
    return found


def _cmd_track_init(args: argparse.Namespace) -> int:
    from moleflow.io import write_json_atomic
    from moleflow.tracking import default_tracking_uri, init_store
    from moleflow.tracking.mlflow_log import experiment_url

    uri = default_tracking_uri(args.results, args.uri)
    descriptions = _descriptions(args.descriptions_json, args.experiments)
    ids = init_store(uri, args.experiments, Path(args.results) / "mlflow-artifacts", descriptions)
    local = "http://127.0.0.1:5000"  # where `mlflow ui --backend-store-uri URI` serves by default
    views = {name: experiment_url(local, experiment_id) for name, experiment_id in ids.items()}
    if args.record:
        write_json_atomic(args.record, {"tracking_uri": uri, "experiments": ids, "headline_views": views})
    print(f"MLflow store {uri}: {len(ids)} experiments; each one's runs with the headline metrics:")
    for name, url in views.items():
        print(f"  {name}: {url}")
    return 0


def _cmd_track_log(args: argparse.Namespace) -> int:
    from moleflow.tracking import default_tracking_uri, log_memberships

    uri = default_tracking_uri(args.results, args.uri)
    memberships = [(spec.partition("=")[0], spec.partition("=")[2]) for spec in args.experiment]
    logged = log_memberships(uri, args.run_dir, memberships, args.record)
    print(f"logged {args.run_dir} to {len(logged)} MLflow experiment(s) at {uri}")
    return 0


def _cmd_track_study(args: argparse.Namespace) -> int:
    from moleflow.io import write_json_atomic
    from moleflow.tracking import default_tracking_uri, log_memberships
    from moleflow.tracking.mlflow_log import run_summary

    uri = default_tracking_uri(args.results, args.uri)
    for spec in args.run:  # every folder checked before the first is logged: a bad one does not leave half a study
        run_summary(spec.partition("=")[0])
    logged = {}
    for spec in args.run:
        run_dir, _, variant = spec.partition("=")
        logged[Path(run_dir).name] = log_memberships(uri, run_dir, [(args.experiment, variant)])[args.experiment]
    if args.record:
        write_json_atomic(args.record, {"tracking_uri": uri, "experiment": args.experiment, "runs": logged})
    print(f"logged {len(logged)} run(s) to MLflow experiment {args.experiment!r} at {uri}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """The ``track`` subcommands."""
    track = sub.add_parser("track", help="MLflow mirror of run directories").add_subparsers(
        dest="track_command", required=True
    )
    tinit = track.add_parser("init", help="create the MLflow store and experiments (once, before any run logs)")
    tinit.add_argument(
        "--experiments",
        nargs="+",
        required=True,
        metavar="NAME",
        help="the experiments to create (one per study and dataset)",
    )
    tinit.add_argument(
        "--descriptions-json",
        metavar="JSON",
        help='{"NAME": "text", ...}: each experiment\'s description (the workflow passes the studies\' own)',
    )
    tinit.set_defaults(func=_cmd_track_init)
    tlog = track.add_parser("log", help="log one run directory")
    tlog.add_argument(
        "--run-dir", required=True, help="a finished run directory (its summary.json and files are logged)"
    )
    tlog.add_argument(
        "--experiment",
        action="append",
        required=True,
        metavar="NAME[=VARIANT]",
        help="an experiment to log it into, with the variant's name (repeatable)",
    )
    tlog.set_defaults(func=_cmd_track_log)
    tstudy = track.add_parser("study", help="log every run of one study and dataset into its experiment (one process)")
    tstudy.add_argument("--experiment", required=True, metavar="NAME", help="the experiment to log into")
    tstudy.add_argument(
        "--run",
        action="append",
        required=True,
        metavar="RUN_DIR=VARIANT",
        help="a run directory and its variant's name (repeatable)",
    )
    tstudy.set_defaults(func=_cmd_track_study)
    for tracker in (tinit, tlog, tstudy):
        tracker.add_argument(
            "--results", default="results", help="results folder (the default store is results/mlflow.db)"
        )
        tracker.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite under --results)")
        tracker.add_argument("--record", help="write a JSON record here")
