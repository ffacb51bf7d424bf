"""Sequential fine-tuning (``sequential``): the base is trained in every task, with the task's adapters.

``strategy.sequential_linears: frozen`` (the authors' reading): a later task trains all of the shared model
but the subnets' base linears (the blocks' global affine included, which their model never freezes);
``strategy.sequential_adapter_updates: twice``: the task's own parameters are listed twice in the optimiser
(first alone, then with every trainable parameter), as the authors' trainer lists them.
"""

from __future__ import annotations

from torch import nn

from moleflow.continual.strategies.base import Strategy
from moleflow.model import MoLEFlow
from moleflow.model.mole_flow import is_fixed_parameter, task_of_parameter


class Sequential(Strategy):
    """Base and adapters trained in every task (the forgetting baseline)."""

    name = "sequential"

    def trainable_parameters(self, model: MoLEFlow, local: int, task: int) -> list[nn.Parameter]:
        if task > 0 and self.options["sequential_linears"] == "frozen":
            linears = {id(p) for p in model.base_linear_parameters()}
            shared = [
                p
                for n, p in model.named_parameters()
                if task_of_parameter(n) is None and id(p) not in linears and not is_fixed_parameter(n)
            ]
            return shared + model.task_parameters(local)
        return super().trainable_parameters(model, local, task)

    def optimised_parameters(
        self, model: MoLEFlow, local: int, task: int, trainable: list[nn.Parameter]
    ) -> list[nn.Parameter]:
        if task > 0 and self.options["sequential_adapter_updates"] == "twice":
            return model.task_parameters(local) + trainable
        return trainable
