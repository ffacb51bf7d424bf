"""Complete separation (``separated``, the Full-Copy oracle): an independent full model per task, each trained
as a task 0 from scratch.

The authors' separation mode: ``strategy.separated_mixer: shared``, tasks >= 1 use task 0's spatial mixer, frozen;
``separated_global_affine: trained``, a later task's blocks train their global affine;
``separated_adapters: later``, a later task's input adapters start as a later task's do.
"""

from __future__ import annotations

import torch
from torch import nn

from moleflow.config import Config
from moleflow.continual.settings import model_config
from moleflow.continual.strategies.base import Models, Strategy
from moleflow.model import MoLEFlow
from moleflow.model.mole_flow import is_fixed_parameter, task_of_parameter


class Separated(Strategy):
    """One whole model per task; nothing is shared, nothing is forgotten."""

    name = "separated"
    shared_model = False

    def add_task(self, learner: Models, task: int) -> None:
        model = learner.new_model(task)
        # task 0's own adapters of this model (drawn from (seed, task) too), in a later task's form if asked
        model.add_task(first=None if task == 0 or self.options["separated_adapters"] == "first" else False)
        if task > 0 and self._shared_mixer() and model.mixer is not None:
            model.mixer = learner.flow(0).mixer  # task 0's mixer, one module: never trained again
        learner.models.append(model)

    def serving(self, task: int) -> tuple[int, int]:
        return task, 0

    def trainable_parameters(self, model: MoLEFlow, local: int, task: int) -> list[nn.Parameter]:
        own = model.task_parameters(local)
        if task == 0:
            return model.base_parameters() + own
        # the authors' separation trains every parameter of a later task's new flow, its global affine included
        base = (
            [p for n, p in model.named_parameters() if task_of_parameter(n) is None and not is_fixed_parameter(n)]
            if self.options["separated_global_affine"] == "trained"
            else model.base_parameters()
        )
        if self._shared_mixer() and model.mixer is not None:
            mixer = {id(p) for p in model.mixer.parameters()}
            base = [p for p in base if id(p) not in mixer]
        return base + own

    def warms_up(self, task: int) -> bool:
        return False  # each task's model is trained from scratch

    def stored_parameters(self, config: Config, dim: int, counts: dict[str, float]) -> float:
        """A task >= 1's whole model: the parameters it trains (without the mixer when it is task 0's, with the
        blocks' global affine when it is trained; the fixed channel permutations are not counted, as in ``base``)."""
        with torch.random.fork_rng(devices=[]):
            whole = MoLEFlow(model_config(config, dim))
            whole.add_task()
        trained = self.options["separated_global_affine"] == "trained"
        affine = "trained" if trained else config["model"]["global_affine"]
        return float(
            sum(
                p.numel()
                for n, p in whole.named_parameters()
                if not is_fixed_parameter(n, affine) and not (self._shared_mixer() and n.startswith("mixer."))
            )
        )

    def _shared_mixer(self) -> bool:
        return bool(self.options["separated_mixer"] == "shared")
