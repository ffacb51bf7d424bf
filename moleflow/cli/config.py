"""``moleflow config show``: the resolved configuration."""

from __future__ import annotations

import argparse

import yaml

from moleflow.cli.common import add_config_args, resolve


def _cmd_config_show(args: argparse.Namespace) -> int:
    print(yaml.safe_dump(resolve(args), sort_keys=False), end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """The ``config`` subcommands."""
    config = sub.add_parser("config", help="configuration tools").add_subparsers(dest="config_command", required=True)
    show = config.add_parser("show", help="print the resolved configuration")
    add_config_args(show)
    show.set_defaults(func=_cmd_config_show)
