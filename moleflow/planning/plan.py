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
from functools import cached_property
from pathlib import Path
from typing import Any

from moleflow.config import Config, apply_overrides, config_hash, load_config, load_profile
from moleflow.errors import ConfigError, MoleflowError


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
    config = _apply(
        config,
        {
            "dataset.kind": ds["kind"],
            "dataset.root": ds["root"],
            "dataset.categories": list(ds.get("categories") or []),
            "features.cache_dir": workflow.get("cache", "results/cache/features"),
        },
        f"datasets.{name}",
    )
    return _apply(config, ds.get("set", {}), f"datasets.{name}.set")


def check_studies(workflow: dict[str, Any], studies: list[str] | None = None) -> None:
    """What the schema cannot say: at least one study, variant names unique within a study (the tables and the
    audit key a study's rows by them: two configurations under one name would be reported as seeds of one), and
    ``studies`` (a selection) naming planned studies.

    Raises:
        ConfigError: one line naming the key.
    """
    planned = workflow.get("studies") or {}
    if not planned:
        raise ConfigError("studies: none; a workflow needs at least one study with at least one variant")
    for name, study in planned.items():
        names = [variant["name"] for variant in study["variants"]]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ConfigError(
                f"studies.{name}.variants: {len(twice)} name(s) given to more than one variant ({', '.join(map(repr, twice))}); "
                "names must be unique within a study, or two configurations are reported as seeds of one"
            )
    unknown = [s for s in studies or [] if s not in planned]
    if unknown:
        raise ConfigError(
            f"--studies: no study {', '.join(map(repr, unknown))} in the configuration (it has {', '.join(planned)})"
        )


def plan_runs(workflow: dict[str, Any], studies: list[str] | None = None) -> dict[str, PlannedRun]:
    """Every run of the selected studies (all when ``None``), keyed by run id."""
    check_studies(workflow, studies)
    runs: dict[str, PlannedRun] = {}
    available = {name: known_categories(workflow, name) for name in workflow["datasets"]}  # each root read once
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
                        _check_categories(config, available[dataset], where, dataset)
                        run_id = config_hash(config)
                        run = runs.setdefault(run_id, PlannedRun(run_id, config, dataset, seed, order_label))
                        run.memberships.append((study_name, variant["name"]))
    return runs


def dataset_categories(workflow: dict[str, Any], name: str) -> list[str]:
    """The categories of workflow dataset ``name``: listed, generated (known before they exist), or on disk
    (a root that is not there is refused, naming it)."""
    from moleflow.data.layouts import list_categories

    ds = workflow["datasets"][name]
    if ds.get("categories"):
        return list(ds["categories"])
    known = known_categories(workflow, name)
    if known is None and not Path(ds["root"]).is_dir():
        raise ConfigError(
            f"datasets.{name}.root: {ds['root']} not found (point it at your {ds['kind']} copy, or add "
            f"datasets.{name}.generate to have the workflow generate a dataset there)"
        )
    return known if known is not None else list_categories(ds["kind"], ds["root"])


def known_categories(workflow: dict[str, Any], name: str) -> list[str] | None:
    """The categories dataset ``name`` can give: the generator's, or those on its root; ``None`` when its root is not there yet."""
    from pathlib import Path

    from moleflow.data.layouts import list_categories
    from moleflow.data.synth import DEFAULT_CATEGORIES

    ds = workflow["datasets"][name]
    if ds.get("generate"):
        return list(DEFAULT_CATEGORIES)
    if not Path(ds["root"]).is_dir():
        return None
    try:
        return list_categories(ds["kind"], ds["root"])
    except MoleflowError:
        return None


def _check_categories(config: Config, available: list[str] | None, where: str, dataset: str) -> None:
    """Refuse, at planning, a category the dataset does not have (a typo would fail only inside a training job)."""
    if available is None:
        return
    wrong = [c for c in config["dataset"]["categories"] or [] if c not in available]
    if wrong:
        raise ConfigError(
            f"{where}: category {wrong[0]!r} is not in dataset {dataset} ({config['dataset']['root']}); "
            f"it has {', '.join(available) or 'no category'}"
        )


def estimated_work(config: Config, tasks: int) -> float:
    """A run's training work in arbitrary units (tasks x epochs x input pixels x flow blocks), for scheduling only."""
    from moleflow.continual.strategies import strategy_for  # torch: only when a cost is asked for

    return strategy_for(config).estimated_work(config, tasks)


def _identifier(name: str) -> str:
    """``name`` with every character that cannot stand in a Python identifier replaced by ``_``."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


@dataclass
class WorkflowPlan:
    """Every list the Snakemake rules need, computed once from the validated workflow configuration.

    Attributes:
        workflow: the workflow configuration.
        runs: the planned runs by run id (:func:`plan_runs`).
    """

    workflow: dict[str, Any]
    runs: dict[str, PlannedRun]
    _categories: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, workflow: dict[str, Any]) -> WorkflowPlan:
        return cls(workflow, plan_runs(workflow))

    @cached_property
    def studies(self) -> dict[str, list[str]]:
        """``{study: sorted run ids}`` for every study of the configuration."""
        return {
            name: sorted(r.run_id for r in self.runs.values() if name in r.studies) for name in self.workflow["studies"]
        }

    @cached_property
    def study_runs(self) -> dict[str, list[tuple[str, str]]]:
        """``{"<study>/<dataset>": [(run id, variant), ...]}``: one MLflow experiment each."""
        out: dict[str, list[tuple[str, str]]] = {}
        for run in self.runs.values():
            for study, variant in run.memberships:
                out.setdefault(f"{study}/{run.dataset}", []).append((run.run_id, variant))
        return out

    @cached_property
    def jobs(self) -> dict[str, list[str]]:
        """``{job name: [run id, ...]}``: the training jobs, each training its runs one after the other.

        A run belongs to the first study (in the configuration's order) that needs it; that
        study's runs on one dataset with the same ``runs_per_job`` (the run's variant's, else
        the study's, else the workflow's, else 1), in planning order, are cut into jobs of that
        many runs. Job names are ``<study>_<dataset>_<k>``, ``k`` counting the study's jobs on
        the dataset.
        """
        order = list(self.workflow["studies"])
        chunks: dict[tuple[str, str, int], list[str]] = {}
        for run in self.runs.values():
            study, variant = min(run.memberships, key=lambda m: order.index(m[0]))
            chunks.setdefault((study, run.dataset, self._runs_per_job(study, variant)), []).append(run.run_id)
        jobs: dict[str, list[str]] = {}
        counts: dict[tuple[str, str], int] = {}
        for (study, dataset, size), ids in chunks.items():
            for k in range(0, len(ids), size):
                index = counts[(study, dataset)] = counts.get((study, dataset), -1) + 1
                jobs[_identifier(f"{study}_{dataset}_{index:02d}")] = ids[k : k + size]
        return jobs

    def _runs_per_job(self, study: str, variant: str) -> int:
        """Runs per training job for ``variant``'s runs in ``study``: the variant's, the study's, the workflow's, or 1."""
        spec = self.workflow["studies"][study]
        own = next(v.get("runs_per_job") for v in spec["variants"] if v["name"] == variant)
        return int(own or spec.get("runs_per_job") or self.workflow.get("runs_per_job", 1))

    @cached_property
    def _job_ranks(self) -> dict[str, int]:
        def tasks(run: PlannedRun) -> int:
            return len(run.config["dataset"]["categories"] or self.categories(run.dataset))

        work = {
            name: sum(estimated_work(self.runs[r].config, tasks(self.runs[r])) for r in ids)
            for name, ids in self.jobs.items()
        }
        order = sorted(work.values())
        return {name: order.index(value) for name, value in work.items()}

    def job_priority(self, job: str) -> int:
        """Snakemake priority of a training job: its rank by estimated work, so the longest start first."""
        return self._job_ranks[job]

    @cached_property
    def experiment_parts(self) -> dict[str, tuple[str, str]]:
        """``{"<study>/<dataset>": (study, dataset)}`` of every key of :attr:`study_runs`."""
        return {
            f"{study}/{run.dataset}": (study, run.dataset) for run in self.runs.values() for study, _ in run.memberships
        }

    @property
    def experiments(self) -> list[str]:
        """The MLflow experiment names, sorted."""
        return sorted(self.study_runs)

    @cached_property
    def experiment_descriptions(self) -> dict[str, str]:
        """Each MLflow experiment's description: its study's purpose (``description``), dataset, tables and runs."""
        out = {}
        for name in self.experiments:
            study, dataset = name.split("/", 1)
            spec = self.workflow["studies"][study]
            runs = self.study_runs[name]
            variants = ", ".join(dict.fromkeys(variant for _, variant in runs))
            tables = ", ".join(spec.get("tables") or []) or "none"
            purpose = spec.get("description") or f"The {study} study."
            out[name] = f"{purpose} Dataset: {dataset}. Tables: {tables}. {len(runs)} runs; variants: {variants}."
        return out

    def categories(self, dataset: str) -> list[str]:
        """The dataset's categories, listed from disk at most once (every run job's input asks for them)."""
        if dataset not in self._categories:
            self._categories[dataset] = dataset_categories(self.workflow, dataset)
        return self._categories[dataset]

    def feature_settings(self, dataset: str, category: str) -> list[dict[str, Any]]:
        """The ``features`` blocks, other than the dataset's own, of the runs that read ``category`` of ``dataset``
        (e.g. a study at another resolution): its feature job extracts them too, so training jobs only read the cache."""
        import json

        own = json.dumps(dataset_config(self.workflow, dataset)["features"], sort_keys=True)
        found: dict[str, dict[str, Any]] = {}
        for run in self.runs.values():
            if run.dataset != dataset or category not in (
                run.config["dataset"]["categories"] or self.categories(dataset)
            ):
                continue
            key = json.dumps(run.config["features"], sort_keys=True)
            if key != own:
                found.setdefault(key, run.config["features"])
        return list(found.values())

    def feature_records(self, results: str, dataset: str) -> list[str]:
        """The feature jobs' records a run of ``dataset`` needs."""
        return [f"{results}/features/{dataset}/{c}.json" for c in self.categories(dataset)]

    def dataset_marker(self, dataset: str) -> list[str]:
        """What must exist before ``dataset`` is read: the generator's marker, or nothing."""
        ds = self.workflow["datasets"][dataset]
        return [f"{ds['root']}/synth.json"] if ds.get("generate") else []

    def record(self) -> dict[str, Any]:
        """What the analysis needs of the plan, as JSON (``results/plan.json``): the datasets (kind,
        generated or not), each study's variants in order, and every run with its memberships and config."""
        return {
            "results": self.workflow.get("results", "results"),
            "datasets": {
                name: {"kind": ds["kind"], "generate": bool(ds.get("generate"))}
                for name, ds in self.workflow["datasets"].items()
            },
            "studies": {
                name: [v["name"] for v in study["variants"]] for name, study in self.workflow["studies"].items()
            },
            "tables": {name: list(study.get("tables") or []) for name, study in self.workflow["studies"].items()},
            "jobs": self.jobs,
            "runs": [
                {
                    "run_id": r.run_id,
                    "dataset": r.dataset,
                    "seed": r.seed,
                    "order": r.order,
                    "memberships": [list(m) for m in r.memberships],
                    "config": r.config,
                }
                for r in self.runs.values()
            ],
        }

    @property
    def generated(self) -> dict[str, dict[str, Any]]:
        """``{root: {"generate": settings, "categories": [...]}}`` of the datasets the workflow generates."""
        return {
            ds["root"]: {"generate": ds["generate"], "categories": list(ds.get("categories") or [])}
            for ds in self.workflow["datasets"].values()
            if ds.get("generate")
        }


def write_records(files: dict[str, tuple[str, Any]], log: str) -> None:
    """Write each ``path -> ("yaml" | "json", value)`` atomically, then one line per file to ``log`` (the workflow's
    bookkeeping rules: the resolved configuration, the plan record, each dataset's run configuration)."""
    import yaml

    from moleflow.io import write_json_atomic, write_text_atomic

    for path, (kind, value) in files.items():
        if kind == "json":
            write_json_atomic(path, value)
        else:
            write_text_atomic(path, yaml.safe_dump(value, sort_keys=False))
    write_text_atomic(log, "".join(f"wrote {path}\n" for path in files))
