"""Inference: images per second from features to scores (routing, flow, anomaly map, image score).

A learner of the embedded default's model (the CPU profile) with T tasks scores
batches whose images belong to different tasks: :func:`moleflow.continual.infer.predict`
routes each image and runs each routed group through its adapters in one pass. The
baseline, in the same process, is the same images one at a time. The backbone's own
rate (feature extraction) is given beside it, since a deployment pays both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmarks.common import Result, device, median_seconds, sync, synced
from moleflow.config import load_config, load_profile
from moleflow.continual.infer import predict
from moleflow.continual.learner import Learner
from moleflow.continual.settings import ScoreSettings
from moleflow.features import FeatureExtractor

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"dim": 16, "grid": 4, "tasks": 3, "batch": 4, "input": 32, "repeat": 2},
    "full": {"dim": 128, "grid": 16, "tasks": 6, "batch": 16, "input": 128, "repeat": 5},
}


def _config(size: dict[str, int]) -> dict:
    return load_config(
        overrides=[
            f"features.embed_dim={size['dim']}",
            f"features.input_size={size['input']}",
            f"features.resize={size['input']}",
            "device=auto",
        ],
        base=load_profile("cpu"),
    )


def make_learner(config: dict, dim: int, tasks: int, seed: int = 0) -> tuple[Learner, torch.Tensor]:
    """A learner with ``tasks`` tasks whose router prototypes are well apart; returns it and each task's centre."""
    rng = np.random.default_rng(seed)
    centres = torch.from_numpy(rng.normal(0, 3, (tasks, dim)))
    learner = Learner.from_config(config, dim)
    for t in range(tasks):
        learner.add_task(centres[t].numpy() + rng.normal(0, 1, (64, dim)))
    learner.eval()
    return learner, centres


def mixed_batch(centres: torch.Tensor, batch: int, grid: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` images cycling through the tasks: patches ``(B, g, g, D)`` and router features ``(B, D)``."""
    generator = torch.Generator().manual_seed(seed)
    dim = centres.shape[1]
    owners = torch.arange(batch) % centres.shape[0]
    router = centres[owners] + torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    patches = torch.randn(batch, grid, grid, dim, generator=generator)
    return patches, router.float()


def run(scale: str = "full") -> Result:
    size = SIZES[scale]
    dev = device()
    config = _config(size)
    learner, centres = make_learner(config, size["dim"], size["tasks"])
    learner.to(dev)
    result = Result(
        "inference",
        "Inference from features: routing, flow, map, score",
        ["mode", "batch", "ms / batch", "images / s", "relative to one at a time"],
        command=f"python -m benchmarks --only inference --scale {scale}",
    )
    patches, router = mixed_batch(centres, size["batch"], size["grid"])
    patches, router = patches.to(dev), router.to(dev)
    scoring = ScoreSettings.from_config(config)

    def one_at_a_time() -> None:
        for i in range(len(patches)):
            predict(learner, patches[i : i + 1], router[i : i + 1], scoring)
        sync()

    def grouped() -> None:
        predict(learner, patches, router, scoring)
        sync()

    single = median_seconds(synced(lambda: predict(learner, patches[:1], router[:1], scoring)), repeat=size["repeat"])
    loop = median_seconds(one_at_a_time, repeat=size["repeat"])
    batched = median_seconds(grouped, repeat=size["repeat"])
    n = len(patches)
    result.add("one image", 1, 1000 * single, 1 / single, loop / n / single)
    result.add("one image at a time", n, 1000 * loop, n / loop, 1.0)
    result.add(
        f"routed and grouped ({size['tasks']} tasks in the batch)", n, 1000 * batched, n / batched, loop / batched
    )
    extractor = FeatureExtractor.from_config(config)
    images = torch.rand(n, 3, size["input"], size["input"], generator=torch.Generator().manual_seed(2))
    backbone = median_seconds(lambda: extractor(images), repeat=size["repeat"])
    result.add(
        f"backbone + patch embedding ({config['features']['backbone']}, CPU)",
        n,
        1000 * backbone,
        n / backbone,
        float("nan"),
    )
    result.notes.append(
        f"CPU-profile model (D = {size['dim']}, {config['model']['coupling_blocks']} coupling blocks, rank "
        f"{config['model']['lora_rank']}, DIA {config['model']['dia_blocks']}) with {size['tasks']} tasks, "
        f"{size['grid']} x {size['grid']} patches per image, maps at {size['input']} px, device {dev}; "
        f"median of {size['repeat']} calls after one warm-up. The last column is the speed-up over scoring the same "
        "images one at a time."
    )
    return result
