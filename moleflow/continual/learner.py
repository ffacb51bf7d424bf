"""The continual learner: the model(s), the router and the state a strategy keeps.

What each strategy builds, trains and stores is its own module's business
(:mod:`moleflow.continual.strategies`): the learner holds the containers (flow models, a memory
bank or Gaussians, the router, EWC's Fisher) and asks its strategy object where they differ. Every
strategy has the same features, flow, router, maps and metrics.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from torch import nn

from moleflow.config import Config
from moleflow.continual.settings import LearnerSettings
from moleflow.continual.strategies import strategy_named
from moleflow.model import MahalanobisRouter, MoLEFlow
from moleflow.model.mole_flow import task_of_parameter


def prototype_rows(n: int, batch_size: int, seed: int, task: int) -> np.ndarray:
    """Rows of a task's ``n`` training images its router prototype is built from under
    ``router.prototype_images: drop_last``: a shuffled pass in batches of ``batch_size``
    without its last incomplete batch (the authors' loader), at least one batch; sorted."""
    keep = n if n < batch_size else n - n % batch_size
    order = np.random.default_rng([seed, task, 0xB0B]).permutation(n)
    return np.sort(order[:keep])


class Learner(nn.Module):
    """Model(s), router and strategy state of one continual run.

    Every random initialisation is drawn from ``(seed, task)`` alone, so a run that
    resumes at task ``k`` builds exactly the parameters an uninterrupted run had.
    """

    def __init__(self, settings: LearnerSettings) -> None:
        super().__init__()
        self.settings = settings
        self.strategy = strategy_named(settings.strategy, dict(settings.strategy_options))
        self.seed = settings.seed
        self.models = nn.ModuleList()
        self.knn = self.strategy.bank()
        self.knn_bank = settings.knn_bank
        self.gaussians = self.strategy.densities(self.seed)
        if self.strategy.shared_model:
            self.models.append(self.new_model(0))
        router = settings.router
        self.router = MahalanobisRouter(router.covariance, router.ridge, router.dtype)
        self.prototype_images = router.prototype_images
        self.batch_size = settings.batch_size
        self.n_tasks = 0
        self.ewc_lambda = settings.ewc_lambda
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    @classmethod
    def from_config(cls, config: Config, dim: int) -> Learner:
        """The learner of a validated run config for ``dim``-vectors."""
        return cls(LearnerSettings.from_config(config, dim))

    def flow(self, index: int) -> MoLEFlow:
        """``models[index]`` (typed)."""
        model = self.models[index]
        assert isinstance(model, MoLEFlow)
        return model

    def new_model(self, salt: int) -> MoLEFlow:
        """A fresh flow, model number ``salt`` of the run (its parameters drawn from ``(seed, salt)``)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 100_003 + salt)
            return MoLEFlow(self.settings.model_config(salt))

    def add_task(self, router_features: np.ndarray | None) -> int:
        """Create the next task's adapters (or model) and fit its router prototype on ``(N_t, D)``
        training features (``None``: the prototype is loaded from a checkpoint afterwards)."""
        task = self.n_tasks
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 100_003 + 7919 * (task + 1))
            self.strategy.add_task(self, task)
        if router_features is not None:
            prototype = router_features
            if self.prototype_images == "drop_last":
                prototype = router_features[prototype_rows(len(router_features), self.batch_size, self.seed, task)]
            self.router.add_task(prototype)
            if self.gaussians is not None:  # DNE's "training": the Gaussian of the task's image embeddings
                self.gaussians.add_task(router_features)
        self.n_tasks += 1
        return task

    def model_for(self, task: int) -> tuple[MoLEFlow, int]:
        """The model that serves ``task`` and the task id inside it."""
        if not self.strategy.has_flow:
            raise ValueError(f"the {self.strategy.name} strategy has no flow model")
        index, local = self.strategy.serving(task)
        return self.flow(index), local

    def serving_models(self, trained: int) -> list[tuple[MoLEFlow, int]]:
        """:meth:`model_for` of each of the first ``trained`` tasks; none when the strategy has no flow."""
        return [self.model_for(task) for task in range(trained)] if self.strategy.has_flow else []

    @property
    def has_maps(self) -> bool:
        """Whether the strategy scores patches (anomaly maps); DNE scores whole images only."""
        return self.strategy.has_maps

    def image_scores(self, task: int, router_features: torch.Tensor) -> torch.Tensor:
        """(dne) Image scores ``(B,)`` of router features ``(B, D_r)`` under task ``task``'s density."""
        if self.gaussians is None:
            raise ValueError(f"the {self.strategy.name} strategy scores patches, not image embeddings")
        return self.gaussians(router_features, task)

    def fit_memory(self, bank: torch.Tensor) -> None:
        """(knn) Store the next task's memory bank ``(M, D)``."""
        assert self.knn is not None
        self.knn.add_task(bank)

    def patch_scores(self, task: int, x: torch.Tensor) -> torch.Tensor:
        """Anomaly score of every patch of ``x`` ``(B, H, W, D)`` under task ``task``: ``(B, H, W)``.

        The flow's score is the negative log-likelihood; knn's the nearest-neighbour distance.
        """
        if self.knn is not None:
            return self.memory_scores(x, task)
        if self.gaussians is not None:
            raise ValueError("the dne strategy has no patch scores (no anomaly map)")
        model, local = self.model_for(task)
        return -model(x, local).log_prob

    def memory_scores(self, x: torch.Tensor, task: int) -> torch.Tensor:
        """(knn) Nearest-neighbour distances ``(B, H, W)`` of ``x`` ``(B, H, W, D)`` to the memory ``knn_bank`` names.

        ``per_task``: task ``task``'s bank; ``joint``: the nearest over every bank stored so far (one bank of all
        tasks' patches; ``task`` is not used); ``replaced``: the newest bank only (``task`` is not used).
        """
        assert self.knn is not None
        if self.knn_bank == "per_task":
            return self.knn(x, task)
        if self.knn_bank == "replaced":
            return self.knn(x, self.knn.n_tasks - 1)
        nearest = self.knn(x, 0)
        for bank in range(1, self.knn.n_tasks):
            nearest = torch.minimum(nearest, self.knn(x, bank))
        return nearest

    def trainable_parameters(self, task: int) -> list[nn.Parameter]:
        """What training task ``task`` may change."""
        if not self.strategy.has_flow:
            return []
        model, local = self.model_for(task)
        return self.strategy.trainable_parameters(model, local, task)

    def optimised_parameters(self, task: int) -> list[nn.Parameter]:
        """The list the optimiser and the gradient clipping get when training ``task``: :meth:`trainable_parameters`,
        but for the authors' Sequential (``sequential_adapter_updates: twice``, tasks >= 1) the task's own
        parameters first and then every trainable parameter again, as their trainer builds it."""
        params = self.trainable_parameters(task)
        if not self.strategy.has_flow:
            return params
        model, local = self.model_for(task)
        return self.strategy.optimised_parameters(model, local, task, params)

    def base_named_parameters(self, task: int) -> dict[str, nn.Parameter]:
        """The shared base parameters of the model serving ``task``, by name."""
        model, _ = self.model_for(task)
        trainable = {id(p) for p in model.base_parameters()}
        return {n: p for n, p in model.named_parameters() if id(p) in trainable}

    def ewc_penalty(self, task: int) -> torch.Tensor | None:
        """``lambda / 2 * sum_i F_i (theta_i - theta*_i)^2`` over the base, or ``None`` before any Fisher.

        Online EWC (Schwarz et al. 2018, without decay): ``F`` is the sum of the earlier
        tasks' per-sample empirical Fishers and ``theta*`` the base after the last task.
        """
        if not self.strategy.consolidates or not self.fisher:
            return None
        params = self.base_named_parameters(task)
        total = sum((self.fisher[n] * (params[n] - self.anchor[n]) ** 2).sum() for n in self.fisher)
        return cast(torch.Tensor, 0.5 * self.ewc_lambda * total)  # a sum of tensors (the Fisher is not empty)

    def consolidate(self, task: int, fisher: dict[str, torch.Tensor]) -> None:
        """After task ``task`` (EWC): add its Fisher and anchor the base at its current value."""
        for name, value in fisher.items():
            self.fisher[name] = self.fisher.get(name, torch.zeros_like(value)) + value
        self.anchor = {n: p.detach().clone() for n, p in self.base_named_parameters(task).items()}

    # ------------------------------------------------------------------ checkpoints
    def task_state(self, task: int) -> dict[str, torch.Tensor]:
        """Task ``task``'s own tensors (its adapters or model, and its router prototype)."""
        if not self.strategy.shared_model and self.strategy.has_flow:  # a model of its own per task
            state = {f"models.{task}.{k}": v for k, v in self.models[task].state_dict().items()}
        elif self.knn is not None:
            state = {f"knn.bank_{task}": self.knn.bank(task)}
        elif self.gaussians is not None:
            state = {f"gaussians.{k}": v for k, v in self.gaussians.task_state(task).items()}
        else:
            state = {f"models.0.{k}": v for k, v in self.models[0].state_dict().items() if task_of_parameter(k) == task}
        state[f"router.mean_{task}"] = getattr(self.router, f"mean_{task}")
        state[f"router.precision_{task}"] = getattr(self.router, f"precision_{task}")
        return {k: v.detach().clone() for k, v in state.items()}

    def scoring_state(self, task: int) -> dict[str, torch.Tensor]:
        """The tensors task ``task``'s patch scores are computed from (the learner's own, not copies).

        A flow: the base and the task's own tensors of the model serving it (:meth:`model_for`; the joint
        flow's task 0 for every task); knn: the bank(s) its ``knn_bank`` measures against. Two states with
        the same tensors give the same scores (evaluation's fixed chunks), which
        :class:`~moleflow.continual.score_cache.ScoreCache` relies on. DNE scores images, not patches: its
        task's Gaussian.
        """
        if self.knn is not None:
            banks = {
                "per_task": [task],
                "replaced": [self.knn.n_tasks - 1],
                "joint": list(range(self.knn.n_tasks)),
            }[self.knn_bank]
            return {f"knn.bank_{b}": self.knn.bank(b) for b in banks}
        if self.gaussians is not None:
            return {f"gaussians.{k}": v for k, v in self.gaussians.task_state(task).items()}
        index, local = self.strategy.serving(task)
        return {
            f"models.{index}.{k}": v
            for k, v in self.models[index].state_dict().items()
            if task_of_parameter(k) in (None, local)
        }

    def task_states(self, trained: int) -> list[dict[str, torch.Tensor]]:
        """:meth:`task_state` of each of the first ``trained`` tasks."""
        return [self.task_state(task) for task in range(trained)]

    def base_state(self) -> dict[str, torch.Tensor]:
        """The shared model's base tensors (not for ``separated``; none for ``knn``)."""
        if not self.models:
            return {}
        return {
            f"models.0.{k}": v.detach().clone()
            for k, v in self.models[0].state_dict().items()
            if task_of_parameter(k) is None
        }

    def ewc_state(self) -> dict[str, torch.Tensor]:
        """EWC's accumulated Fisher and anchor."""
        return {
            **{f"fisher.{k}": v for k, v in self.fisher.items()},
            **{f"anchor.{k}": v for k, v in self.anchor.items()},
        }

    def load_ewc_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`ewc_state`."""
        self.fisher = {k[len("fisher.") :]: v for k, v in state.items() if k.startswith("fisher.")}
        self.anchor = {k[len("anchor.") :]: v for k, v in state.items() if k.startswith("anchor.")}
