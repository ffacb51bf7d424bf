"""Where the CPU profile's training step spends beyond the plain flow: each part left out, and the optimiser alone.

``cpu_step`` says the step of the embedded default's flow is 1.3-1.5 times the plain FrEIA
flow of the same depth with about the same FLOPs, so the difference is not arithmetic.
This benchmark says which parts it is, in one process on one batch (one torch thread, as
every workflow job trains):

* the step of task 0 (base and task 0's own) and task 1 (adapters only) of the CPU profile,
  and the same step with one part left out (the spatial mixer, the positional encoding,
  the whitening adapter, the DIA blocks, the subnets' scale context, LoRA, the task
  biases): the difference is what that part costs, forward, backward and its share of
  the optimiser;
* the optimiser's step alone over task 0's and task 1's parameters: the profile's AdamW
  with ``foreach`` (what ``make_optimizer`` builds; on the CPU a loop over the tensors),
  AdamW ``fused`` (one kernel per tensor), and AdamP (the schema's default, the authors');
  and the gradient clipping the training loop adds;
* the depthwise convolutions' backward (the mixer's and the scale contexts') as a share of
  the step (``torch.profiler``, ``aten::convolution_backward``).

Leaving a part out changes the model, so these rows are costs, not options: the run's
numbers come from the profile as it is. Two sizes: the 16 x 16 grid of the studies that
run at 128 px, the 20 x 20 of the main study at 160 px.
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from typing import Any

import torch

from benchmarks.common import Result, device, interleaved_seconds, one_thread, paired_ratio, self_cpu_shares
from benchmarks.cpu_step import train_step
from benchmarks.flow_step import freia_step, plain_freia, trainable_flow
from moleflow.config import load_profile
from moleflow.continual.settings import TrainSettings
from moleflow.continual.train import make_optimizer

SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"grids": (4,), "repeat": 2, "profile_steps": 1},
    "full": {"grids": (16, 20), "repeat": 15, "profile_steps": 5},
}

#: Each part and the profile's keys that leave it out.
WITHOUT: dict[str, dict[str, Any]] = {
    "spatial mixer": {"spatial_mixer": False},
    "positional encoding": {"positional_encoding": False},
    "whitening adapter": {"whitening": False},
    "DIA blocks": {"dia_blocks": 0},
    "scale context": {"scale_context": False},
    "LoRA": {"lora": False},
    "task biases": {"task_bias": False},
}


def _without(config: dict[str, Any], model_keys: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(config)
    out["model"].update(model_keys)
    return out


def optimiser_step(config: dict[str, Any], dim: int, x: torch.Tensor, task: int, kind: str) -> Callable[[], None]:
    """The optimiser's ``step()`` alone over task ``task``'s parameters, gradients from one backward pass.

    ``kind``: ``profile`` (what ``make_optimizer`` builds for the profile), ``fused`` (AdamW, ``fused=True``),
    ``adamp`` (``make_optimizer`` with ``training.optimizer: adamp``) or ``clip`` (the gradient-norm clipping).
    """
    model, params = trainable_flow(config, dim, task, x.device)
    settings = TrainSettings.from_config(config)
    out = model(x, task)
    loss, _ = settings.loss()(-out.log_prob, out.logdet_flow + out.logdet_dia)
    loss.backward()
    if kind == "clip":

        def clip() -> None:
            torch.nn.utils.clip_grad_norm_(params, settings.clip_grad_norm)

        return clip
    if kind == "fused":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            params, lr=settings.lr, weight_decay=settings.weight_decay, fused=True
        )
    else:
        chosen = copy.deepcopy(config)
        if kind == "adamp":
            chosen["training"]["optimizer"] = "adamp"
        optimizer = make_optimizer(params, TrainSettings.from_config(chosen))

    def step() -> None:
        optimizer.step()

    return step


def run(scale: str = "full") -> Result:
    """Measured with one torch thread, as the workflow's jobs train."""
    with one_thread():
        return _measure(SIZES[scale], scale)


def _grid_rows(
    config: dict[str, Any], grid: int, size: dict[str, Any], dev: torch.device
) -> list[tuple[str, float, float]]:
    """``(work, ms at task 0, ms at task 1)`` rows on a ``grid x grid`` batch."""
    dim, batch = config["features"]["embed_dim"], config["training"]["batch_size"]
    blocks = config["model"]["coupling_blocks"] + config["model"]["dia_blocks"]
    x = torch.randn(batch, grid, grid, dim, generator=torch.Generator().manual_seed(0)).to(dev)
    torch.manual_seed(0)
    steps: dict[str, Callable[[], None]] = {"plain": freia_step(plain_freia(dim, blocks).to(dev), x)}
    kinds = ("profile", "fused", "adamp", "clip")
    for task in (0, 1):
        steps[f"full{task}"] = train_step(config, dim, x, task)
        for part, keys in WITHOUT.items():
            steps[f"{part}{task}"] = train_step(_without(config, keys), dim, x, task)
        for kind in kinds:
            steps[f"opt-{kind}{task}"] = optimiser_step(config, dim, x, task, kind)
    times = interleaved_seconds(steps, repeat=size["repeat"])
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}

    def cost(t: int, part: str) -> float:  # what the step loses without the part, paired by round
        return ms[f"full{t}"] * (1 - 1 / paired_ratio(times[f"full{t}"], times[f"{part}{t}"]))

    def conv_backward(t: int) -> float:
        shares = self_cpu_shares(steps[f"full{t}"], size["profile_steps"])
        return ms[f"full{t}"] * shares.get("aten::convolution_backward", 0.0)

    rows = [
        ("the whole step", ms["full0"], ms["full1"]),
        (f"plain FrEIA AllInOneBlock x {blocks} (one step, the same in both columns)", ms["plain"], ms["plain"]),
    ]
    for part in WITHOUT:
        rows.append((f"cost of the {part} (the step minus the step without it)", cost(0, part), cost(1, part)))
    labels = {
        "profile": f"optimiser step alone: the profile's ({config['training']['optimizer']}, foreach)",
        "fused": "optimiser step alone: AdamW fused",
        "adamp": "optimiser step alone: AdamP (the schema's default)",
        "clip": f"gradient clipping alone (norm {config['training']['clip_grad_norm']})",
    }
    for kind, label in labels.items():
        rows.append((label, ms[f"opt-{kind}0"], ms[f"opt-{kind}1"]))
    rows.append(("depthwise convolutions' backward (profiler share x step)", conv_backward(0), conv_backward(1)))
    return rows


def _measure(size: dict[str, Any], scale: str) -> Result:
    config = load_profile("cpu")
    dim, batch = config["features"]["embed_dim"], config["training"]["batch_size"]
    dev = device()
    result = Result(
        "step_parts",
        "Where the CPU profile's step spends beyond the plain flow",
        ["grid", "work", "task 0: ms", "task 0: share of its step", "task 1: ms", "task 1: share of its step"],
        command=f"python -m benchmarks --only step_parts --scale {scale}",
    )
    for grid in size["grids"]:
        rows = _grid_rows(config, grid, size, dev)
        whole = rows[0]
        for work, a, b in rows:
            result.add(grid, work, a, a / whole[1], b, b / whole[2])
    result.notes.append(
        f"The CPU profile (moleflow/configs/cpu.yaml): D = {dim}, {config['model']['coupling_blocks']} coupling blocks, "
        f"rank {config['model']['lora_rank']}, {config['model']['dia_blocks']} DIA blocks, batches of {batch} maps; "
        f"device {dev}, one torch thread; {size['repeat']} interleaved rounds after one warm-up, medians. A part's "
        "cost is the step's median times (1 - 1 / the paired ratio of the step to the step without it), so it "
        "includes the part's backward and its tensors' share of the optimiser; parts interact, so the costs need "
        "not add up to the difference from the plain flow. The optimiser rows time `step()` alone on gradients "
        "of one backward pass; AdamW fused and AdamP are not what the profile trains with (the profile's "
        "numbers come from its own optimiser), they say what the optimiser's share could be."
    )
    return result
