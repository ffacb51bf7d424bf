"""What a continual strategy decides, in one class: :class:`Strategy`.

The learner, the training loop, the checkpoints, the memory accounting (Table 1) and the planner ask a
strategy object; none of them compares a strategy's name. A strategy is one module of this package: a
subclass of :class:`Strategy` with a ``name`` (registered when its module is imported, see
:mod:`moleflow.continual.strategies`) that overrides the defaults below where it differs. The defaults are
the plainest continual flow: one shared model (base and per-task adapters) whose base and the task's own
adapters are trained in every task, stored whole after each task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch
from torch import nn

from moleflow.config import Config
from moleflow.continual.settings import TrainSettings, model_config
from moleflow.model import GaussianMemory, MoLEFlow, NearestNeighbourScorer
from moleflow.model.mole_flow import task_of_parameter

if TYPE_CHECKING:  # the buffer is the replay strategy's own (strategies/replay.py, which imports this module)
    from moleflow.continual.strategies.replay import ReplayBuffer


class Models(Protocol):
    """What a strategy builds its models in (the learner): its list of flows, typed access, and a fresh flow."""

    models: nn.ModuleList

    def flow(self, index: int) -> MoLEFlow: ...

    def new_model(self, salt: int) -> MoLEFlow: ...


#: name -> strategy class, filled as each strategy's module is imported (``Strategy.__init_subclass__``).
REGISTRY: dict[str, type[Strategy]] = {}


def flow_counts(config: Config, dim: int) -> dict[str, int]:
    """Parameter counts of the configured flow: ``base`` (shared, trainable), ``task0`` (task 0's own),
    ``per_task`` (a task ``t >= 1``'s own: LoRA, task biases, whitening, DIA) and ``per_task_without_dia``."""
    with torch.random.fork_rng(devices=[]):  # counting must not move the global RNG
        probe = MoLEFlow(model_config(config, dim))
        probe.add_task()
        probe.add_task()
    named = dict(probe.named_parameters())
    own = {n: p.numel() for n, p in named.items() if task_of_parameter(n) == 1}
    return {
        "base": sum(p.numel() for p in probe.base_parameters()),
        "task0": sum(p.numel() for n, p in named.items() if task_of_parameter(n) == 0),
        "per_task": sum(own.values()),
        "per_task_without_dia": sum(v for n, v in own.items() if not n.startswith("dia.")),
    }


@dataclass(frozen=True)
class CostInputs:
    """What a run's cost is estimated from: its training ``settings``, each task's ``(train, test)`` images in
    task order, the measured seconds per optimiser step of ``(task 0, a later task)`` and per evaluated image."""

    settings: TrainSettings
    images: Sequence[tuple[int, int]]
    step_s: tuple[float, float]
    eval_image_s: float


class Strategy:
    """A continual strategy: what it builds, trains, stores and costs. ``options`` is the run config's
    ``strategy`` section (every strategy's keys; each reads its own)."""

    name: ClassVar[str] = ""
    #: a normalizing flow is trained (``False``: a memory of features that nothing trains)
    has_flow: ClassVar[bool] = True
    #: it scores patches, so it has anomaly maps (and predict can serve it)
    has_maps: ClassVar[bool] = True
    #: its checkpoint is the base once plus each task's own tensors (nothing shared changes after task 0)
    per_task_checkpoints: ClassVar[bool] = False
    #: one model serves every task (``False``: a model of its own per task, or none)
    shared_model: ClassVar[bool] = True
    #: trains once, after the last task has arrived, on every task's training patches, and is measured then
    waits_for_last_task: ClassVar[bool] = False
    #: adds each finished task's Fisher information to a penalty on the base (EWC)
    consolidates: ClassVar[bool] = False
    #: its config keys that change values only, never a tensor's shape or the code that runs (smoke grouping)
    value_only_keys: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            if cls.name in REGISTRY:
                raise TypeError(
                    f"strategy {cls.name!r} is defined twice ({REGISTRY[cls.name].__module__}, {cls.__module__})"
                )
            REGISTRY[cls.name] = cls

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    # ------------------------------------------------------------------ what it builds
    def bank(self) -> NearestNeighbourScorer | None:
        """The memory bank it scores patches against (``None``: it scores with a flow)."""
        return None

    def densities(self, seed: int) -> GaussianMemory | None:
        """The image-embedding densities it scores whole images with (``None``: it scores patches)."""
        return None

    def replay_buffer(self, seed: int) -> ReplayBuffer | None:
        """The buffer of earlier tasks' feature maps it replays while a later task trains (``None``: no replay)."""
        return None

    def add_task(self, learner: Models, task: int) -> None:
        """Create task ``task``'s adapters (or model) in ``learner`` (under a torch seed drawn from ``(seed, task)``)."""
        learner.flow(0).add_task()

    def serving(self, task: int) -> tuple[int, int]:
        """``(model index, task id inside that model)`` of the model that serves ``task``."""
        return 0, task

    # ------------------------------------------------------------------ what it trains
    def trainable_parameters(self, model: MoLEFlow, local: int, task: int) -> list[nn.Parameter]:
        """What training task ``task`` may change in ``model`` (serving it as its task ``local``)."""
        return model.base_parameters() + model.task_parameters(local)

    def optimised_parameters(
        self, model: MoLEFlow, local: int, task: int, trainable: list[nn.Parameter]
    ) -> list[nn.Parameter]:
        """The list the optimiser and the gradient clipping get (default: ``trainable`` once each)."""
        return trainable

    def warms_up(self, task: int) -> bool:
        """Whether task ``task``'s learning rate warms up (a model trained from scratch does not)."""
        return task > 0

    # ------------------------------------------------------------------ what it keeps (Table 1)
    def parameter_counts(self, config: Config, dim: int) -> dict[str, float]:
        """``base`` and ``per_task`` parameters (see :func:`moleflow.continual.strategies.parameter_counts`)."""
        counts = flow_counts(config, dim)
        return with_overheads(counts["base"], counts["per_task"], counts["per_task_without_dia"])

    def stored_parameters(self, config: Config, dim: int, counts: dict[str, float]) -> float:
        """Parameters each new task adds (default: its adapters)."""
        return float(counts["per_task"])

    def stored_feature_bytes(self, config: Config, dim: int, patches_per_image: int, train_images: int) -> float:
        """Bytes of feature maps each new task adds (a replay buffer, the joint flow's training set)."""
        return 0.0

    def fixed_bytes(
        self, config: Config, dim: int, patches_per_image: int, train_images: int, base_bytes: float
    ) -> float:
        """Bytes kept once whatever the number of tasks (EWC's Fisher and anchor)."""
        return 0.0

    def router_bytes(self, dim: int) -> float:
        """Bytes of the router prototype each task adds (mean and precision, float64)."""
        return 8.0 * (dim + dim * dim)

    def memory_per_task(self, config: Config, dim: int, patches_per_image: int, train_images: int) -> dict[str, float]:
        """See :func:`moleflow.continual.strategies.memory_per_task`."""
        counts = self.parameter_counts(config, dim)
        params = self.stored_parameters(config, dim, counts)
        per_task = 4.0 * params + self.stored_feature_bytes(config, dim, patches_per_image, train_images)
        base_bytes = 4.0 * counts["base"]
        return {
            "params_per_task": float(params),
            "bytes_per_task": per_task,
            "pct_of_base": 100.0 * per_task / base_bytes if base_bytes else float("nan"),
            "fixed_bytes": self.fixed_bytes(config, dim, patches_per_image, train_images, base_bytes),
            "router_bytes_per_task": self.router_bytes(dim),
        }

    # ------------------------------------------------------------------ what it costs (planning)
    def estimated_work(self, config: Config, tasks: int) -> float:
        """Training work in arbitrary units (tasks x epochs x input pixels x flow blocks), for scheduling only."""
        blocks = max(1, config["model"]["coupling_blocks"] + config["model"]["dia_blocks"])
        return float(tasks * config["training"]["epochs"] * config["features"]["input_size"] ** 2 * blocks)

    def run_seconds(self, cost: CostInputs) -> float:
        """Seconds of a run: every task trained in turn (its steps at ``cost.step_s``), then every task seen so far
        evaluated."""
        seconds = 0.0
        for t, (train, _) in enumerate(cost.images):
            steps = cost.settings.epochs * cost.settings.steps_per_epoch(train)
            seconds += steps * (cost.step_s[0] if t == 0 else cost.step_s[1])
            seconds += cost.eval_image_s * sum(test for _, test in cost.images[: t + 1])
        return seconds

    def smoke_timings(
        self, per_task: list[float], images: Sequence[tuple[int, int]], done: int
    ) -> tuple[float, float, int]:
        """From a smoke run's seconds of training per task: ``(task 0's, a later task's)`` training seconds
        and the number of test images it evaluated (every seen task after each of the ``done`` tasks)."""
        task0 = per_task[0] if per_task else float("nan")
        later = per_task[1] if len(per_task) > 1 else float("nan")
        return task0, later, sum(images[i][1] for t in range(done) for i in range(t + 1))

    # ------------------------------------------------------------------ its replicates
    def draws_at_random(self) -> bool:
        """Whether a run makes a random choice, so that seeds differ (a reference that draws nothing does not)."""
        return True


class MemoryStrategy(Strategy):
    """A strategy without a flow: a memory of features per task that nothing trains, stored task by task."""

    has_flow = False
    shared_model = False
    per_task_checkpoints = True

    def add_task(self, learner: Models, task: int) -> None:
        """Nothing to build: the learner stores the task's memory (its "training")."""

    def trainable_parameters(self, model: MoLEFlow, local: int, task: int) -> list[nn.Parameter]:
        return []

    def parameter_counts(self, config: Config, dim: int) -> dict[str, float]:
        """No parameters (the memory is counted by ``memory_per_task``)."""
        return {
            "base": 0,
            "per_task": 0,
            "per_task_without_dia": 0,
            "overhead_pct": math.nan,
            "overhead_without_dia_pct": math.nan,
        }


def with_overheads(base: float, per_task: float, without_dia: float) -> dict[str, float]:
    """Parameter counts with the per-task overheads in % of the base (NaN without a base)."""
    return {
        "base": base,
        "per_task": per_task,
        "per_task_without_dia": without_dia,
        "overhead_pct": 100.0 * per_task / base if base else float("nan"),
        "overhead_without_dia_pct": 100.0 * without_dia / base if base else float("nan"),
    }


__all__ = ["REGISTRY", "CostInputs", "MemoryStrategy", "Models", "Strategy", "flow_counts", "with_overheads"]
