"""Training one task from cached features (no backbone pass per epoch).

AdamP (or AdamW, Adam: ``training.optimizer``) on the parameters the strategy lets this
task change, cosine decay to ``lr * lr_min_ratio`` with a linear warm-up for tasks >= 1,
stepped per epoch or per optimiser step (``training.lr_schedule``), gradient-norm
clipping, the Tail-Aware Loss with the log-det regulariser, fixed epochs. Batches are
drawn from a generator seeded by ``(seed, task)``. A batch whose loss is not finite (or
above ``training.loss_ceiling``) is skipped and counted, as the authors' trainer does
(``training.nonfinite: skip``), or ends the run as ``diverged`` (``stop``); a task that
skips more than ``training.max_skipped_share`` of its batches is ``diverged`` too.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from moleflow.continual.learner import Learner
from moleflow.continual.settings import TrainSettings
from moleflow.continual.strategies.replay import ReplayBuffer
from moleflow.continual.tasks import PatchRows, rows_on
from moleflow.model import TailAwareLoss, greedy_coreset


@dataclass
class TrainResult:
    """Outcome of training one task."""

    status: str  # "ok" or "diverged"
    epoch_losses: list[float | None] = field(default_factory=list)  # None: every batch of the epoch skipped
    seconds: float = 0.0
    message: str = ""
    steps: int = 0  # optimiser steps taken
    skipped: int = 0  # batches skipped for a non-finite or too large loss (nonfinite: skip)


def _batch(patches: np.ndarray | PatchRows, index: np.ndarray, device: torch.device) -> torch.Tensor:
    """Rows ``index`` of a cache entry's ``(N, H, W, D)`` memmap (float16 or float32) as float32 on ``device``."""
    return rows_on(patches[np.sort(index)], device)


def _cosine(progress: float, min_ratio: float) -> float:
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def lr_factor(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Per-step multiplier (``lr_schedule: step``): linear warm-up over ``warmup`` steps, then cosine to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    return _cosine((step - warmup) / max(1, total - warmup), min_ratio)


def epoch_lr_factor(epoch: int, epochs: int, warmup: int, min_ratio: float) -> float:
    """Per-epoch multiplier (``lr_schedule: epoch``, the authors' trainer).

    Warm-up epochs ``e < warmup`` use ``(e + 1) / warmup``; later epochs follow
    ``CosineAnnealingLR(T_max=epochs)`` started after the warm-up, i.e. the cosine at
    ``(e - warmup) / epochs``: without a warm-up it reaches ``min_ratio`` only after the
    last epoch, with one it ends ``warmup`` epochs short of it.
    """
    if warmup > 0 and epoch < warmup:
        return (epoch + 1) / warmup
    return _cosine((epoch - warmup) / epochs, min_ratio)


def make_optimizer(params: list[torch.nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
    """The optimiser ``settings.optimizer`` names over ``params``.

    ``adamp``: AdamP (the ``adamp`` package) with the authors' settings, betas (0.9, 0.999),
    delta 0.1, wd_ratio 0.1, no Nesterov; ``adamw``/``adam``: torch's, with ``foreach`` (one
    fused update over the many small adapter tensors; the per-tensor loop is the CPU default).
    """
    if settings.optimizer == "adamp":
        from adamp import AdamP

        return AdamP(
            params,
            lr=settings.lr,
            betas=(0.9, 0.999),
            weight_decay=settings.weight_decay,
            delta=0.1,
            wd_ratio=0.1,
            nesterov=False,
        )
    kind = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[settings.optimizer]
    return kind(params, lr=settings.lr, weight_decay=settings.weight_decay, foreach=True)


def _objective(learner: Learner, task: int, x: torch.Tensor, loss_fn: TailAwareLoss) -> torch.Tensor:
    model, local = learner.model_for(task)
    out = model(x, local)
    loss, _ = loss_fn(-out.log_prob, out.logdet_flow + out.logdet_dia)
    return loss


def fit_memory(
    learner: Learner, task: int, patches: np.ndarray, settings: TrainSettings, device: torch.device
) -> TrainResult:
    """(knn) Store task ``task``'s training patches ``(N, H, W, D)`` (or their coreset) as its memory bank."""
    start = time.perf_counter()
    vectors = rows_on(patches, device).reshape(-1, patches.shape[-1])
    ratio = settings.knn_coreset_ratio
    if ratio < 1.0:
        vectors = vectors[greedy_coreset(vectors, ratio, seed=settings.batch_seed(task)).to(device)]
    learner.fit_memory(vectors)
    return TrainResult("ok", seconds=time.perf_counter() - start)


def train_task(
    learner: Learner,
    task: int,
    patches: np.ndarray | PatchRows,
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
        assert isinstance(patches, np.ndarray)  # one task's cache entry (only the joint flow stacks them)
        return fit_memory(learner, task, patches, settings, device)
    if not learner.has_maps:  # DNE: its Gaussian was fitted when the task was added; nothing to train
        return TrainResult("ok", seconds=0.0)
    start = time.perf_counter()
    params = learner.optimised_parameters(task)  # the authors' Sequential lists the task's own parameters twice
    wanted = {id(p) for p in params}
    for p in learner.parameters():
        p.requires_grad_(id(p) in wanted)
    with warnings.catch_warnings():  # a parameter listed twice is stepped twice: what that reading asks for
        warnings.filterwarnings("ignore", message="optimizer contains a parameter group with duplicate parameters")
        optimizer = make_optimizer(params, settings)
    loss_fn = settings.loss()
    generator = torch.Generator().manual_seed(settings.batch_seed(task))
    n = len(patches)
    steps_per_epoch = settings.steps_per_epoch(n)
    # a model trained from scratch (task 0, each separated model, the joint flow) has no warm-up
    warmup_epochs = settings.warmup_epochs if learner.strategy.warms_up(task) else 0
    per_epoch = settings.lr_schedule == "epoch"
    if per_epoch:
        schedule = lambda e: epoch_lr_factor(e, settings.epochs, warmup_epochs, settings.lr_min_ratio)  # noqa: E731
    else:
        total, warmup = steps_per_epoch * settings.epochs, steps_per_epoch * warmup_epochs
        schedule = lambda step: lr_factor(step, total, warmup, settings.lr_min_ratio)  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    skip = settings.nonfinite == "skip"
    learner.train()
    result = TrainResult("ok")
    for epoch in range(settings.epochs):
        order = torch.randperm(n, generator=generator).numpy()
        running, seen = 0.0, 0
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
            value = float(loss.detach())
            if not math.isfinite(value) or (skip and value > settings.loss_ceiling):
                if not skip:
                    result.status = "diverged"
                    result.message = f"non-finite loss at task {task}, epoch {epoch}, step {b}"
                    result.seconds = time.perf_counter() - start
                    return result
                result.skipped += 1  # the authors' trainer: no update from this batch
                continue
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.clip_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, settings.clip_grad_norm)
            optimizer.step()
            if not per_epoch:
                scheduler.step()
            result.steps += 1
            running += value * len(index)
            seen += len(index)
        if per_epoch:
            with warnings.catch_warnings():  # an epoch whose every batch was skipped made no optimiser step
                warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
                scheduler.step()
        result.epoch_losses.append(running / seen if seen else None)
        if (
            log is not None
            and settings.epochs >= 10
            and (epoch + 1) % (settings.epochs // 5) == 0
            and epoch + 1 < settings.epochs
        ):
            elapsed = time.perf_counter() - start
            log(
                f"{label}epoch {epoch + 1}/{settings.epochs}, {elapsed:.1f} s, "
                f"{(epoch + 1) * steps_per_epoch / elapsed:.1f} steps/s, loss {running / max(seen, 1):.1f}"
            )
    learner.eval()
    for p in learner.parameters():
        p.requires_grad_(False)
    result.seconds = time.perf_counter() - start
    batches = steps_per_epoch * settings.epochs
    if result.skipped > settings.max_skipped_share * batches:
        result.status = "diverged"
        result.message = (
            f"task {task} skipped {result.skipped} of its {batches} batches for a non-finite or too large "
            f"loss (more than training.max_skipped_share = {settings.max_skipped_share})"
        )
    return result


def empirical_fisher(
    learner: Learner, task: int, patches: np.ndarray, settings: TrainSettings, device: torch.device
) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of the base parameters on task ``task``'s training images ``(N, H, W, D)``.

    ``settings.ewc_fisher``:

    * ``per_image``: the mean over the images of the squared gradient of each image's own
      loss (the training objective on that image's patches alone), so its scale does not
      depend on the training batch size (a batch-mean gradient squared is about 1/batch of it);
    * ``batch`` (the authors' baselines script): shuffled training batches, each adding the
      squared gradient of its mean loss times its size, until ``ewc_fisher_images`` images
      have been seen; the sum divided by the images seen.

    ``settings.ewc_fisher_images`` caps the images used (``per_image``: a subset drawn from
    ``(seed, task)``; ``batch``: whole batches until at least that many).
    """
    loss_fn = settings.loss()
    named = learner.base_named_parameters(task)
    for p in named.values():
        p.requires_grad_(True)
    fisher = {n: torch.zeros_like(p) for n, p in named.items()}
    rng = np.random.default_rng([settings.seed, task, 0xF15])
    n, cap = len(patches), settings.ewc_fisher_images
    if settings.ewc_fisher == "batch":
        order, batches = rng.permutation(n), []
        for b in range(settings.steps_per_epoch(n)):
            if cap is not None and b * settings.batch_size >= cap:
                break
            batches.append(order[b * settings.batch_size : (b + 1) * settings.batch_size])
    else:
        rows = np.arange(n) if cap is None or cap >= n else np.sort(rng.choice(n, cap, replace=False))
        batches = [np.array([row]) for row in rows]
    seen = 0
    for index in batches:
        learner.zero_grad(set_to_none=True)
        _objective(learner, task, _batch(patches, index, device), loss_fn).backward()
        for name, p in named.items():
            if p.grad is not None:
                fisher[name] += p.grad.detach() ** 2 * len(index)
        seen += len(index)
    for p in named.values():
        p.requires_grad_(False)
        p.grad = None
    return {name: f / max(seen, 1) for name, f in fisher.items()}
