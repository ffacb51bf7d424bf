"""One continual run: tasks in order, evaluation after each, checkpoints, ``summary.json``.

``run(config, out_dir)`` trains the tasks one after another. After task ``j`` it
evaluates every seen task routed and oracle, fills row ``j`` of the accuracy
matrices, writes a checkpoint and commits it (:mod:`moleflow.continual.checkpoint`);
a rerun with the same config resumes after the last committed task and ends with
the same numbers. A non-finite loss ends the run with status ``diverged``, keeping
the finished tasks' metrics. The record is :mod:`moleflow.continual.summary`; the
pictures are :mod:`moleflow.continual.artifacts`.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from moleflow.config import Config, config_hash
from moleflow.continual.artifacts import pick_samples, save_accuracy_heatmaps, save_sample
from moleflow.continual.checkpoint import RunState, check_run_dir, restore, save_checkpoint, write_status
from moleflow.continual.evaluate import METRICS, TaskEvaluation, evaluate_task
from moleflow.continual.learner import Learner
from moleflow.continual.score_cache import ScoreCache
from moleflow.continual.settings import LearnerSettings, ScoreSettings, TrainSettings
from moleflow.continual.strategies.replay import ReplayBuffer
from moleflow.continual.structure import fingerprints, input_collapse, invertibility
from moleflow.continual.summary import MODES, build_summary, dataset_record, rescored_top_k, tasks_csv
from moleflow.continual.tasks import TaskData, joint_patches, load_tasks
from moleflow.continual.train import empirical_fisher, train_task
from moleflow.device import resolve_device
from moleflow.errors import MoleflowError
from moleflow.features import FeatureStore
from moleflow.features.extract import backbone_passes_per_image
from moleflow.io import ensure_writable_dir, write_json_atomic, write_text_atomic
from moleflow.lock import folder_lock
from moleflow.metrics import routing_accuracy, routing_confusion


def run(config: Config, out_dir: str | Path, progress: bool = True, log=print) -> dict[str, Any]:
    """Run one continual experiment; return the summary written to ``out_dir/summary.json``.

    Before any work the run directory and the feature cache are checked (writable; the
    directory empty or holding this configuration's run). ``RUN_DIR/status.json`` says
    ``running`` while it works, ``failed`` or ``interrupted`` with the reason when it
    stops early, and the summary's status (``ok``, ``diverged``) at the end. A new run
    refused for its input (a dataset or cache problem, :class:`MoleflowError`) before it
    finished a task leaves no directory behind. The folder is locked for the run's life
    (:func:`moleflow.lock.folder_lock`): a second process on it is refused, naming the first.
    """
    out = Path(out_dir)
    fresh = not out.exists() or (out.is_dir() and not any(out.iterdir()))
    ensure_writable_dir(out, "--out")
    with folder_lock(out, "run folder"):  # held until this process ends: a second run on this folder is refused
        try:
            return _locked_run(config, out, fresh, progress, log)
        except MoleflowError:
            _drop_if_refused(out, fresh)
            raise


def _locked_run(config: Config, out: Path, fresh: bool, progress: bool, log) -> dict[str, Any]:
    """:func:`run` once the folder's lock is held."""
    check_run_dir(out, config)
    ensure_writable_dir(config["features"]["cache_dir"], "features.cache_dir")
    write_status(out, "running")
    try:
        summary = _run(config, out, progress, log)
    except KeyboardInterrupt:
        write_status(
            out, "interrupted", "stopped by the user or the scheduler; a rerun resumes after the last finished task"
        )
        raise
    except MoleflowError as exc:
        if not _refused_before_work(out, fresh):
            write_status(out, "failed", _first_line(exc))
        raise
    except BaseException as exc:
        write_status(out, "failed", _first_line(exc))
        raise
    write_status(out, summary["status"], summary["message"])
    return summary


def _refused_before_work(out: Path, fresh: bool) -> bool:
    """Whether ``out`` is a new run's folder that has not finished a task (to be removed when it stops)."""
    return fresh and not (out / "checkpoints" / "progress.json").exists()


def _drop_if_refused(out: Path, fresh: bool) -> None:
    """Remove the folder of a new run refused for its input before it finished a task."""
    if _refused_before_work(out, fresh):
        shutil.rmtree(out, ignore_errors=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _resumed_learner(
    settings: LearnerSettings, tasks: list[TaskData], state: RunState, ckpt: Path, device: torch.device, log
) -> tuple[Learner, ReplayBuffer | None]:
    """The learner (and replay buffer) as they were after the last committed task."""
    learner = Learner(settings).to(device)
    replay = learner.strategy.replay_buffer(settings.seed)
    for task in range(state.completed):
        learner.add_task(np.asarray(tasks[task].train.router))
        if replay is not None:
            replay.add(task, tasks[task].train.patches)
    if state.completed:
        restore(learner, ckpt, state.completed)
        log(f"resuming after task {state.completed - 1} ({tasks[state.completed - 1].category})")
    return learner, replay


def _record_evaluation(state: RunState, task: int, evaluations: list[TaskEvaluation]) -> None:
    """Row ``task`` of the accuracy matrices and the routing after it."""
    for i, ev in enumerate(evaluations):
        for mode in MODES:
            for metric in METRICS:
                state.matrices[mode][metric][task][i] = getattr(ev, mode)[metric]
    true_ids = np.concatenate([np.full(len(ev.routed_to), i) for i, ev in enumerate(evaluations)])
    routed_ids = np.concatenate([ev.routed_to for ev in evaluations])
    euclidean = np.concatenate([ev.routed_to_euclidean for ev in evaluations])
    state.routing.append(
        {
            "after_task": task,
            "accuracy": routing_accuracy(true_ids, routed_ids),
            "confusion": routing_confusion(true_ids, routed_ids, task + 1).tolist(),
            "accuracy_euclidean": routing_accuracy(true_ids, euclidean),
        }
    )


def _commit_waiting(learner: Learner, state: RunState, ckpt: Path, task: int, category: str) -> None:
    """(joint) Commit task ``task`` without training or measuring it: its row of the matrices stays ``None``."""
    state.tasks.append(
        {
            "task": task,
            "category": category,
            "status": "ok",
            "epoch_losses": [],
            "skipped_batches": 0,
            "note": "not trained or measured: the joint flow trains once, after the last task",
        }
    )
    state.timings["training_per_task"].append(0.0)
    _commit(learner, state, ckpt, task)


def _commit(learner: Learner, state: RunState, ckpt: Path, task: int) -> None:
    """Write task ``task``'s checkpoint, then commit the state after it (``progress.json``)."""
    save_checkpoint(learner, ckpt, task)
    state.completed = task + 1
    state.timings["task_finished_at"].append(time.time())
    state.commit(ckpt)


def _non_finite(evaluations: list[TaskEvaluation], tasks: list[TaskData], task: int) -> str:
    """Why the evaluations after training ``task`` cannot stand (non-finite scores on a seen task), or ``""``.

    A numerically broken model is a diverged run: a mean over the other categories would hide it.
    """
    failed = [i for i, ev in enumerate(evaluations) if not all(v is None or np.isfinite(v) for v in ev.oracle.values())]
    if not failed:
        return ""
    return f"non-finite scores on task {failed[0]} ({tasks[failed[0]].category}) after training task {task} ({tasks[task].category})"


def _oracle_nll(
    serving: list[tuple[Any, int]], task: int, tested: list[int], evaluations: list[TaskEvaluation]
) -> list[np.ndarray] | None:
    """The patch NLL ``(N, H, W)`` of each test set in ``tested`` as this evaluation computed it, when the model
    that scored it is the one serving ``task`` (the input-collapse diagnostic's model); else ``None``."""
    model, local = serving[task]
    out = []
    for i in tested:
        nll = evaluations[i].oracle_patches
        if nll is None or serving[i][0] is not model or serving[i][1] != local:
            return None
        out.append(nll)
    return out


def _run(config: Config, out: Path, progress: bool, log) -> dict[str, Any]:
    ckpt = out / "checkpoints"
    cfg_hash = config_hash(config)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))  # the resolved config, for people
    device = resolve_device(config["device"])
    if (
        device.type == "cuda"
    ):  # CPU kernels are deterministic already; the switch costs ~2 s of imports (torch._inductor)
        # cuBLAS is deterministic only with a fixed workspace, read when CUDA starts (a no-op once it has).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    start = time.perf_counter()
    wall_start = time.time()
    store = FeatureStore(config, progress=progress, log=log)
    tasks = load_tasks(config, store)
    features_seconds = time.perf_counter() - start
    training, scoring = TrainSettings.from_config(config), ScoreSettings.from_config(config)
    state = RunState.load(ckpt / "progress.json", len(tasks), cfg_hash)
    committed = [t["category"] for t in state.tasks[: state.completed]]
    names = [t.category for t in tasks]
    if names[: len(committed)] != committed:
        raise MoleflowError(
            f"{out} holds a run trained on tasks {', '.join(committed)}, but the dataset at "
            f"{config['dataset']['root']} now gives {', '.join(names)}; use a new --out or restore the dataset"
        )
    state.timings.setdefault("started_at", wall_start)  # wall clock of the first start (a resumed run keeps it)
    state.timings.setdefault("task_finished_at", [])
    settings = LearnerSettings.from_config(config, int(tasks[0].train.patches.shape[-1]))
    learner, replay = _resumed_learner(settings, tasks, state, ckpt, device, log)
    status, message = "ok", ""
    last_eval: list[TaskEvaluation] = []
    scores = ScoreCache()  # an earlier task's scores while its model stays as it was
    for task in range(state.completed, len(tasks)):
        data = tasks[task]
        learner.add_task(np.asarray(data.train.router))
        if learner.strategy.waits_for_last_task and task < len(tasks) - 1:  # the joint flow waits for every task
            _commit_waiting(learner, state, ckpt, task, data.category)
            log(f"task {task} ({data.category}): kept for the joint flow (trained after the last task)")
            continue
        train = joint_patches(tasks) if learner.strategy.waits_for_last_task else data.train.patches
        result = train_task(
            learner, task, train, training, device, replay, log=log, label=f"task {task} ({data.category}): "
        )
        state.timings["training"] += result.seconds
        state.timings["training_per_task"].append(result.seconds)
        failure = (result.message or result.status) if result.status != "ok" else ""
        if not failure:
            if learner.strategy.consolidates:
                learner.consolidate(task, empirical_fisher(learner, task, data.train.patches, training, device))
            if replay is not None:
                replay.add(task, data.train.patches)
            eval_start = time.perf_counter()
            evaluations = [evaluate_task(learner, i, tasks[i], scoring, device, scores) for i in range(task + 1)]
            state.timings["evaluation"] += time.perf_counter() - eval_start
            failure = _non_finite(evaluations, tasks, task)
        state.tasks.append(
            {
                "task": task,
                "category": data.category,
                "status": "diverged" if failure else "ok",
                "epoch_losses": result.epoch_losses,
                "skipped_batches": result.skipped,
            }
        )
        if scoring.nonfinite_scores == "nan_to_num" and not failure:  # the authors' reading: count what was replaced
            state.tasks[-1]["nonfinite_scores_replaced"] = sum(ev.replaced for ev in evaluations)
        if failure:  # the finished tasks' metrics stay; this task is not committed
            status, message = "diverged", failure
            log(f"task {task} ({data.category}): {message}")
            break
        last_eval = evaluations
        _record_evaluation(state, task, last_eval)
        serving = learner.serving_models(task + 1)
        if serving:  # a flow: did its input collapse (the objective's unbounded direction)?
            tested = list(range(task + 1)) if learner.strategy.waits_for_last_task else [task]
            state.tasks[-1]["input_collapse"] = input_collapse(
                *serving[task],
                task,
                train,
                [tasks[i] for i in tested],
                config["seed"],
                device,
                test_nll=_oracle_nll(serving, task, tested, evaluations),
            )
        state.tasks[-1]["fingerprints"] = fingerprints(learner.base_state(), learner.task_states(task + 1))
        state.tasks[-1]["invertibility"] = invertibility(serving, [t.test.patches for t in tasks[: task + 1]], device)
        _commit(learner, state, ckpt, task)
        cur = last_eval[-1].oracle
        loss = f"loss {result.epoch_losses[-1]:.1f}" if result.epoch_losses else "no training"
        rate = f" ({result.steps / result.seconds:.1f} steps/s)" if result.steps and result.seconds > 0 else ""
        pixel = "--" if cur["pixel_auroc"] is None else f"{cur['pixel_auroc']:.3f}"
        log(
            f"task {task} ({data.category}): trained in {result.seconds:.1f} s{rate}, {loss}; "
            f"I-AUROC {cur['image_auroc']:.3f} P-AUROC {pixel}; routing {state.routing[-1]['accuracy']:.3f}"
        )
    if (
        state.completed == len(tasks) and not last_eval
    ):  # finished earlier: evaluate the restored learner for the samples
        last_eval = [evaluate_task(learner, i, tasks[i], scoring, device, scores) for i in range(len(tasks))]
    timings = {
        "features": features_seconds,
        "training": state.timings["training"],
        "training_per_task": state.timings["training_per_task"],
        "evaluation": state.timings["evaluation"],
        "feature_cache": {"hits": store.stats["hits"], "misses": store.stats["misses"]},
        # score sets served from the cache (a model unchanged since it scored them) and computed (this process)
        "score_cache": {"hits": scores.hits, "misses": scores.misses},
        "started_at": state.timings["started_at"],
        "task_finished_at": state.timings["task_finished_at"],
    }
    summary = build_summary(
        config,
        cfg_hash,
        [t.category for t in tasks],
        state,
        status,
        message,
        int(tasks[0].train.patches.shape[-1]),
        int(np.prod(tasks[0].train.patches.shape[1:3])),
        int(np.mean([len(t.train.patches) for t in tasks])),
        timings,
        device,
    )
    summary["rescored"] = rescored_top_k(last_eval, [t.category for t in tasks]) if status == "ok" else None
    summary["inference"] = {"backbone_passes_per_test_image": backbone_passes_per_image([t.test for t in tasks])}
    summary["dataset"] = dataset_record(config, tasks)
    summary["timings"]["total"] = time.perf_counter() - start
    summary["timings"]["finished_at"] = time.time()
    _write_outputs(out, summary, state, tasks, last_eval, config)
    return summary


def _write_outputs(
    out: Path,
    summary: dict[str, Any],
    state: RunState,
    tasks: list[TaskData],
    last_eval: list[TaskEvaluation],
    config: Config,
) -> None:
    names = [t.category for t in tasks]
    write_text_atomic(out / "tasks.csv", tasks_csv(state.matrices, names, state.completed))
    save_accuracy_heatmaps(
        out / "accuracy_matrix.png",
        state.matrices["routed"],
        names,
        f"accuracy matrices, routed ({config['strategy']['name']}, seed {config['seed']})",
    )
    count = config["evaluation"]["sample_images"]
    root = Path(config["dataset"]["root"])
    feats = config["features"]
    for i, ev in enumerate(last_eval):
        routed_maps = ev.routed_scores.maps
        if routed_maps is None:  # a strategy without maps (DNE) has no picture to draw
            break
        test = tasks[i].test
        assert test.masks is not None  # a test split has its masks
        for k in pick_samples(np.asarray(test.labels), test.defects, count):
            save_sample(
                out / "samples" / f"{tasks[i].category}_{k:03d}.png",
                root / test.images[k],
                feats["resize"],
                feats["input_size"],
                routed_maps[k],
                np.asarray(test.masks[k]),
                float(ev.routed_scores.image[k]),
                f"{tasks[i].category}: {test.defects[k]}",
                feats["resize_mode"],
            )
    write_json_atomic(out / "summary.json", summary)
