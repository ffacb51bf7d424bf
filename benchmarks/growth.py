"""Growth with the number of tasks T: training time per task, inference time per image, checkpoint size.

One frozen-base learner of the embedded default's model (CPU profile) learns T = 30
tasks one after another; at T = 5, 10, 15 and 30 it records the training time of the
latest task, the time to score a batch of images drawn from every task (routing over
T prototypes, then the grouped flow passes), and the bytes of its checkpoint (the base
once, each task's adapters and router prototype, as ``moleflow run`` writes them). The
tasks are generated patch maps (a Gaussian per task, centres apart): the cost depends
on the shapes, not on the pictures. The order of growth is the log-log slope from the
smallest to the largest T.
"""

from __future__ import annotations

import io
import math
import time
from functools import partial
from typing import Any

import numpy as np
import torch

from benchmarks.common import Result, device, median_seconds, synced
from benchmarks.inference import make_learner, mixed_batch
from moleflow.config import load_config, load_profile
from moleflow.continual.infer import predict
from moleflow.continual.settings import ScoreSettings, TrainSettings
from moleflow.continual.train import train_task

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"dim": 16, "grid": 4, "images": 4, "epochs": 1, "points": (2, 3, 4), "batch": 4},
    "full": {"dim": 128, "grid": 16, "images": 40, "epochs": 2, "points": (5, 10, 15, 30), "batch": 32},
}


def _bytes(tensors: dict[str, torch.Tensor]) -> int:
    buffer = io.BytesIO()
    torch.save({k: v.cpu() for k, v in tensors.items()}, buffer)
    return buffer.getbuffer().nbytes


def _slope(xs: list[float], ys: list[float]) -> float:
    return (math.log(ys[-1]) - math.log(ys[0])) / (math.log(xs[-1]) - math.log(xs[0]))


def run(scale: str = "full") -> Result:
    size = SIZES[scale]
    dim, grid, points = size["dim"], size["grid"], size["points"]
    config = load_config(
        overrides=[f"features.embed_dim={dim}", f"training.epochs={size['epochs']}", "device=auto"],
        base=load_profile("cpu"),
    )
    dev = device()
    learner, centres = make_learner(config, dim, 0)
    learner.to(dev)
    rng = np.random.default_rng(3)
    all_centres = rng.normal(0, 3, (points[-1], dim))
    result = Result(
        "growth",
        "Growth with the number of tasks T",
        ["T", "training s (task T)", "inference ms / image", "checkpoint MB", "checkpoint MB / task"],
        command=f"python -m benchmarks --only growth --scale {scale}",
    )
    base_bytes = None
    task_bytes = 0
    training, scoring = TrainSettings.from_config(config), ScoreSettings.from_config(config)
    for task in range(points[-1]):
        patches = rng.normal(all_centres[task, None, None, None, :] / 3, 1, (size["images"], grid, grid, dim)).astype(
            np.float16
        )
        learner.add_task(all_centres[task] + rng.normal(0, 1, (64, dim)))
        start = time.perf_counter()
        assert train_task(learner, task, patches, training, dev).status == "ok"
        seconds = time.perf_counter() - start
        base_bytes = base_bytes or _bytes(learner.base_state())
        task_bytes += _bytes(learner.task_state(task))
        count = task + 1
        if count in points:
            centres = torch.from_numpy(all_centres[:count])
            x, router = mixed_batch(centres, size["batch"], grid)
            x, router = x.to(dev), router.to(dev)
            infer = median_seconds(synced(partial(predict, learner, x, router, scoring)), repeat=3)
            total = base_bytes + task_bytes
            result.add(count, seconds, 1000 * infer / size["batch"], total / 1e6, task_bytes / count / 1e6)
    ts = [float(t) for t in result.column("T")]
    slopes = {
        name: _slope(ts, [float(v) for v in result.column(name)])
        for name in ("training s (task T)", "inference ms / image", "checkpoint MB")
    }
    result.notes.append(
        f"CPU-profile model (D = {dim}, {config['model']['coupling_blocks']} coupling blocks, rank "
        f"{config['model']['lora_rank']}, DIA {config['model']['dia_blocks']}), {size['images']} training maps of "
        f"{grid} x {grid} patches per task, {size['epochs']} epochs, inference on a batch of {size['batch']} images "
        f"drawn from all T tasks, device {dev}. Measured order of growth (log-log slope, T = {points[0]} to "
        f"{points[-1]}): training per task T^{slopes['training s (task T)']:.2f}, inference per image "
        f"T^{slopes['inference ms / image']:.2f}, checkpoint T^{slopes['checkpoint MB']:.2f} (the base is fixed, each "
        "task adds the same adapters, so the checkpoint is affine in T)."
    )
    return result
