"""The ``moleflow`` command line.

Subcommands::

    moleflow synth OUT [--seed S] [--size PX] [--categories ...]
    moleflow data check --dataset {mvtec,visa,folder} --root DIR [--categories ...] [--json]
    moleflow data baseline --dataset {mvtec,visa,folder} --root DIR [--categories ...]
    moleflow features extract [--config FILE] [--set key=value ...] [--dataset K --root DIR] [--categories ...]
    moleflow run [--profile cpu] [--config FILE] [--set key=value ...] --out RUN_DIR
    moleflow run-many --runs-json '{"RUN_DIR": {config}, ...}'
    moleflow predict --run RUN_DIR IMAGE_OR_FOLDER ... --out DIR [--task T] [--threshold X | --normal DIR]
    moleflow config show [--profile cpu] [--config FILE] [--set key=value ...]

A problem with the user's input is printed as one line (``moleflow: error: ...``)
with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator

from moleflow.cli import config, data, features, plan, predict, run, track
from moleflow.errors import MoleflowError

#: The command groups, in the order ``moleflow --help`` lists them.
GROUPS = (data, features, run, predict, track, plan, config)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from moleflow import __version__

    parser = argparse.ArgumentParser(
        prog="moleflow",
        description="MoLE-Flow continual anomaly detection harness (the method as implemented: docs/method.md)",
    )
    parser.add_argument("--version", action="version", version=f"moleflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    for group in GROUPS:
        group.register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (what SLURM and Snakemake send to stop a job), handled as Ctrl-C: the run is ``interrupted``."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While a command runs, SIGTERM raises :class:`Terminated` (a :class:`KeyboardInterrupt`), so a run stopped by
    the scheduler records ``interrupted`` and resumes, as after Ctrl-C; the previous handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``moleflow`` console script."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with _sigterm_as_interrupt():
            return func(args)
    except MoleflowError as exc:
        print(f"moleflow: error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        print("moleflow: terminated (SIGTERM); a rerun resumes after the last finished task", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("moleflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
