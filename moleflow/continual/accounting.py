"""What a strategy keeps: parameter counts of the configured model and memory per task (Table 1)."""

from __future__ import annotations

import math

import torch

from moleflow.config import Config
from moleflow.continual.learner import WITHOUT_FLOW, model_config
from moleflow.model import MoLEFlow
from moleflow.model.mole_flow import is_fixed_parameter, task_of_parameter


def parameter_counts(config: Config, dim: int) -> dict[str, float]:
    """Base and per-task parameter counts of the configured model.

    ``per_task`` counts a task ``t >= 1``'s adapters (LoRA, task biases, whitening, DIA);
    ``per_task_without_dia`` leaves DIA out; ``overhead_pct = 100 * per_task / base``.
    The ``knn`` reference and DNE have no parameters (their memory is counted by :func:`memory_per_task`);
    the joint flow has the base and one set of adapters, task 0's, serving every task: ``per_task`` is 0.
    """
    if config["strategy"]["name"] in WITHOUT_FLOW:
        nan = float("nan")
        return {
            "base": 0,
            "per_task": 0,
            "per_task_without_dia": 0,
            "overhead_pct": nan,
            "overhead_without_dia_pct": nan,
        }
    with torch.random.fork_rng(devices=[]):  # counting must not move the global RNG
        probe = MoLEFlow(model_config(config, dim))
        probe.add_task()
        probe.add_task()
    base = sum(p.numel() for p in probe.base_parameters())
    named = dict(probe.named_parameters())
    own = {n: p.numel() for n, p in named.items() if task_of_parameter(n) == 1}
    per_task = sum(own.values())
    without_dia = sum(v for n, v in own.items() if not n.startswith("dia."))
    if config["strategy"]["name"] == "joint":  # task 0's adapters serve every task: counted with the base
        base += sum(p.numel() for n, p in named.items() if task_of_parameter(n) == 0)
        per_task = without_dia = 0
    return {
        "base": base,
        "per_task": per_task,
        "per_task_without_dia": without_dia,
        "overhead_pct": 100.0 * per_task / base if base else float("nan"),
        "overhead_without_dia_pct": 100.0 * without_dia / base if base else float("nan"),
    }


def memory_per_task(config: Config, dim: int, patches_per_image: int, train_images: int = 0) -> dict[str, float]:
    """What each new task adds to what the strategy must keep, in parameters and bytes.

    Strategy-aware (Table 1's "memory per task"): ``separated`` keeps a whole model per
    task (the parameters a task >= 1's model trains: without the mixer when it is task 0's,
    with the blocks' global affine when it is trained; the fixed channel permutations are
    not counted, as in ``base``); ``frozen_base``, ``sequential`` and
    ``ewc`` keep the task's adapters (LoRA, task biases, whitening, DIA), ``replay``
    those plus ``replay_images`` feature maps
    of ``patches_per_image`` float16 ``dim``-vectors. ``fixed_bytes`` is kept once,
    whatever the number of tasks (EWC's Fisher diagonal and anchor). Every strategy also
    keeps one router prototype per task (mean and precision, float64):
    ``router_bytes_per_task``. Parameters are float32; ``pct_of_base`` is
    ``100 * bytes_per_task / base bytes``. ``knn`` keeps its memory bank
    (``ceil(knn_coreset_ratio * train_images * patches_per_image)`` float32 vectors per
    task, counted for ``train_images``) and has no base, so ``pct_of_base`` is NaN; with
    ``knn_bank: replaced`` it holds one bank at a time (``fixed_bytes``; the learner keeps
    the earlier ones only for its checkpoints and never reads them), and with ``joint`` or
    ``replaced`` it needs no router prototype. DNE keeps per task its Gaussian (count, mean
    and covariance of ``D_r``-vectors, float64, with the density fitted after it: mean and
    precision), and a router prototype only with ``dne_density: routed``. The joint flow
    keeps every task's training feature maps (float16, like Replay's buffer: it must train
    on all of them at once) and no router prototype; its model is counted as the base.
    """
    strategy = config["strategy"]["name"]
    if strategy == "dne":
        gaussian = 8.0 * (1 + 2 * (dim + dim * dim))  # count; mean, covariance; the density's mean and precision
        routed = config["strategy"]["dne_density"] == "routed"
        return {
            "params_per_task": 0.0,
            "bytes_per_task": gaussian,
            "pct_of_base": float("nan"),
            "fixed_bytes": 0.0,
            "router_bytes_per_task": 8.0 * (dim + dim * dim) if routed else 0.0,
        }
    if strategy == "knn":
        bank = 4.0 * math.ceil(config["strategy"]["knn_coreset_ratio"] * train_images * patches_per_image) * dim
        mode = config["strategy"]["knn_bank"]
        # replaced: one bank at a time, whatever the tasks; joint and replaced measure without the router
        return {
            "params_per_task": 0.0,
            "bytes_per_task": 0.0 if mode == "replaced" else bank,
            "pct_of_base": float("nan"),
            "fixed_bytes": bank if mode == "replaced" else 0.0,
            "router_bytes_per_task": 8.0 * (dim + dim * dim) if mode == "per_task" else 0.0,
        }
    counts = parameter_counts(config, dim)
    if strategy == "separated":
        with torch.random.fork_rng(devices=[]):
            whole = MoLEFlow(model_config(config, dim))
            whole.add_task()
        sep = config["strategy"]
        affine = "trained" if sep["separated_global_affine"] == "trained" else config["model"]["global_affine"]
        params = float(
            sum(
                p.numel()
                for n, p in whole.named_parameters()
                if not is_fixed_parameter(n, affine)
                and not (sep["separated_mixer"] == "shared" and n.startswith("mixer."))
            )
        )
    else:
        params = counts["per_task"]
    extra = 2.0 * config["strategy"]["replay_images"] * patches_per_image * dim if strategy == "replay" else 0.0
    if strategy == "joint":
        extra = 2.0 * train_images * patches_per_image * dim
    per_task = 4.0 * params + extra
    base_bytes = 4.0 * counts["base"]
    return {
        "params_per_task": float(params),
        "bytes_per_task": per_task,
        "pct_of_base": 100.0 * per_task / base_bytes if base_bytes else float("nan"),
        "fixed_bytes": 2.0 * base_bytes if strategy == "ewc" else 0.0,
        "router_bytes_per_task": 0.0 if strategy == "joint" else 8.0 * (dim + dim * dim),
    }
