"""The grid's smoke check: every distinct kind of run of a workflow plan, one step of each task kind, in minutes.

A cluster job that fails hours in (a shape that does not fit, a key a strategy cannot
combine with, memory) is found here first. The plan's runs are grouped by what changes
the model's tensors or the data's shapes (:func:`shape_signature`: the model's structure,
the strategy, the feature settings, the batch size, the optimiser); runs that differ only
in the seed, the schedule, the loss's terms and weights, the categories, the task order,
the router's estimate or the scoring share one check. Each group's first run is run for real, through the same
:func:`moleflow.continual.run` a training job calls (features, training, evaluation,
invertibility check, checkpoints, summary), with three changes that keep the shapes:
the dataset is a stand-in tree of two categories in the run's layout at the run's image
size (noise pixels), each category holds exactly one training batch and three test
images (one normal, two defective), and every task trains one epoch, so each task is one
optimiser step. Where the
configured backbone's pretrained weights are not on the machine its architecture runs
with random weights: the shapes and the code paths are what is checked, not the numbers.

The stand-in features are extracted first, once per layout and feature setting, as the
workflow's feature jobs do (their time per image and peak memory are reported apart), so
each group's run reads them from the cache like a training job. Per group the check
reports the parameters, the peak memory (CUDA: the allocator's peak; CPU: the growth of
the process's resident set over what it held before, sampled every 10 ms after freed
memory was returned to the system) and the time of task 0's step, of a later task's
step (each with its task's set-up: optimiser, first pass) and of evaluating one test
image. From those and the datasets' image counts (read from disk where the dataset is
there, else the published split sizes of MVTec AD and VisA) it estimates what the whole
grid costs on the device it ran on; a real task spreads its set-up over many steps, so
the estimate errs high.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from moleflow.config import Config, apply_overrides, flat
from moleflow.planning.estimate import ExtractionCheck, GroupCheck, estimate, published_counts, split_sizes
from moleflow.planning.memory import PeakMemory
from moleflow.planning.plan import PlannedRun, WorkflowPlan

#: Keys that change neither the model's tensors nor the data's shapes: runs that differ only in these share one
#: check. The dataset's layout is read by the feature extraction, checked once per layout and feature setting;
#: the loss's terms, the router's estimate and the schedule are arithmetic on tensors of the same shapes.
VALUE_ONLY = (
    "seed",
    "order_seed",
    "task_order",
    "device",
    "dataset.",
    "features.cache_dir",
    "features.num_workers",
    "features.batch_size",
    "features.init_seed",
    "training.epochs",
    "training.lr",
    "training.lr_min_ratio",
    "training.warmup_epochs",
    "training.clip_grad_norm",
    "training.top_k_ratio",
    "training.tail_weight",
    "training.logdet_reg",
    "training.nll_reduction",
    "training.tail_k_rounding",
    "training.lr_schedule",
    "training.drop_last",
    "training.nonfinite",
    "training.loss_ceiling",
    "training.max_skipped_share",
    "training.weight_decay",
    "scoring.",
    "evaluation.",
    "router.",
    "model.gamma_init",
    "model.mixer_gate_init",
    "model.affine_clamp",
    "model.permutation_seed",
    "model.permutations",
    "model.context_alpha_max",
    "model.lora_alpha",
    "model.dia_clamp",
    "model.positional_encoding",
)


def shape_signature(config: Config) -> str:
    """What of ``config`` can change a tensor's shape or the code that runs (JSON, sorted)."""
    from moleflow.continual.strategies import value_only_keys

    value_only = VALUE_ONLY + value_only_keys()  # and each strategy's own
    kept = {k: v for k, v in flat(config).items() if not k.startswith(value_only)}
    return json.dumps(kept, sort_keys=True, default=str)


@dataclass
class SmokeGroup:
    """Runs of a plan that one check covers: the first run's config stands for all."""

    signature: str
    runs: list[PlannedRun] = field(default_factory=list)

    @property
    def config(self) -> Config:
        return self.runs[0].config

    @property
    def label(self) -> str:
        """``study/variant`` names of the group's runs (the first three, then a count)."""
        names = list(dict.fromkeys(f"{s}/{v}" for run in self.runs for s, v in run.memberships))
        more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
        return ", ".join(names[:3]) + more


def smoke_groups(plan: WorkflowPlan, studies: list[str] | None = None) -> list[SmokeGroup]:
    """The plan's runs (of ``studies``, default all) grouped by :func:`shape_signature`, in planning order."""
    groups: dict[str, SmokeGroup] = {}
    for run in plan.runs.values():
        if studies and not set(run.studies) & set(studies):
            continue
        signature = shape_signature(run.config)
        groups.setdefault(signature, SmokeGroup(signature)).runs.append(run)
    return list(groups.values())


def standin_tree(root: Path, kind: str, size: int, train: int) -> list[str]:
    """A noise-filled tree in ``kind``'s layout with ``train`` training images per category (the layout's
    ``standin``); its categories."""
    from moleflow.data.layouts import layout

    return layout(kind).standin(root, size, train)


def weights_available(config: Config) -> bool:
    """Whether the configured backbone's pretrained weights are on this machine (always, when not pretrained)."""
    from moleflow.errors import WeightsError
    from moleflow.features.backbone import resolve_weights

    feats = config["features"]
    if not feats["pretrained"]:
        return True
    try:
        resolve_weights(feats["backbone"], feats["weights"])
    except WeightsError:
        return False
    return True


def smoke_config(config: Config, workdir: Path, device: str) -> tuple[Config, list[tuple[int, int]]]:
    """``config`` on its stand-in tree (made on first use): one epoch, the run's shapes; and the tree's
    ``(training, test)`` image counts per category."""
    from moleflow.data.layouts import load_categories

    feats = config["features"]
    size = max(feats["resize"], feats["input_size"])
    batch = config["training"]["batch_size"]
    tree = workdir / "data" / f"{config['dataset']['kind']}-{size}-{batch}"
    if not tree.exists():
        categories = standin_tree(tree, config["dataset"]["kind"], size, batch)
        (tree / ".categories").write_text(json.dumps(categories))
    categories = json.loads((tree / ".categories").read_text())
    sets: dict[str, Any] = {
        "dataset.root": str(tree),
        "dataset.categories": categories,
        "dataset.kind": config["dataset"]["kind"],
        "task_order": "given",
        "training.epochs": 1,
        "features.cache_dir": str(workdir / "cache"),
        "evaluation.sample_images": 0,
        "device": device,
    }
    if not weights_available(config):
        sets.update({"features.pretrained": False, "features.weights": None})
    smoke = apply_overrides(config, sets)
    sizes = [(len(c.train), len(c.test)) for c in load_categories(smoke["dataset"]["kind"], tree, categories)]
    return smoke, sizes


def check_extraction(config: Config, workdir: Path, device: str) -> ExtractionCheck:
    """Extract (or find cached) the stand-in features ``config`` reads, timed per image."""
    from moleflow.features import FeatureStore

    smoke, sizes = smoke_config(config, workdir, device)
    feats = smoke["features"]
    with PeakMemory(device) as memory:
        start = time.perf_counter()
        store = FeatureStore(smoke, progress=False, log=lambda *a: None)
        for category in smoke["dataset"]["categories"]:
            for split in ("train", "test"):
                store.get(category, split)
        seconds = time.perf_counter() - start
    images = sum(a + b for a, b in sizes)
    what = f"{feats['backbone']} {'+'.join(feats['layers'])} at {feats['input_size']} px, D = {feats['embed_dim']}" + (
        f", grid {feats['grid']}" if feats["grid"] else ""
    )
    return ExtractionCheck(
        what, images, seconds / images, memory.peak_mib, not feats["pretrained"] and config["features"]["pretrained"]
    )


def check_group(group: SmokeGroup, workdir: Path, device: str) -> GroupCheck:
    """Run the group's first run on its stand-in tree (features cached): one step per task, one evaluation per task."""
    from moleflow.continual import run
    from moleflow.continual.strategies import parameter_counts, strategy_for

    smoke, sizes = smoke_config(group.config, workdir, device)
    runs = workdir / "runs"
    out = runs / f"{len(list(runs.glob('*'))) if runs.exists() else 0:03d}"
    try:
        with PeakMemory(device) as memory:
            summary = run(smoke, out, progress=False, log=lambda *a: None)
    except Exception as exc:  # noqa: BLE001 - what would fail on the cluster is this check's finding, not a crash
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        summary = {"status": "failed", "message": f"{type(exc).__name__}: {first}"}
    if summary["status"] == "failed":
        nan = float("nan")
        return GroupCheck(
            label=group.label,
            runs=len(group.runs),
            status="failed",
            message=summary["message"],
            base_params=0,
            params_per_task=0,
            peak_mib=nan,
            task0_step_s=nan,
            later_step_s=nan,
            eval_image_s=nan,
            random_weights=False,
        )
    timings = summary.get("timings", {})
    per_task = timings.get("training_per_task", [])
    done = summary.get("tasks_completed", 0)
    task0, later, evaluated = strategy_for(smoke).smoke_timings(per_task, sizes, done)
    counts = parameter_counts(smoke, smoke["features"]["embed_dim"])
    return GroupCheck(
        label=group.label,
        runs=len(group.runs),
        status=summary["status"],
        message=summary.get("message", ""),
        base_params=int(counts["base"]),
        params_per_task=int(counts["per_task"]),
        peak_mib=memory.peak_mib,
        task0_step_s=task0,
        later_step_s=later,
        eval_image_s=timings.get("evaluation", float("nan")) / evaluated if evaluated else float("nan"),
        random_weights=not smoke["features"]["pretrained"] and group.config["features"]["pretrained"],
    )


def smoke(
    plan: WorkflowPlan,
    device: str = "auto",
    workdir: Path | None = None,
    log: Callable[[str], None] = print,
    studies: list[str] | None = None,
) -> dict[str, Any]:
    """Check every group of ``plan`` (of ``studies``, default all); return ``{"groups": [...], "estimate": {...}, ...}``.

    The feature settings are checked once per dataset layout the plan reads them from.
    """
    from moleflow.device import resolve_device

    resolved = str(resolve_device(device))
    groups = smoke_groups(plan, studies)
    runs = sum(len(g.runs) for g in groups)
    log(f"{runs} distinct runs in {len(groups)} groups of the same shapes and code paths; checking each on {resolved}")
    checks: list[GroupCheck] = []
    extractions: dict[str, ExtractionCheck] = {}
    with tempfile.TemporaryDirectory(prefix="moleflow-smoke-") as tmp:
        work = Path(workdir) if workdir else Path(tmp)
        start = time.perf_counter()
        # the feature jobs first, for every layout and feature setting of the plan: every group's run then reads the cache
        layouts = {
            json.dumps(
                [r.config["dataset"]["kind"], r.config["features"], r.config["training"]["batch_size"]], sort_keys=True
            ): r.config
            for g in groups
            for r in g.runs
        }
        for key, config in layouts.items():
            e = extractions[key] = check_extraction(config, work, resolved)
            weights = " (random backbone weights: the real ones are not on this machine)" if e.random_weights else ""
            log(f"features: {e.features}{weights}: {e.image_s * 1000:.0f} ms/image, peak {e.peak_mib:,.0f} MiB")
        for k, group in enumerate(groups, 1):
            check = check_group(group, work, resolved)
            checks.append(check)
            log(format_check(k, len(groups), check))
        seconds = time.perf_counter() - start
    return {
        "device": resolved,
        "seconds": seconds,
        "groups": [asdict(c) for c in checks],
        "features": [asdict(e) for e in extractions.values()],
        "estimate": estimate(
            plan,
            [(run, check) for group, check in zip(groups, checks) for run in group.runs],
            list(extractions.values()),
        ),
    }


def format_check(k: int, n: int, c: GroupCheck) -> str:
    """One line per checked group."""
    weights = ", random backbone weights" if c.random_weights else ""
    head = f"[{k}/{n}] {c.status:8s} {c.label} ({c.runs} run{'s' if c.runs != 1 else ''}{weights})"
    if c.status != "ok":
        return f"{head}: {c.message}"
    return (
        f"{head}: base {c.base_params:,} + {c.params_per_task:,}/task params, peak {c.peak_mib:,.0f} MiB, "
        f"step {c.task0_step_s:.2f} s (task 0) / {c.later_step_s:.2f} s (later), eval {c.eval_image_s * 1000:.0f} ms/image"
    )


__all__ = [
    "ExtractionCheck",
    "GroupCheck",
    "published_counts",
    "check_extraction",
    "SmokeGroup",
    "check_group",
    "estimate",
    "shape_signature",
    "smoke",
    "smoke_groups",
    "split_sizes",
    "standin_tree",
]
