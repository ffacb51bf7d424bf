"""What the smoke check measured and what it implies: each group's step and evaluation times, the datasets'
split sizes (on disk, else published), and the grid's estimated cost on the checked device."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moleflow.planning.plan import PlannedRun, WorkflowPlan


def published_counts(kind: str) -> dict[str, tuple[int, int]]:
    """Published split sizes (training images, test images) per category of layout ``kind`` (none: empty)."""
    from moleflow.data.layouts import LAYOUTS

    return LAYOUTS[kind].published_counts if kind in LAYOUTS else {}


@dataclass
class GroupCheck:
    """What the check of one group measured (``status``: ``ok``, ``failed``, or ``covered``: the figures of the
    check of another group of its code path, scaled to its parameters)."""

    label: str
    runs: int
    status: str
    message: str
    base_params: int
    params_per_task: int
    peak_mib: float
    task0_step_s: float
    later_step_s: float
    eval_image_s: float
    random_weights: bool


@dataclass
class ExtractionCheck:
    """What extracting one feature setting's stand-in features measured (a feature job's work)."""

    features: str
    images: int
    image_s: float
    peak_mib: float
    random_weights: bool


def split_sizes(plan: WorkflowPlan, dataset: str, categories: list[str]) -> dict[str, tuple[int, int]] | None:
    """``{category: (training images, test images)}`` of a workflow dataset: on disk, else published, else ``None``."""
    from moleflow.data.layouts import load_categories

    ds = plan.workflow["datasets"][dataset]
    root = Path(ds["root"])
    if root.is_dir():
        try:
            return {c.category: (len(c.train), len(c.test)) for c in load_categories(ds["kind"], root, categories)}
        except Exception:  # noqa: BLE001 - an incomplete copy: fall back to what is known without it
            pass
    known = published_counts(ds["kind"])
    if all(c in known for c in categories):
        return {c: known[c] for c in categories}
    generate = ds.get("generate")
    if generate:
        from moleflow.data.synth import CATEGORIES

        return {
            c: (generate["train"], generate["test_good"] + generate["test_defect"] * len(CATEGORIES[c].defects))
            for c in categories
            if c in CATEGORIES
        }
    return None


def dataset_categories(plan: WorkflowPlan, dataset: str) -> list[str]:
    """The dataset's categories: as the plan lists them, else every category of a published layout that is not here
    (the planner refuses a root that is not there with a ``ConfigError`` naming its key; a layout's listing of a
    root it cannot read raises a ``DatasetError``)."""
    from moleflow.errors import ConfigError, DatasetError

    try:
        return plan.categories(dataset)
    except (ConfigError, DatasetError):
        return sorted(published_counts(plan.workflow["datasets"][dataset]["kind"]))


def run_cost(run: PlannedRun, check: GroupCheck, sizes: dict[str, tuple[int, int]]) -> float:
    """Seconds one planned run takes on the checked device: its steps at the measured step times plus its evaluations."""
    from moleflow.continual.settings import TrainSettings
    from moleflow.continual.strategies import strategy_for
    from moleflow.continual.strategies.base import CostInputs

    config = run.config
    categories = config["dataset"]["categories"] or sorted(sizes)
    return strategy_for(config).run_seconds(
        CostInputs(
            TrainSettings.from_config(config),
            [sizes[c] for c in categories],
            (check.task0_step_s, check.later_step_s),
            check.eval_image_s,
        )
    )


def estimate(
    plan: WorkflowPlan, checked: list[tuple[PlannedRun, GroupCheck]], extractions: list[ExtractionCheck]
) -> dict[str, Any]:
    """The grid's training-and-evaluation hours on the checked device (each run with its group's check), and the
    datasets' extraction hours."""
    total, unknown = 0.0, []
    known: dict[tuple[str, tuple[str, ...]], dict[str, tuple[int, int]] | None] = {}  # read each dataset's splits once
    for run, check in checked:
        cats = tuple(run.config["dataset"]["categories"] or dataset_categories(plan, run.dataset))
        if (run.dataset, cats) not in known:
            known[(run.dataset, cats)] = split_sizes(plan, run.dataset, list(cats))
        sizes = known[(run.dataset, cats)]
        if sizes is None or check.status not in ("ok", "covered"):
            unknown.append(run.run_id)
            continue
        total += run_cost(run, check, sizes)
    extraction = 0.0
    per_image = [c.image_s for c in extractions]
    for dataset in plan.workflow["datasets"]:
        categories = dataset_categories(plan, dataset)
        sizes = split_sizes(plan, dataset, categories) if categories else None
        if sizes and per_image:
            # every feature setting the dataset's runs read, over all its images (an upper bound: a study
            # on fewer categories extracts fewer)
            settings = len(
                {json.dumps(r.config["features"], sort_keys=True) for r in plan.runs.values() if r.dataset == dataset}
            )
            extraction += settings * sum(a + b for a, b in sizes.values()) * max(per_image)
    return {
        "train_eval_hours": total / 3600,
        "extraction_hours": extraction / 3600,
        "runs_without_estimate": len(unknown),
    }
