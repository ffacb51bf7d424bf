"""MoLE-Flow (``frozen_base``): task 0 trains the base and task 0's adapters; a task ``t >= 1`` trains only
its own adapters (LoRA, task biases, whitening, DIA), so the base and every earlier task's tensors stay
bitwise unchanged and each task is stored as its own tensors."""

from __future__ import annotations

from torch import nn

from moleflow.continual.strategies.base import Strategy
from moleflow.model import MoLEFlow


class FrozenBase(Strategy):
    """The method: base frozen after task 0, adapters per task."""

    name = "frozen_base"
    per_task_checkpoints = True

    def trainable_parameters(self, model: MoLEFlow, local: int, task: int) -> list[nn.Parameter]:
        own = model.task_parameters(local)
        return model.base_parameters() + own if task == 0 else own
