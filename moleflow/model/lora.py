"""LoRALinear (eq. 20): a frozen-able base linear plus per-task low-rank adapters.

``h(x) = W x + b + (alpha / r) B_t A_t x + b_t``. Every task ``t`` gets ``A_t``
(xavier), ``B_t = 0`` and ``b_t = 0``, so a new task starts as exactly the base
function; task 0's adapter is trained together with the base (the paper's Sec. 3.1
and the authors' current code). With ``task0_adapters=False`` task 0 is the base
itself (the authors' earlier code).
Which task's adapter runs is set with :meth:`LoRALinear.set_task` (the flow sets it
on all its layers at once).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Module):
    """A linear layer with per-task LoRA adapters and task biases.

    Args:
        in_features, out_features: sizes of the base linear.
        rank: LoRA rank ``r``.
        alpha: LoRA scale numerator (scale = ``alpha / r``).
        use_lora: create ``A_t, B_t`` ("w/o LoRA" ablation: False).
        task_bias: create ``b_t``.
        task0_adapters: task 0 gets its adapter and bias too (else task 0 is the base alone).
    """

    def __init__(self, in_features: int, out_features: int, rank: int = 64, alpha: float = 1.0,
                 use_lora: bool = True, task_bias: bool = True, task0_adapters: bool = True) -> None:
        super().__init__()
        self.base = nn.Linear(in_features, out_features)
        self.rank, self.scale = rank, alpha / rank
        self.use_lora, self.use_task_bias, self.task0_adapters = use_lora, task_bias, task0_adapters
        self.lora_A = nn.ParameterDict()
        self.lora_B = nn.ParameterDict()
        self.task_bias = nn.ParameterDict()
        self.task = 0

    def add_task(self, task: int) -> None:
        """Create task ``task``'s adapter (for task 0 only with ``task0_adapters``)."""
        if task == 0 and not self.task0_adapters:
            return
        key = str(task)
        if self.use_lora:
            a = torch.empty(self.rank, self.base.in_features)
            nn.init.xavier_uniform_(a)
            self.lora_A[key] = nn.Parameter(a)
            self.lora_B[key] = nn.Parameter(torch.zeros(self.base.out_features, self.rank))
        if self.use_task_bias:
            self.task_bias[key] = nn.Parameter(torch.zeros(self.base.out_features))

    def set_task(self, task: int) -> None:
        """Select the adapter used by :meth:`forward`."""
        self.task = task

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in)`` -> ``(N, out)``."""
        out = self.base(x)
        key = str(self.task)
        if key in self.lora_A:
            out = out + self.scale * F.linear(F.linear(x, self.lora_A[key]), self.lora_B[key])
        if key in self.task_bias:
            out = out + self.task_bias[key]
        return out
