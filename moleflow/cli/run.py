"""``moleflow run`` and ``moleflow run-many``: continual runs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from moleflow.cli.common import add_config_args, positive_int, print_outcome, resolve, set_threads
from moleflow.data.layouts import LAYOUTS
from moleflow.errors import MoleflowError


def _cmd_run(args: argparse.Namespace) -> int:
    from moleflow.continual import run

    config = resolve(args)
    set_threads(args)
    summary = run(config, args.out, progress=not args.quiet, log=lambda line: print(line, flush=True))
    print_outcome(summary, args.out)
    return 0


def _runs_json(text: str) -> dict[str, dict]:
    """``--runs-json``: ``{"RUN_DIR": {config}, ...}`` (or ``@FILE`` holding it)."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise MoleflowError(f"--runs-json: cannot read {text[1:]} ({exc.strerror})") from None

    def unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise MoleflowError(
                f"--runs-json: {', '.join(twice)} given twice in one object (one of them would be dropped silently)"
            )
        return dict(pairs)

    try:
        runs = json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as exc:
        raise MoleflowError(f"--runs-json is not valid JSON ({exc})") from None
    if not isinstance(runs, dict) or not all(isinstance(c, dict) for c in runs.values()):
        raise MoleflowError('--runs-json must be one JSON object {"RUN_DIR": {config}, ...}')
    same: dict[Path, str] = {}
    for out in runs:
        where = Path(out).expanduser().resolve()
        if where in same:
            raise MoleflowError(f"--runs-json: {same[where]!r} and {out!r} are the same folder ({where})")
        same[where] = out
    return runs


def _cmd_run_many(args: argparse.Namespace) -> int:
    """Several runs one after the other in this process: the start-up (imports) is paid once.

    Every run is checked before any trains; a run whose directory already holds its finished
    summary is skipped; a run that fails is reported and the others still run (exit status 1).
    """
    import traceback

    from moleflow.config import config_hash, defaults, load_config, merge
    from moleflow.continual import run
    from moleflow.continual.checkpoint import check_run_dir

    runs = {
        out: load_config(None, [], base=merge(defaults(), given)) for out, given in _runs_json(args.runs_json).items()
    }
    for out, config in runs.items():
        check_run_dir(Path(out), config)
    set_threads(args)
    failed = []
    for k, (out, config) in enumerate(runs.items(), 1):
        prefix = f"[{k}/{len(runs)} {Path(out).name}] "
        try:
            done = json.loads((Path(out) / "summary.json").read_text())
            if done.get("config_hash") == config_hash(config) and done.get("status") in ("ok", "diverged"):
                print(f"{prefix}already finished ({done['status']}) -> {out}/summary.json", flush=True)
                continue
        except (OSError, ValueError):
            pass
        start = time.perf_counter()
        try:
            summary = run(
                config, out, progress=not args.quiet, log=lambda line, prefix=prefix: print(prefix + line, flush=True)
            )
        except MoleflowError as exc:
            print(f"{prefix}failed: {exc}", flush=True)
            failed.append(out)
            continue
        except Exception:  # a bug in one run must not lose the others: report it whole and go on
            print(f"{prefix}failed with a traceback:\n{traceback.format_exc()}", flush=True)
            failed.append(out)
            continue
        print_outcome(summary, out, prefix)
        print(f"{prefix}{time.perf_counter() - start:.1f} s in this process", flush=True)
    if failed:
        print(f"moleflow: error: {len(failed)} of {len(runs)} runs failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """The ``run`` and ``run-many`` subcommands."""
    runp = sub.add_parser("run", help="one continual run: train every task, evaluate, write RUN_DIR/summary.json")
    add_config_args(runp)
    runp.add_argument("--dataset", choices=LAYOUTS, help="shortcut for --set dataset.kind=...")
    runp.add_argument("--root", help="shortcut for --set dataset.root=...")
    runp.add_argument("--config-json", help="the whole configuration as one JSON object (what the workflow passes)")
    runp.add_argument("--out", required=True, help="run directory (a rerun resumes after its last finished task)")
    runp.add_argument(
        "--quiet", action="store_true", help="no progress bars (one line per task and the resume line stay)"
    )
    runp.add_argument(
        "--threads",
        type=positive_int,
        help="torch threads (default: torch's, one per core); the workflow passes the job's Snakemake threads",
    )
    runp.set_defaults(func=_cmd_run)

    many = sub.add_parser(
        "run-many", help="several runs one after the other in one process (what the workflow's training jobs call)"
    )
    many.add_argument(
        "--runs-json",
        required=True,
        metavar="JSON",
        help='{"RUN_DIR": {the whole configuration}, ...} (or @FILE holding it); finished runs are skipped',
    )
    many.add_argument("--quiet", action="store_true", help="no progress bars (one line per task stays)")
    many.add_argument(
        "--threads",
        type=positive_int,
        help="torch threads (default: torch's, one per core); the workflow passes the job's Snakemake threads",
    )
    many.set_defaults(func=_cmd_run_many)
