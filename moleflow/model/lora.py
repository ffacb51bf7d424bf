"""LoRALinear (eq. 20): a frozen-able base linear plus per-task low-rank adapters.

``h(x) = W x + b + (alpha / r) B_t A_t x + b_t``. Every task ``t`` gets ``A_t``
(xavier), ``B_t = 0`` and ``b_t = 0``, so a new task starts as exactly the base
function; task 0's adapter is trained together with the base (the paper's Sec. 3.1
and the authors' current code). With ``task0_adapters=False`` task 0 is the base
itself (the authors' earlier code).
Which task's adapter runs is set with :meth:`LoRALinear.set_task` (the flow sets it
on all its layers at once).

The adapter is applied as one product with the merged weight ``W + (alpha / r) B_t A_t``
(:class:`MergedLoRA`): one matrix product per call instead of three and no elementwise
passes over the ``(N, out)`` output, whose backward computes only the gradients asked
for, the adapter's through the two thin products (or from the weight's gradient when
the base trains too). The result equals the three-product form up to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MergedLoRA(torch.autograd.Function):
    """``x (W + s B A)^T + bias`` with gradients for exactly the inputs that need them.

    ``x`` ``(N, in)``, ``weight`` ``(out, in)``, ``bias`` ``(out,)``, ``lora_a`` ``(r, in)``,
    ``lora_b`` ``(out, r)``, ``scale`` ``s`` (a float) -> ``(N, out)``.
    Backward: ``dx = g (W + s B A)``; ``dW = g^T x`` and ``dbias = sum g`` only when the
    base trains; ``dB = s g^T (x A^T)`` and ``dA = s (g B)^T x`` through the ``(N, r)``
    products, or ``dB = s dW A^T``, ``dA = s B^T dW`` when ``dW`` is computed anyway.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        return F.linear(x, torch.addmm(weight, lora_b, lora_a, alpha=scale), bias)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, weight, _, lora_a, lora_b, scale = inputs
        ctx.save_for_backward(x, weight, lora_a, lora_b)
        ctx.scale = scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight, lora_a, lora_b = ctx.saved_tensors
        need_x, need_w, need_bias, need_a, need_b, _ = ctx.needs_input_grad
        s = ctx.scale
        g = grad.reshape(-1, grad.shape[-1])
        rows = x.reshape(-1, x.shape[-1])
        dx = dw = dbias = da = db = None
        if need_x:
            dx = grad @ torch.addmm(weight, lora_b, lora_a, alpha=s)
        if need_w:
            dw = g.t() @ rows
        if need_bias:
            dbias = g.sum(0)
        if need_a or need_b:
            if dw is not None:
                db, da = s * (dw @ lora_a.t()), s * (lora_b.t() @ dw)
            else:
                db, da = s * (g.t() @ (rows @ lora_a.t())), s * ((g @ lora_b).t() @ rows)
        return dx, dw, dbias, (da if need_a else None), (db if need_b else None), None


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

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int = 64,
        alpha: float = 1.0,
        use_lora: bool = True,
        task_bias: bool = True,
        task0_adapters: bool = True,
    ) -> None:
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
        key = str(self.task)
        bias = self.base.bias + self.task_bias[key] if key in self.task_bias else self.base.bias
        if key in self.lora_A:
            return MergedLoRA.apply(x, self.base.weight, bias, self.lora_A[key], self.lora_B[key], self.scale)
        return F.linear(x, self.base.weight, bias)
