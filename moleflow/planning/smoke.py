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

Groups that differ only in how large a component is (:data:`SIZE_KEYS`: the number of
coupling or DIA blocks, the LoRA rank, a kernel's size, the subnets' width), and not in
whether it is there, run the same code: of each such set of groups (:func:`code_path`)
only the largest, by parameters, is run (the one that could run out of memory); the others
are reported as covered by it, their parameters counted exactly and its times and peak
memory scaled by their share of its parameters (a flow's arithmetic and activations grow
with its blocks and widths, and the largest's set-up is carried over: the scaled figures
err high). ``every_group`` runs them all. On the CPU the checks run in ``jobs`` processes
of ``threads`` torch threads each (the workflow's CPU jobs run one thread each).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
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


#: Keys that size a component without changing the code that runs, as long as they stay zero (the component is
#: absent) or non-zero: groups that differ only in these share one code path (:func:`code_path`).
SIZE_KEYS = (
    "model.coupling_blocks",
    "model.dia_blocks",
    "model.lora_rank",
    "model.mixer_kernel",
    "model.context_kernel",
    "model.hidden_ratio",
)


def shape_signature(config: Config) -> str:
    """What of ``config`` can change a tensor's shape or the code that runs (JSON, sorted)."""
    from moleflow.continual.strategies import value_only_keys

    value_only = VALUE_ONLY + value_only_keys()  # and each strategy's own
    kept = {k: v for k, v in flat(config).items() if not k.startswith(value_only)}
    return json.dumps(kept, sort_keys=True, default=str)


def code_path(signature: str) -> str:
    """A :func:`shape_signature` with each of :data:`SIZE_KEYS` reduced to whether it is non-zero (JSON, sorted)."""
    kept = json.loads(signature)
    for key in SIZE_KEYS:
        if key in kept:
            kept[key] = bool(kept[key])
    return json.dumps(kept, sort_keys=True)


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


def model_parameters(config: Config) -> int:
    """Parameters of task 0's model of ``config``: the base and one task's own (what a step of task 0 trains)."""
    from moleflow.continual.strategies import parameter_counts

    counts = parameter_counts(config, config["features"]["embed_dim"])
    return int(counts["base"] + counts["per_task"])


def covering(groups: list[SmokeGroup], every_group: bool = False) -> list[int | None]:
    """Per group, ``None`` when it is checked, else the index of the checked group of its :func:`code_path`: the
    largest by :func:`model_parameters` (the first of equals). ``every_group``: every group is checked."""
    if every_group:
        return [None] * len(groups)
    by_path: dict[str, list[int]] = {}
    for k, group in enumerate(groups):
        by_path.setdefault(code_path(group.signature), []).append(k)
    cover: list[int | None] = [None] * len(groups)
    for members in by_path.values():
        if len(members) == 1:
            continue
        sizes = [model_parameters(groups[k].config) for k in members]
        largest = members[sizes.index(max(sizes))]
        for k in members:
            cover[k] = None if k == largest else largest
    return cover


def covered_check(group: SmokeGroup, by: SmokeGroup, check: GroupCheck) -> GroupCheck:
    """``group``'s figures from ``check``, the check of ``by`` (same code path): its own parameters, the times and
    peak memory scaled by its share of ``by``'s parameters; not checked when ``check`` failed."""
    from moleflow.continual.strategies import parameter_counts

    counts = parameter_counts(group.config, group.config["features"]["embed_dim"])
    if check.status == "failed":
        return _failed(group, f"not checked: {by.label} (its code path) failed", counts, check.random_weights)
    largest = model_parameters(by.config)
    own = counts["base"] + counts["per_task"]  # model_parameters(group.config), from the counts above
    share = own / largest if largest else 1.0  # no parameters (kNN, DNE): as measured
    return GroupCheck(
        label=group.label,
        runs=len(group.runs),
        status="covered",
        message=f"the code path of {by.label}, its figures scaled by parameters (x {share:.2f})",
        base_params=int(counts["base"]),
        params_per_task=int(counts["per_task"]),
        peak_mib=check.peak_mib * share,
        task0_step_s=check.task0_step_s * share,
        later_step_s=check.later_step_s * share,
        eval_image_s=check.eval_image_s * share,
        random_weights=check.random_weights,
    )


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


def _failed(
    group: SmokeGroup, message: str, counts: dict[str, float] | None = None, random_weights: bool = False
) -> GroupCheck:
    """A failed check of ``group``: no figures (its parameters when ``counts`` are given)."""
    nan = float("nan")
    return GroupCheck(
        label=group.label,
        runs=len(group.runs),
        status="failed",
        message=message,
        base_params=int(counts["base"]) if counts else 0,
        params_per_task=int(counts["per_task"]) if counts else 0,
        peak_mib=nan,
        task0_step_s=nan,
        later_step_s=nan,
        eval_image_s=nan,
        random_weights=random_weights,
    )


def check_group(group: SmokeGroup, workdir: Path, device: str, index: int = 0) -> GroupCheck:
    """Run the group's first run on its stand-in tree (features cached), in ``workdir/runs/<index>``: one step per
    task, one evaluation per task."""
    from moleflow.continual import run
    from moleflow.continual.strategies import parameter_counts, strategy_for

    smoke, sizes = smoke_config(group.config, workdir, device)
    out = workdir / "runs" / f"{index:03d}"
    try:
        with PeakMemory(device) as memory:
            summary = run(smoke, out, progress=False, log=lambda *a: None)
    except Exception as exc:  # noqa: BLE001 - what would fail on the cluster is this check's finding, not a crash
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        summary = {"status": "failed", "message": f"{type(exc).__name__}: {first}"}
    if summary["status"] == "failed":
        return _failed(group, summary["message"])
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


def _start_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _checked(
    groups: list[SmokeGroup], indices: list[int], work: Path, device: str, jobs: int, threads: int
) -> Iterator[tuple[int, GroupCheck]]:
    """``(index, check)`` of each of ``groups[indices]`` as it finishes: in this process when ``jobs`` is 1, else in
    ``jobs`` new processes of ``threads`` torch threads (a process that dies is that group's failure)."""
    if jobs <= 1 or len(indices) <= 1:
        for k in indices:
            yield k, check_group(groups[k], work, device, k)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # no fork of a process whose torch already started threads
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_start_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(check_group, groups[k], work, device, k): k for k in indices}
        for future in as_completed(futures):
            k = futures[future]
            try:
                yield k, future.result()
            except Exception as exc:  # noqa: BLE001 - a worker killed (memory) is the group's finding
                yield k, _failed(groups[k], f"{type(exc).__name__}: {exc}".splitlines()[0])


def smoke(
    plan: WorkflowPlan,
    device: str = "auto",
    workdir: Path | None = None,
    log: Callable[[str], None] = print,
    studies: list[str] | None = None,
    jobs: int = 1,
    threads: int = 1,
    every_group: bool = False,
) -> dict[str, Any]:
    """Check every code path of ``plan`` (of ``studies``, default all); return
    ``{"groups": [...], "estimate": {...}, ...}``, a check per group (``covered``: by another's).

    The feature settings are checked once per dataset layout the plan reads them from. ``jobs`` processes of
    ``threads`` torch threads each check the groups (CPU); ``every_group`` checks groups that another covers too.
    """
    from moleflow.device import resolve_device

    resolved = str(resolve_device(device))
    groups = smoke_groups(plan, studies)
    cover = covering(groups, every_group)
    todo = [k for k, by in enumerate(cover) if by is None]
    runs = sum(len(g.runs) for g in groups)
    jobs = 1 if resolved.startswith("cuda") else max(1, jobs)
    if jobs == 1:  # the checks run in this process, with its threads
        import torch

        threads = torch.get_num_threads()
    log(
        f"{runs} distinct runs in {len(groups)} groups of the same shapes and code paths, {len(todo)} code paths; "
        f"checking each on {resolved}" + (f" in {jobs} processes of {threads} thread(s)" if jobs > 1 else "")
    )
    checks: dict[int, GroupCheck] = {}
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
        for k, check in _checked(groups, todo, work, resolved, jobs, threads):
            checks[k] = check
            log(format_check(k + 1, len(groups), check))
        for k, by in enumerate(cover):
            if by is not None:
                checks[k] = covered_check(groups[k], groups[by], checks[by])
                log(format_check(k + 1, len(groups), checks[k]))
        seconds = time.perf_counter() - start
    ordered = [checks[k] for k in range(len(groups))]
    return {
        "device": resolved,
        "seconds": seconds,
        "jobs": jobs,
        "threads": threads,
        "groups": [asdict(c) for c in ordered],
        "features": [asdict(e) for e in extractions.values()],
        "estimate": estimate(
            plan,
            [(run, check) for group, check in zip(groups, ordered) for run in group.runs],
            list(extractions.values()),
        ),
    }


def format_check(k: int, n: int, c: GroupCheck) -> str:
    """One line per checked group."""
    weights = ", random backbone weights" if c.random_weights else ""
    head = f"[{k}/{n}] {c.status:8s} {c.label} ({c.runs} run{'s' if c.runs != 1 else ''}{weights})"
    if c.status == "failed":
        return f"{head}: {c.message}"
    if c.status == "covered":
        head = f"{head}: {c.message}"
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
    "code_path",
    "covered_check",
    "covering",
    "estimate",
    "model_parameters",
    "shape_signature",
    "smoke",
    "smoke_groups",
    "SIZE_KEYS",
    "split_sizes",
    "standin_tree",
]
