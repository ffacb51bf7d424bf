"""What every command group shares: configuration arguments, threads, the one-line outcome of a run."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from moleflow.errors import MoleflowError


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile", help="start from a named profile of moleflow/configs/ (e.g. cpu: the embedded default)"
    )
    parser.add_argument("--config", help="YAML file of config keys (see moleflow/schemas/config.schema.yaml)")
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one key (repeatable); the value is YAML: features.embed_dim=128, "
        "dataset.categories=[cap,screw] (a list in brackets), scoring.map_sigma=2.5",
    )


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def set_threads(args: argparse.Namespace) -> None:
    """``--threads N``: torch's intra-op threads (the workflow passes what Snakemake gives the job)."""
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def resolve(args: argparse.Namespace) -> dict:
    from moleflow.config import load_config, load_profile

    overrides = list(args.set or [])
    if getattr(args, "dataset", None):
        overrides.append(f"dataset.kind={args.dataset}")
    if getattr(args, "root", None):
        overrides.append(f"dataset.root={args.root}")
    base = load_profile(args.profile) if getattr(args, "profile", None) else None
    if getattr(args, "config_json", None):
        from moleflow.config import defaults, merge

        try:
            given = json.loads(args.config_json)
        except json.JSONDecodeError as exc:
            raise MoleflowError(f"--config-json is not valid JSON ({exc})") from None
        base = merge(base or defaults(), given)
    return load_config(args.config, overrides, base=base)


def print_outcome(summary: dict, out: str | Path, prefix: str = "") -> None:
    mean = summary["mean"]["routed"]
    fmt = lambda v: "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"  # noqa: E731  (the joint flow: no FM)
    forgetting = (
        "no forgetting with one task"
        if len(summary["tasks"]) == 1
        else f"FM(I-AUROC) {fmt(summary['forgetting']['image_auroc']['fm'])}"
    )
    print(
        f"{prefix}{summary['status']}: {summary['tasks_completed']}/{len(summary['tasks'])} tasks; mean routed "
        f"I-AUROC {fmt(mean['image_auroc'])} P-AUROC {fmt(mean['pixel_auroc'])} P-AP {fmt(mean['pixel_ap'])} "
        f"AUPRO {fmt(mean['aupro'])}; routing {fmt(summary['routing_accuracy'])}; "
        f"{forgetting} -> {out}/summary.json",
        flush=True,
    )
