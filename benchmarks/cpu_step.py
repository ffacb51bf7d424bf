"""The embedded default where it spends: the CPU profile's training step and evaluation, against the machine.

The main command's lane time is mostly training (about 70 %) and evaluation (about 9 %) of the
CPU profile's flow (``moleflow/configs/cpu.yaml``: D = 128, 4 coupling blocks, LoRA rank 16,
2 DIA blocks, batches of 4 maps of 20 x 20 patches, AdamW), not of the paper's shapes that
``flow_step`` and ``flops`` measure. Here, in one process on the same batch:

* one training step (forward, backward, the profile's optimiser as the training loop builds it)
  of task 0 (base and task 0's adapters) and task 1 (adapters only), beside a plain FrEIA
  ``AllInOneBlock`` flow of the same width and total depth (4 + 2 blocks, MLP subnet of hidden
  width D, standard normal NLL, AdamW);
* evaluation per image: the flow's forward without gradients, the patch scores, the blurred
  anomaly map and the image score, in the profile's evaluation batches;
* matrix-product and convolution FLOPs of each (``FlopCounterMode``), the achieved rate, and
  the share of two limits measured in the same process: a float32 product at the step's own
  shape (``(B*H*W, D) x (D, D)``) and a large ``2048^3`` one;
* the operations that take the time (``torch.profiler``, self CPU time of task 1's step and of
  evaluation, top operations).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import (
    Result,
    count_flops,
    device,
    interleaved_seconds,
    one_thread,
    paired_ratio,
    self_cpu_shares,
    sync,
)
from benchmarks.flow_step import flow_loss_step, flow_with_tasks, freia_step, plain_freia, trainable_flow
from moleflow.config import load_profile
from moleflow.continual.settings import TrainSettings
from moleflow.continual.train import make_optimizer
from moleflow.model import TailAwareLoss, anomaly_maps, image_scores

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"grid": 6, "repeat": 2, "eval_images": 4, "limit": 256, "profile_steps": 1},
    "full": {"grid": 20, "repeat": 7, "eval_images": 32, "limit": 2048, "profile_steps": 5},
}


def train_step(config: dict[str, Any], dim: int, x: torch.Tensor, task: int) -> Callable[[], None]:
    """One step of task ``task`` as the training loop takes it: the strategy's parameters, the profile's optimiser
    (``make_optimizer``) and Tail-Aware Loss."""
    model, params = trainable_flow(config, dim, task, x.device)
    settings = TrainSettings.from_config(config)
    loss_fn = TailAwareLoss(
        settings.tail_weight,
        settings.top_k_ratio,
        settings.logdet_reg,
        settings.nll_reduction,
        settings.tail_k_rounding,
    )
    return flow_loss_step(model, x, task, loss_fn, make_optimizer(params, settings))


def eval_call(config: dict[str, Any], dim: int, x: torch.Tensor) -> Callable[[], None]:
    """Score a batch of maps under task 1 as evaluation does: patch NLL, anomaly maps, image scores."""
    model = flow_with_tasks(config, dim, 2, x.device).eval()
    scoring = config["scoring"]
    size = config["features"]["input_size"]

    def call() -> None:
        with torch.no_grad():
            patch = -model(x, 1).log_prob
            anomaly_maps(patch, size, scoring["map_sigma"], scoring["map_padding"])
            image_scores(patch, scoring["image_top_k"])
        sync()

    return call


def _matmul(rows: int, inner: int, cols: int, dev: torch.device) -> Callable[[], None]:
    a, b = torch.randn(rows, inner, device=dev), torch.randn(inner, cols, device=dev)

    def call() -> None:
        a @ b
        sync()

    return call


def top_operations(fn: Callable[[], None], steps: int, count: int = 6) -> str:
    """The ``count`` operations with the most self CPU time over ``steps`` calls: ``name share%``."""
    top = list(self_cpu_shares(fn, steps).items())[:count]
    return ", ".join(f"{name} {100 * share:.0f}%" for name, share in top)


def run(scale: str = "full") -> Result:
    """Measured with one torch thread, as the workflow's jobs train (``threads: 1``, two jobs side by side)."""
    with one_thread():
        return _measure(SIZES[scale], scale)


def _measure(size: dict[str, Any], scale: str) -> Result:
    config = load_profile("cpu")
    dim, batch = config["features"]["embed_dim"], config["training"]["batch_size"]
    grid, repeat, dev = size["grid"], size["repeat"], device()
    blocks = config["model"]["coupling_blocks"] + config["model"]["dia_blocks"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, grid, grid, dim, generator=gen).to(dev)
    test = torch.randn(size["eval_images"], grid, grid, dim, generator=gen).to(dev)
    torch.manual_seed(0)
    steps = {
        "plain": freia_step(plain_freia(dim, blocks).to(dev), x),
        "task0": train_step(config, dim, x, 0),
        "task1": train_step(config, dim, x, 1),
        "eval": eval_call(config, dim, test),
        "limit_shape": _matmul(batch * grid * grid, dim, dim, dev),
        "limit": _matmul(size["limit"], size["limit"], size["limit"], dev),
    }
    flops = {name: count_flops(fn) for name, fn in steps.items()}
    times = interleaved_seconds(steps, repeat=repeat)
    rate = {name: flops[name] / statistics.median(times[name]) for name in steps}
    labels = {
        "plain": f"plain FrEIA AllInOneBlock x {blocks}, MLP subnet, AdamW (training step)",
        "task0": "MoLE flow, task 0 (base + task 0's own; training step)",
        "task1": "MoLE flow, task 1 (adapters only; training step)",
        "eval": f"MoLE flow, evaluation of {size['eval_images']} images (forward, maps, scores)",
        "limit_shape": f"float32 product ({batch * grid * grid} x {dim}) x ({dim} x {dim}): the step's shape",
        "limit": f"float32 product {size['limit']}^3: the machine's large-product rate",
    }
    result = Result(
        "cpu_step",
        "The CPU profile's step and evaluation against the machine",
        [
            "work",
            "ms / call",
            "relative to the plain flow's step",
            "GFLOP / call",
            "FLOPs relative to the plain flow's step",
            "achieved GFLOP/s",
            "share of the product rate at the step's shape",
            "share of the 2048^3 rate",
        ],
        command=f"python -m benchmarks --only cpu_step --scale {scale}",
    )
    for name, label in labels.items():
        result.add(
            label,
            1000 * statistics.median(times[name]),
            paired_ratio(times[name], times["plain"]),
            flops[name] / 1e9,
            flops[name] / flops["plain"],
            rate[name] / 1e9,
            rate[name] / rate["limit_shape"],
            rate[name] / rate["limit"],
        )
    per_image = 1000 * statistics.median(times["eval"]) / size["eval_images"]
    result.notes.append(
        f"The CPU profile (moleflow/configs/cpu.yaml): D = {dim}, {config['model']['coupling_blocks']} coupling blocks, "
        f"rank {config['model']['lora_rank']}, {config['model']['dia_blocks']} DIA blocks, optimiser "
        f"{config['training']['optimizer']}, a batch of {batch} maps of {grid} x {grid} patches "
        f"({batch * grid * grid} vectors); device {dev}, one torch thread (as each workflow job); {repeat} interleaved rounds after one warm-up, medians, ratios "
        f"paired by round. Evaluation: {per_image:.2f} ms per image. FLOPs count matrix products and convolutions "
        "only (FlopCounterMode): the rest of the time (elementwise work, the clamp, the log-det sums, the optimiser, "
        "the framework's per-operation cost) is time without counted FLOPs, so a share well below 1 at the step's own "
        "shape says the step is not bound by its products."
    )
    for name in ("task1", "eval"):
        result.notes.append(
            f"Self CPU time of {labels[name]} by operation (torch.profiler, {size['profile_steps']} calls): "
            + top_operations(steps[name], size["profile_steps"])
            + "."
        )
    return result
