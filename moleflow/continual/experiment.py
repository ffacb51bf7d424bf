"""One continual run: tasks in order, evaluation after each, checkpoints, ``summary.json``.

``run(config, out_dir)`` trains the tasks one after another. After task ``j`` it
evaluates every seen task routed and oracle, fills row ``j`` of the accuracy
matrices, writes a checkpoint (``frozen_base``: the base once, then each task's
adapters; other strategies: the whole learner after task ``j``, next to the one of
task ``j - 1``) and then ``checkpoints/progress.json`` (the commit point: a process
killed at any moment resumes from the last committed task). A rerun with the same config resumes after the last committed
task and ends with the same numbers. A non-finite loss ends the run with status
``diverged``, keeping the finished tasks' metrics.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from moleflow.config import Config, config_hash, differing_keys
from moleflow.continual.evaluate import METRICS, TaskEvaluation, evaluate_task
from moleflow.continual.learner import PER_TASK_CHECKPOINTS, Learner, memory_per_task, parameter_counts
from moleflow.continual.samples import pick_samples, save_accuracy_heatmaps, save_sample
from moleflow.continual.tasks import TaskData, load_tasks
from moleflow.continual.train import ReplayBuffer, empirical_fisher, train_task
from moleflow.errors import MoleflowError
from moleflow.features import FeatureStore, resolve_device
from moleflow.io import atomic_path, ensure_writable_dir, write_json_atomic, write_text_atomic
from moleflow.metrics import backward_transfer, forgetting_diag, forgetting_max, routing_accuracy, routing_confusion

MODES = ("routed", "oracle")


def _empty_matrices(n: int) -> dict[str, dict[str, list[list[float | None]]]]:
    return {mode: {m: [[None] * n for _ in range(n)] for m in METRICS} for mode in MODES}


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({k: v.cpu() for k, v in tensors.items()}, tmp)


class RunState:
    """What a run has committed so far (``checkpoints/progress.json``)."""

    def __init__(self, n_tasks: int, cfg_hash: str) -> None:
        self.cfg_hash = cfg_hash
        self.completed = 0
        self.matrices = _empty_matrices(n_tasks)
        self.routing: list[dict[str, Any]] = []
        self.tasks: list[dict[str, Any]] = []
        self.timings: dict[str, Any] = {"training": 0.0, "evaluation": 0.0, "training_per_task": []}

    def to_json(self) -> dict[str, Any]:
        return {"config_hash": self.cfg_hash, "completed": self.completed, "matrices": self.matrices,
                "routing": self.routing, "tasks": self.tasks, "timings": self.timings}

    @classmethod
    def load(cls, path: Path, n_tasks: int, cfg_hash: str) -> "RunState":
        """The committed state at ``path`` (its configuration was checked by :func:`check_run_dir`)."""
        state = cls(n_tasks, cfg_hash)
        if not path.is_file():
            return state
        data = json.loads(path.read_text())
        state.completed, state.matrices = data["completed"], data["matrices"]
        state.routing, state.tasks = data["routing"], data["tasks"]
        state.timings.update(data["timings"])
        return state


def _restore(learner: Learner, ckpt: Path, completed: int) -> None:
    full = learner.state_dict()
    if learner.strategy in PER_TASK_CHECKPOINTS:
        full.update(torch.load(ckpt / "base.pt"))
        for task in range(completed):
            full.update(torch.load(ckpt / f"task_{task}.pt"))
    else:
        saved = torch.load(ckpt / f"learner_{completed - 1}.pt")
        learner.load_ewc_state({k[4:]: v for k, v in saved.items() if k.startswith("ewc.")})
        full.update({k: v for k, v in saved.items() if not k.startswith("ewc.")})
    learner.load_state_dict(full)


def _checkpoint(learner: Learner, ckpt: Path, task: int) -> None:
    """Write what task ``task`` changed, under names no earlier committed state uses.

    A process killed after this and before ``progress.json`` is rewritten leaves the
    committed state readable: ``frozen_base``/``knn`` add ``task_<t>.pt`` (and ``base.pt``
    at task 0, not read before a task is committed); other strategies write the whole
    learner to ``learner_<t>.pt`` and the previous one is removed only after the commit.
    """
    if learner.strategy in PER_TASK_CHECKPOINTS:
        if task == 0:
            _save_tensors(ckpt / "base.pt", learner.base_state())
        _save_tensors(ckpt / f"task_{task}.pt", learner.task_state(task))
    else:
        state = dict(learner.state_dict())
        state.update({f"ewc.{k}": v for k, v in learner.ewc_state().items()})
        _save_tensors(ckpt / f"learner_{task}.pt", state)


def _drop_superseded(ckpt: Path, task: int) -> None:
    """After task ``task`` is committed: the whole-learner checkpoint of the task before is no longer needed."""
    (ckpt / f"learner_{task - 1}.pt").unlink(missing_ok=True)


def _forgetting(matrix: list[list[float | None]], upto: int) -> dict[str, float]:
    if upto == 0:
        return {"fm": float("nan"), "paper": float("nan"), "bwt": float("nan")}
    R = np.array([[np.nan if v is None else v for v in row[:upto]] for row in matrix[:upto]], dtype=float)
    return {"fm": forgetting_max(R), "paper": forgetting_diag(R), "bwt": backward_transfer(R)}


def _previous_config(out: Path) -> Config | None:
    try:
        return yaml.safe_load((out / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None


def check_run_dir(out: Path, config: Config) -> None:
    """Before any work: ``out`` must be a writable folder holding nothing or a run of the same configuration.

    Raises:
        MoleflowError: one line naming the folder and why (a file, read-only, another
            configuration: with the keys that differ).
    """
    ensure_writable_dir(out, "--out")
    cfg_hash = config_hash(config)
    for record in (out / "checkpoints" / "progress.json", out / "summary.json"):
        try:
            held = json.loads(record.read_text())["config_hash"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if held != cfg_hash:
            previous = _previous_config(out)
            keys = differing_keys(previous, config) if previous else []
            which = f"differing in {', '.join(keys)}" if keys else f"hash {held}, this one {cfg_hash}"
            raise MoleflowError(f"{out} holds a run of another configuration ({which}); use a new --out or delete it")


def _status(out: Path, status: str, message: str = "") -> None:
    write_json_atomic(out / "status.json", {"status": status, "message": message})


def run(config: Config, out_dir: str | Path, progress: bool = True, log=print) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Run one continual experiment; return the summary written to ``out_dir/summary.json``.

    Before any work the run directory and the feature cache are checked (writable; the
    directory empty or holding this configuration's run). ``RUN_DIR/status.json`` says
    ``running`` while it works, ``failed`` or ``interrupted`` with the reason when it
    stops early, and the summary's status (``ok``, ``diverged``) at the end.
    """
    out = Path(out_dir)
    check_run_dir(out, config)
    ensure_writable_dir(config["features"]["cache_dir"], "features.cache_dir")
    _status(out, "running")
    try:
        summary = _run(config, out, progress, log)
    except KeyboardInterrupt:
        _status(out, "interrupted", "stopped by the user or the scheduler; a rerun resumes after the last finished task")
        raise
    except BaseException as exc:
        _status(out, "failed", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise
    _status(out, summary["status"], summary["message"])
    return summary


def _run(config: Config, out: Path, progress: bool, log) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    ckpt = out / "checkpoints"
    cfg_hash = config_hash(config)
    # cuBLAS is deterministic only with a fixed workspace, read when CUDA starts (a no-op once it has).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))  # the resolved config, for people
    device = resolve_device(config["device"])
    start = time.perf_counter()
    store = FeatureStore(config, progress=progress, log=log)
    tasks = load_tasks(config, store)
    features_seconds = time.perf_counter() - start
    n = len(tasks)
    dim = int(tasks[0].train.patches.shape[-1])
    state = RunState.load(ckpt / "progress.json", n, cfg_hash)
    learner = Learner(config, dim).to(device)
    replay = ReplayBuffer(config["strategy"]["replay_images"], config["seed"]) if learner.strategy == "replay" else None
    for task in range(state.completed):
        learner.add_task(np.asarray(tasks[task].train.router))
        if replay is not None:
            replay.add(task, tasks[task].train.patches)
    if state.completed:
        _restore(learner, ckpt, state.completed)
        log(f"resuming after task {state.completed - 1} ({tasks[state.completed - 1].category})")
    status, message = "ok", ""
    last_eval: list[TaskEvaluation] = []
    for task in range(state.completed, n):
        data = tasks[task]
        learner.add_task(np.asarray(data.train.router))
        result = train_task(learner, task, data.train.patches, config, device, replay)
        state.timings["training"] += result.seconds
        state.timings["training_per_task"].append(result.seconds)
        if result.status != "ok":
            status, message = result.status, result.message
            state.tasks.append({"task": task, "category": data.category, "status": result.status,
                                "epoch_losses": result.epoch_losses})
            log(f"task {task} ({data.category}): {message}")
            break
        if learner.strategy == "ewc":
            learner.consolidate(task, empirical_fisher(learner, task, data.train.patches, config, device))
        if replay is not None:
            replay.add(task, data.train.patches)
        eval_start = time.perf_counter()
        last_eval = [evaluate_task(learner, i, tasks[i], config, device) for i in range(task + 1)]
        state.timings["evaluation"] += time.perf_counter() - eval_start
        for i, ev in enumerate(last_eval):
            for mode in MODES:
                for metric in METRICS:
                    state.matrices[mode][metric][task][i] = getattr(ev, mode)[metric]
        true_ids = np.concatenate([np.full(len(ev.routed_to), i) for i, ev in enumerate(last_eval)])
        routed_ids = np.concatenate([ev.routed_to for ev in last_eval])
        state.routing.append({"after_task": task, "accuracy": routing_accuracy(true_ids, routed_ids),
                              "confusion": routing_confusion(true_ids, routed_ids, task + 1).tolist()})
        state.tasks.append({"task": task, "category": data.category, "status": "ok", "epoch_losses": result.epoch_losses})
        _checkpoint(learner, ckpt, task)
        state.completed = task + 1
        write_json_atomic(ckpt / "progress.json", state.to_json())
        _drop_superseded(ckpt, task)
        cur = last_eval[-1].oracle
        loss = f"loss {result.epoch_losses[-1]:.1f}" if result.epoch_losses else "no training"
        log(f"task {task} ({data.category}): trained in {result.seconds:.1f} s, {loss}; "
            f"I-AUROC {cur['image_auroc']:.3f} P-AUROC {cur['pixel_auroc']:.3f}; routing {state.routing[-1]['accuracy']:.3f}")
    if state.completed == n and not last_eval:  # finished earlier: evaluate the restored learner for the samples
        last_eval = [evaluate_task(learner, i, tasks[i], config, device) for i in range(n)]
    summary = _summary(config, cfg_hash, tasks, state, status, message, dim, features_seconds, store, device)
    summary["timings"]["total"] = time.perf_counter() - start
    _write_outputs(out, summary, state, tasks, last_eval, config)
    return summary


def _summary(config: Config, cfg_hash: str, tasks: list[TaskData], state: RunState, status: str, message: str,
             dim: int, features_seconds: float, store: FeatureStore, device: torch.device) -> dict[str, Any]:
    done = state.completed
    names = [t.category for t in tasks]
    final: dict[str, Any] = {}
    if done:
        for i in range(done):
            final[names[i]] = {mode: {m: state.matrices[mode][m][done - 1][i] for m in METRICS} for mode in MODES}
    routing = state.routing[-1] if state.routing else None
    return {
        "status": status,
        "message": message,
        "config": config,
        "config_hash": cfg_hash,
        "seed": config["seed"],
        "strategy": config["strategy"]["name"],
        "tasks": names,
        "tasks_completed": done,
        "final": final,
        "mean": {mode: {m: float(np.mean([final[c][mode][m] for c in final])) if final else None for m in METRICS} for mode in MODES},
        "accuracy_matrix": state.matrices["routed"],
        "accuracy_matrix_oracle": state.matrices["oracle"],
        "forgetting": {m: _forgetting(state.matrices["routed"][m], done) for m in METRICS},
        "forgetting_oracle": {m: _forgetting(state.matrices["oracle"][m], done) for m in METRICS},
        "routing_accuracy": routing["accuracy"] if routing else None,
        "routing_confusion": routing["confusion"] if routing else None,
        "routing_accuracy_after_task": [r["accuracy"] for r in state.routing],
        "params": parameter_counts(config, dim),
        "memory": memory_per_task(config, dim, int(np.prod(tasks[0].train.patches.shape[1:3])),
                                  int(np.mean([len(t.train.patches) for t in tasks]))),
        "per_task": state.tasks,
        "timings": {"features": features_seconds, "training": state.timings["training"],
                    "training_per_task": state.timings["training_per_task"], "evaluation": state.timings["evaluation"],
                    "feature_cache": {"hits": store.stats["hits"], "misses": store.stats["misses"]}},
        "environment": {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine()},
    }


def _write_outputs(out: Path, summary: dict[str, Any], state: RunState, tasks: list[TaskData],
                   last_eval: list[TaskEvaluation], config: Config) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["after_task", "task", "category", "mode", *METRICS])
    for j in range(state.completed):
        for i in range(j + 1):
            for mode in MODES:
                writer.writerow([j, i, tasks[i].category, mode, *[state.matrices[mode][m][j][i] for m in METRICS]])
    write_text_atomic(out / "tasks.csv", buffer.getvalue())
    names = [t.category for t in tasks]
    save_accuracy_heatmaps(out / "accuracy_matrix.png", state.matrices["routed"], names,
                           f"accuracy matrices, routed ({config['strategy']['name']}, seed {config['seed']})")
    count = config["evaluation"]["sample_images"]
    root = Path(config["dataset"]["root"])
    feats = config["features"]
    for i, ev in enumerate(last_eval):
        test = tasks[i].test
        labels = np.asarray(test.labels)
        for k in pick_samples(labels, test.defects, count):
            save_sample(out / "samples" / f"{tasks[i].category}_{k:03d}.png", root / test.images[k], feats["resize"],
                        feats["input_size"], ev.routed_scores.maps[k], np.asarray(test.masks[k]),
                        float(ev.routed_scores.image[k]), f"{tasks[i].category}: {test.defects[k]}")
    write_json_atomic(out / "summary.json", summary)
