"""Parameters and memory per task against the LoRA rank, with and without DIA, against the paper's 8 % claim.

Counted on the model itself (:func:`moleflow.continual.learner.parameter_counts`): the
paper's configuration (D = 768, 6 coupling blocks, DIA 2) at ranks 16, 32, 64 and 128.
The paper states about 8 % of the base per task at rank 64 (Table 1: "+8%").
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import Result
from moleflow.config import load_config
from moleflow.continual.strategies import memory_per_task, parameter_counts

PAPER_CLAIM_PCT = 8.0
SIZES: dict[str, dict[str, Any]] = {
    "smoke": {"dim": 32, "ranks": (4, 8)},
    "full": {"dim": 768, "ranks": (16, 32, 64, 128)},
}


def run(scale: str = "full") -> Result:
    size = SIZES[scale]
    dim = size["dim"]
    result = Result(
        "params",
        "Parameters and memory per task against the LoRA rank",
        [
            "LoRA rank",
            "DIA blocks",
            "base params",
            "params / task",
            "% of base",
            "MB / task (float32)",
            "router KB / task",
        ],
        command=f"python -m benchmarks --only params --scale {scale}",
    )
    for rank in size["ranks"]:
        for dia in (2, 0):
            config = load_config(
                overrides=[f"model.lora_rank={rank}", f"model.dia_blocks={dia}", f"features.embed_dim={dim}"]
            )
            counts = parameter_counts(config, dim)
            memory = memory_per_task(config, dim, 28 * 28)
            result.add(
                rank,
                dia,
                int(counts["base"]),
                int(counts["per_task"]),
                counts["overhead_pct"],
                memory["bytes_per_task"] / 1e6,
                memory["router_bytes_per_task"] / 1e3,
            )
    at_64 = [row for row in result.rows if row[0] == 64 and row[1] == 2]
    claim = (
        f" At rank 64 with DIA the adapters are {at_64[0][4]:.1f} % of the base against the paper's "
        f"{PAPER_CLAIM_PCT:g} %."
        if at_64
        else ""
    )
    result.notes.append(
        f"D = {dim}, 6 coupling blocks (schema defaults); per task = LoRA A/B and task biases in every subnet linear, "
        "the whitening adapter and the DIA blocks; the router adds a float64 mean and precision (D + D^2 values) per "
        "task, listed apart because every strategy keeps it." + claim
    )
    return result
