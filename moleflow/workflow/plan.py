"""Expand the workflow configuration into the runs the paper's tables need.

A study is a named list of variants (each a set of run-config overrides) crossed
with the seeds, the task orders and the datasets it names. Every planned run is
resolved into a full run configuration (profile <- workflow base <- dataset <-
study <- variant <- seed and order) and keyed by the hash of that configuration, so a run
that two studies need is one job, and changing one value re-runs only the runs it
changes. Unknown run-config keys fail here, at planning time, naming the study.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moleflow.config import Config, apply_overrides, config_hash, load_config, load_profile
from moleflow.errors import ConfigError


@dataclass
class PlannedRun:
    """One continual run of the workflow.

    Attributes:
        run_id: hash of ``config`` (the run directory's name).
        config: the resolved run configuration.
        dataset: workflow dataset name.
        seed: the run's seed.
        order: task-order label (``alphabetical``, ``random-3``...).
        memberships: ``(study, variant)`` pairs that need this run.
    """

    run_id: str
    config: Config
    dataset: str
    seed: int
    order: str
    memberships: list[tuple[str, str]] = field(default_factory=list)

    @property
    def studies(self) -> list[str]:
        return sorted({s for s, _ in self.memberships})


def _apply(config: Config, overrides: dict[str, Any], where: str) -> Config:
    try:
        return apply_overrides(config, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _orders(study: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    orders = study.get("orders") or ["alphabetical"]
    out = []
    for order in orders:
        if order in ("alphabetical", "given"):
            out.append((order, {"task_order": order}))
        elif isinstance(order, str) and order.startswith("random-"):
            out.append((order, {"task_order": "random", "order_seed": int(order.split("-", 1)[1])}))
        else:
            raise ConfigError(f"unknown task order {order!r}: use alphabetical, given or random-<seed>")
    return out


def dataset_config(workflow: dict[str, Any], name: str) -> Config:
    """Run configuration of dataset ``name`` before any study variant."""
    base = workflow.get("base", {})
    config = load_profile(base["profile"]) if base.get("profile") else load_config()
    config = _apply(config, base.get("set", {}), "base.set")
    ds = workflow["datasets"][name]
    config = _apply(config, {"dataset.kind": ds["kind"], "dataset.root": ds["root"],
                             "dataset.categories": list(ds.get("categories") or []),
                             "features.cache_dir": workflow.get("cache", "results/cache/features")}, f"datasets.{name}")
    return _apply(config, ds.get("set", {}), f"datasets.{name}.set")


def plan_runs(workflow: dict[str, Any], studies: list[str] | None = None) -> dict[str, PlannedRun]:
    """Every run of the selected studies (all when ``None``), keyed by run id."""
    runs: dict[str, PlannedRun] = {}
    for study_name, study in workflow["studies"].items():
        if studies is not None and study_name not in studies:
            continue
        datasets = study.get("datasets") or list(workflow["datasets"])
        seeds = study.get("seeds", workflow.get("seeds", [0, 1, 2]))
        for dataset in datasets:
            if dataset not in workflow["datasets"]:
                raise ConfigError(f"studies.{study_name}.datasets: unknown dataset {dataset!r}")
            base = dataset_config(workflow, dataset)
            for variant in study["variants"]:
                for order_label, order_set in _orders(study):
                    for seed in variant.get("seeds", seeds):
                        where = f"studies.{study_name}.variants.{variant['name']}"
                        sets = {**study.get("set", {}), **variant.get("set", {}), **order_set, "seed": seed}
                        config = _apply(base, sets, where)
                        run_id = config_hash(config)
                        run = runs.setdefault(run_id, PlannedRun(run_id, config, dataset, seed, order_label))
                        run.memberships.append((study_name, variant["name"]))
    return runs
