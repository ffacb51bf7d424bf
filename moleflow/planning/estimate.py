"""What the smoke check measured and what it implies: each group's step and evaluation times, the datasets'
split sizes (on disk, else published), and the grid's estimated cost on the checked device."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moleflow.planning.plan import PlannedRun, WorkflowPlan

#: Published split sizes (training images, test images) per category: MVTec AD as released and VisA's 1cls split.
PUBLISHED_COUNTS: dict[str, dict[str, tuple[int, int]]] = {
    "mvtec": {
        "bottle": (209, 83),
        "cable": (224, 150),
        "capsule": (219, 132),
        "carpet": (280, 117),
        "grid": (264, 78),
        "hazelnut": (391, 110),
        "leather": (245, 124),
        "metal_nut": (220, 115),
        "pill": (267, 167),
        "screw": (320, 160),
        "tile": (230, 117),
        "toothbrush": (60, 42),
        "transistor": (213, 100),
        "wood": (247, 79),
        "zipper": (240, 151),
    },
    "visa": {
        "candle": (900, 200),
        "capsules": (542, 160),
        "cashew": (450, 150),
        "chewinggum": (453, 150),
        "fryum": (450, 150),
        "macaroni1": (900, 200),
        "macaroni2": (900, 200),
        "pcb1": (904, 200),
        "pcb2": (901, 200),
        "pcb3": (905, 201),
        "pcb4": (904, 201),
        "pipe_fryum": (450, 150),
    },
}


@dataclass
class GroupCheck:
    """What the check of one group measured."""

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
    known = PUBLISHED_COUNTS.get(ds["kind"], {})
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
    """The dataset's categories: as the plan lists them, else every category of a published layout that is not here."""
    from moleflow.errors import DatasetError

    try:
        return plan.categories(dataset)
    except DatasetError:
        return sorted(PUBLISHED_COUNTS.get(plan.workflow["datasets"][dataset]["kind"], {}))


def run_cost(run: PlannedRun, check: GroupCheck, sizes: dict[str, tuple[int, int]]) -> float:
    """Seconds one planned run takes on the checked device: its steps at the measured step times plus its evaluations."""
    from moleflow.continual.settings import TrainSettings

    config = run.config
    categories = config["dataset"]["categories"] or sorted(sizes)
    settings = TrainSettings.from_config(config)
    batch = settings.batch_size
    seconds = 0.0
    strategy = config["strategy"]["name"]
    if strategy == "joint":  # one training from scratch on every task's images, one evaluation of every task
        images = sum(sizes[c][0] for c in categories)
        return settings.epochs * settings.steps_per_epoch(images) * check.task0_step_s + check.eval_image_s * sum(
            sizes[c][1] for c in categories
        )
    for t, category in enumerate(categories):
        train, _ = sizes[category]
        steps = settings.epochs * settings.steps_per_epoch(train)
        step = check.task0_step_s if t == 0 else check.later_step_s
        if strategy == "dne":  # no flow: a Gaussian per task; its evaluation reads one vector per image
            continue
        seconds += steps * step if strategy != "knn" else step * train / batch
        seconds += check.eval_image_s * sum(sizes[c][1] for c in categories[: t + 1])
    return seconds


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
        if sizes is None or check.status != "ok":
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
