"""Training one task from cached features (no backbone pass per epoch).

AdamW on the parameters the strategy lets this task change, cosine decay to
``lr * lr_min_ratio`` with a linear warm-up for tasks >= 1, gradient-norm
clipping, the Tail-Aware Loss with the log-det regulariser, fixed epochs. Batches
are drawn from a generator seeded by ``(seed, task)``. A non-finite loss stops
training and reports ``diverged``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from moleflow.continual.learner import Learner
from moleflow.continual.settings import TrainSettings
from moleflow.model import TailAwareLoss, greedy_coreset


@dataclass
class TrainResult:
    """Outcome of training one task."""

    status: str  # "ok" or "diverged"
    epoch_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""
    steps: int = 0  # optimiser steps taken


def _batch(patches: np.ndarray, index: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows ``index`` of a float16 ``(N, H, W, D)`` memmap as float32 on ``device``."""
    return torch.from_numpy(np.asarray(patches[np.sort(index)], dtype=np.float32)).to(device)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then cosine to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class ReplayBuffer:
    """Feature maps of earlier tasks: ``(task, patches memmap, indices)`` per task."""

    def __init__(self, images_per_task: int, seed: int) -> None:
        self.images_per_task, self.seed = images_per_task, seed
        self.entries: list[tuple[int, np.ndarray, np.ndarray]] = []

    def add(self, task: int, patches: np.ndarray) -> None:
        rng = np.random.default_rng([self.seed, task, 17])
        count = min(self.images_per_task, len(patches))
        self.entries.append((task, patches, np.sort(rng.choice(len(patches), count, replace=False))))

    def sample(self, generator: torch.Generator, size: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Draw ``size`` stored maps uniformly; return ``(task, patches, rows)`` groups."""
        if not self.entries:
            return []
        pool = [(t, p, i) for t, p, rows in self.entries for i in rows]
        picks = torch.randint(len(pool), (size,), generator=generator).tolist()
        groups: dict[int, tuple[np.ndarray, list[int]]] = {}
        for k in picks:
            task, patches, row = pool[k]
            groups.setdefault(task, (patches, []))[1].append(int(row))
        return [(task, patches, np.array(rows)) for task, (patches, rows) in sorted(groups.items())]


def _objective(learner: Learner, task: int, x: torch.Tensor, loss_fn: TailAwareLoss) -> torch.Tensor:
    model, local = learner.model_for(task)
    out = model(x, local)
    loss, _ = loss_fn(-out.log_prob, out.logdet_flow + out.logdet_dia)
    return loss


def fit_memory(learner: Learner, task: int, patches: np.ndarray, settings: TrainSettings, device: torch.device) -> TrainResult:
    """(knn) Store task ``task``'s training patches ``(N, H, W, D)`` (or their coreset) as its memory bank."""
    start = time.perf_counter()
    vectors = torch.from_numpy(np.asarray(patches, dtype=np.float32).reshape(-1, patches.shape[-1])).to(device)
    ratio = settings.knn_coreset_ratio
    if ratio < 1.0:
        vectors = vectors[greedy_coreset(vectors, ratio, seed=settings.batch_seed(task)).to(device)]
    learner.fit_memory(vectors)
    return TrainResult("ok", seconds=time.perf_counter() - start)


def train_task(
    learner: Learner,
    task: int,
    patches: np.ndarray,
    settings: TrainSettings,
    device: torch.device,
    replay: ReplayBuffer | None = None,
    log: Callable[[str], None] | None = None,
    label: str = "",
) -> TrainResult:
    """Train task ``task`` on its training features ``(N, H, W, D)`` (knn: store its memory bank).

    ``log`` gets a progress line every fifth of a long task (10 epochs or more): epochs
    done, elapsed time, steps per second and the epoch's loss, so that a log read
    without a terminal (a Snakemake or cluster job's) shows a slow run from a stuck one.
    """
    if learner.knn is not None:
        return fit_memory(learner, task, patches, settings, device)
    start = time.perf_counter()
    params = learner.trainable_parameters(task)
    wanted = {id(p) for p in params}
    for p in learner.parameters():
        p.requires_grad_(id(p) in wanted)
    # foreach: one fused update over the many small adapter tensors (the per-tensor loop is the CPU default)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay, foreach=True)
    loss_fn = settings.loss()
    generator = torch.Generator().manual_seed(settings.batch_seed(task))
    n = len(patches)
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total = steps_per_epoch * settings.epochs
    warmup = steps_per_epoch * settings.warmup_epochs if task > 0 and learner.strategy != "separated" else 0
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total, warmup, settings.lr_min_ratio)
    )
    learner.train()
    result = TrainResult("ok")
    for epoch in range(settings.epochs):
        order = torch.randperm(n, generator=generator).numpy()
        running = 0.0
        for b in range(steps_per_epoch):
            index = order[b * settings.batch_size : (b + 1) * settings.batch_size]
            x = _batch(patches, index, device)
            loss = _objective(learner, task, x, loss_fn)
            if replay is not None and replay.entries:
                parts, weights = [loss * len(index)], [len(index)]
                for old_task, old_patches, rows in replay.sample(generator, settings.batch_size):
                    parts.append(_objective(learner, old_task, _batch(old_patches, rows, device), loss_fn) * len(rows))
                    weights.append(len(rows))
                loss = torch.stack(parts).sum() / sum(weights)
            penalty = learner.ewc_penalty(task)
            if penalty is not None:
                loss = loss + penalty
            if not torch.isfinite(loss):
                result.status = "diverged"
                result.message = f"non-finite loss at task {task}, epoch {epoch}, step {b}"
                result.seconds = time.perf_counter() - start
                return result
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, settings.clip_grad_norm)
            optimizer.step()
            scheduler.step()
            result.steps += 1
            running += float(loss.detach()) * len(index)
        result.epoch_losses.append(running / n)
        if log is not None and settings.epochs >= 10 and (epoch + 1) % (settings.epochs // 5) == 0 and epoch + 1 < settings.epochs:
            elapsed = time.perf_counter() - start
            log(f"{label}epoch {epoch + 1}/{settings.epochs}, {elapsed:.1f} s, "
                f"{(epoch + 1) * steps_per_epoch / elapsed:.1f} steps/s, loss {running / n:.1f}")
    learner.eval()
    for p in learner.parameters():
        p.requires_grad_(False)
    result.seconds = time.perf_counter() - start
    return result


def empirical_fisher(learner: Learner, task: int, patches: np.ndarray, settings: TrainSettings,
                     device: torch.device) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of the base parameters on task ``task``'s training images ``(N, H, W, D)``.

    Per-sample: the mean over the ``N`` images of the squared gradient of each image's own
    loss (the training objective on that image's patches alone), so its scale does not
    depend on the training batch size (a batch-mean gradient squared is about 1/batch of it).
    """
    loss_fn = settings.loss()
    named = learner.base_named_parameters(task)
    for p in named.values():
        p.requires_grad_(True)
    fisher = {n: torch.zeros_like(p) for n, p in named.items()}
    for index in range(len(patches)):
        learner.zero_grad(set_to_none=True)
        _objective(learner, task, _batch(patches, np.array([index]), device), loss_fn).backward()
        for n, p in named.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach() ** 2
    for p in named.values():
        p.requires_grad_(False)
        p.grad = None
    return {n: f / max(len(patches), 1) for n, f in fisher.items()}
