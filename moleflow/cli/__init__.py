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
import sys
from collections.abc import Callable

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


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``moleflow`` console script."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except MoleflowError as exc:
        print(f"moleflow: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("moleflow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
