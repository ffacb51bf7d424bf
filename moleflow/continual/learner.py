"""The continual learner: the model(s), the router and what each strategy trains.

Strategies (the paper's baselines), all with the same features, flow and router:

* ``frozen_base`` (MoLE-Flow): task 0 trains the base and task 0's adapters; task
  ``t >= 1`` trains only its own adapters (LoRA, task biases, whitening, DIA);
* ``sequential``: the base is trained in every task, with the task's adapters
  (``strategy.sequential_linears: frozen``: all of it but the subnets' base linears,
  the authors' reading; ``strategy.sequential_adapter_updates: twice``: the task's own
  parameters listed twice in the optimiser, as the authors' trainer lists them);
* ``ewc``: sequential plus ``lambda / 2 * sum_i F_i (theta_i - theta*_i)^2`` on the base:
  online EWC without decay (the per-sample diagonal empirical Fisher summed over earlier
  tasks, anchored at the base after the last task);
* ``replay``: sequential plus a buffer of earlier tasks' feature maps replayed
  through their own adapters;
* ``separated``: an independent full model per task, each trained as a task 0
  (the authors' complete-separation mode: ``strategy.separated_mixer: shared``, tasks >= 1
  use task 0's mixer, frozen; ``separated_global_affine: trained``, their blocks' global
  affine is trained; ``separated_adapters: later``, their input adapters start as a
  later task's);
* ``knn``: no flow and no training: a PatchCore-style memory bank of each task's
  training patches (nearest-neighbour distance as the patch score), the same router,
  maps and metrics: the no-training reference. ``strategy.knn_bank`` says which memory
  a patch is measured against: its routed task's bank (``per_task``: Joint_PatchCore(R)),
  every bank at once with no router (``joint``: Joint_PatchCore), or the newest task's
  bank only (``replaced``: FT_PatchCore, the fine-tuned lower bound);
* ``dne``: DNE (Li et al. 2022): no flow, no training and no map: a Gaussian of each
  task's image embeddings (the router features), image score = Mahalanobis distance to
  the density ``strategy.dne_density`` names (:class:`moleflow.model.GaussianMemory`);
* ``joint``: the joint flow, the flow's upper bound without continual learning: one model
  (base and task 0's adapters) trained once, after the last task has arrived, on every
  task's training patches at once; nothing is trained or measured before that.
"""

from __future__ import annotations

from dataclasses import replace
from typing import cast

import numpy as np
import torch
from torch import nn

from moleflow.config import Config
from moleflow.model import (
    GaussianMemory,
    MahalanobisRouter,
    ModelConfig,
    MoLEFlow,
    NearestNeighbourScorer,
    SubnetConfig,
)
from moleflow.model.mole_flow import is_fixed_parameter, task_of_parameter

STRATEGIES = ("frozen_base", "sequential", "separated", "ewc", "replay", "knn", "dne", "joint")
#: Strategies whose checkpoint is the base once plus each task's own tensors (nothing shared changes later).
PER_TASK_CHECKPOINTS = ("frozen_base", "knn", "dne")
#: Strategies without a flow (nothing to train).
WITHOUT_FLOW = ("knn", "dne")


#: Stream of the coupling permutations' seeds (``model.permutations: seed``), apart from every other draw of a run.
PERMUTATION_STREAM = 0x5EED


def permutation_seeds(config: Config, salt: int = 0) -> tuple[int, ...]:
    """NumPy seeds of the coupling blocks' permutations of the run's model number ``salt``.

    ``model.permutations: fixed``: ``permutation_seed + k`` for block ``k`` (every run alike);
    ``seed``: drawn from ``(seed, salt)``, so replicates differ in their permutations and
    each model of a run (``separated``'s one per task) draws its own, as the authors' blocks do.
    """
    m = config["model"]
    blocks = m["coupling_blocks"]
    if m["permutations"] == "fixed":
        return tuple(m["permutation_seed"] + k for k in range(blocks))
    state = np.random.SeedSequence([config["seed"], salt, PERMUTATION_STREAM]).generate_state(blocks)
    return tuple(int(v) for v in state)


def prototype_rows(n: int, batch_size: int, seed: int, task: int) -> np.ndarray:
    """Rows of a task's ``n`` training images its router prototype is built from under
    ``router.prototype_images: drop_last``: a shuffled pass in batches of ``batch_size``
    without its last incomplete batch (the authors' loader), at least one batch; sorted."""
    keep = n if n < batch_size else n - n % batch_size
    order = np.random.default_rng([seed, task, 0xB0B]).permutation(n)
    return np.sort(order[:keep])


def model_config(config: Config, dim: int, salt: int = 0) -> ModelConfig:
    """The :class:`ModelConfig` of a run config's ``model`` section for ``dim``-vectors (model number ``salt``)."""
    m = config["model"]
    alpha = m["lora_alpha"] * m["lora_rank"] if m["lora_alpha_per_rank"] else m["lora_alpha"]
    subnet = SubnetConfig(
        rank=m["lora_rank"],
        alpha=alpha,
        use_lora=m["lora"],
        task_bias=m["task_bias"],
        task0_adapters=m["task0_adapters"],
        scale_context=m["scale_context"],
        context_kernel=m["context_kernel"],
        context_alpha_max=m["context_alpha_max"],
        hidden_ratio=m["hidden_ratio"],
        joint=m["subnet"] == "joint",
    )
    return ModelConfig(
        dim=dim,
        positional_encoding=m["positional_encoding"],
        positional_encoding_scale=m["positional_encoding_scale"],
        whitening=m["whitening"],
        whitening_fallback=m["whitening_fallback"],
        gamma_init_first=m["gamma_init_first"],
        gamma_init_later=m["gamma_init_later"],
        spatial_mixer=m["spatial_mixer"],
        mixer_kernel=m["mixer_kernel"],
        mixer_gate_init=m["mixer_gate_init"],
        mixer_bias=m["mixer_bias"],
        coupling_blocks=m["coupling_blocks"],
        affine_clamp=m["affine_clamp"],
        global_affine=m["global_affine"],
        permutation_seed=m["permutation_seed"],
        permutation_seeds=permutation_seeds(config, salt),
        subnet=subnet,
        dia_blocks=m["dia_blocks"],
        dia_clamp=m["dia_clamp"],
        input_jacobian=m["input_jacobian"],
    )


class Learner(nn.Module):
    """Model(s), router and strategy state of one continual run.

    Every random initialisation is drawn from ``(seed, task)`` alone, so a run that
    resumes at task ``k`` builds exactly the parameters an uninterrupted run had.
    """

    def __init__(self, config: Config, dim: int) -> None:
        super().__init__()
        strategy = config["strategy"]
        self.strategy = strategy["name"]
        self.sequential_linears = strategy["sequential_linears"]
        self.adapter_updates = strategy["sequential_adapter_updates"]
        self.separated_mixer = strategy["separated_mixer"]
        self.separated_global_affine = strategy["separated_global_affine"]
        self.separated_adapters = strategy["separated_adapters"]
        self.seed = config["seed"]
        self.config = config
        self.mcfg = model_config(config, dim)
        self.models = nn.ModuleList()
        self.knn = NearestNeighbourScorer() if self.strategy == "knn" else None
        self.knn_bank = config["strategy"]["knn_bank"]
        self.gaussians = (
            GaussianMemory(config["strategy"]["dne_density"], self.seed) if self.strategy == "dne" else None
        )
        if self.strategy not in ("separated", *WITHOUT_FLOW):
            self.models.append(self._new_model(0))
        router = config["router"]
        self.router = MahalanobisRouter(
            router["covariance"], router["ridge"], torch.float32 if router["precision"] == "float32" else torch.float64
        )
        self.prototype_images = router["prototype_images"]
        self.batch_size = config["training"]["batch_size"]
        self.n_tasks = 0
        self.ewc_lambda = float(config["strategy"]["ewc_lambda"])
        self.fisher: dict[str, torch.Tensor] = {}
        self.anchor: dict[str, torch.Tensor] = {}

    def flow(self, index: int) -> MoLEFlow:
        """``models[index]`` (typed)."""
        model = self.models[index]
        assert isinstance(model, MoLEFlow)
        return model

    def _new_model(self, salt: int) -> MoLEFlow:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 100_003 + salt)
            return MoLEFlow(replace(self.mcfg, permutation_seeds=permutation_seeds(self.config, salt)))

    def add_task(self, router_features: np.ndarray | None) -> int:
        """Create the next task's adapters (or model) and fit its router prototype on ``(N_t, D)``
        training features (``None``: the prototype is loaded from a checkpoint afterwards)."""
        task = self.n_tasks
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 100_003 + 7919 * (task + 1))
            if self.strategy == "separated":
                model = self._new_model(task)
                # task 0's own adapters of this model (drawn from (seed, task) too), in a later task's form if asked
                model.add_task(first=None if task == 0 or self.separated_adapters == "first" else False)
                if task > 0 and self.separated_mixer == "shared" and model.mixer is not None:
                    model.mixer = self.flow(0).mixer  # task 0's mixer, one module: never trained again
                self.models.append(model)
            elif self.strategy == "joint":
                if task == 0:  # one set of adapters serves every task
                    self.flow(0).add_task()
            elif self.strategy not in WITHOUT_FLOW:  # knn's bank is stored by fit_memory, its "training"
                self.flow(0).add_task()
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
        if self.strategy in WITHOUT_FLOW:
            raise ValueError(f"the {self.strategy} strategy has no flow model")
        if self.strategy == "joint":
            return self.flow(0), 0
        return (self.flow(task), 0) if self.strategy == "separated" else (self.flow(0), task)

    @property
    def has_maps(self) -> bool:
        """Whether the strategy scores patches (anomaly maps); DNE scores whole images only."""
        return self.gaussians is None

    def image_scores(self, task: int, router_features: torch.Tensor) -> torch.Tensor:
        """(dne) Image scores ``(B,)`` of router features ``(B, D_r)`` under task ``task``'s density."""
        if self.gaussians is None:
            raise ValueError(f"the {self.strategy} strategy scores patches, not image embeddings")
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
        if self.strategy in WITHOUT_FLOW:
            return []
        model, local = self.model_for(task)
        own = model.task_parameters(local)
        if task > 0 and self.strategy == "separated":
            # the authors' separation trains every parameter of a later task's new flow, its global affine included
            base = (
                [p for n, p in model.named_parameters() if task_of_parameter(n) is None and not is_fixed_parameter(n)]
                if self.separated_global_affine == "trained"
                else model.base_parameters()
            )
            if self.separated_mixer == "shared" and model.mixer is not None:
                mixer = {id(p) for p in model.mixer.parameters()}
                base = [p for p in base if id(p) not in mixer]
            return base + own
        if task > 0 and self.strategy == "sequential" and self.sequential_linears == "frozen":
            linears = {id(p) for p in model.base_linear_parameters()}
            # the authors' model never freezes the blocks' global affine, so their Sequential trains it
            shared = [
                p
                for n, p in model.named_parameters()
                if task_of_parameter(n) is None and id(p) not in linears and not is_fixed_parameter(n)
            ]
            return shared + own
        if self.strategy == "separated" or task == 0 or self.strategy != "frozen_base":
            return model.base_parameters() + own
        return own

    def optimised_parameters(self, task: int) -> list[nn.Parameter]:
        """The list the optimiser and the gradient clipping get when training ``task``: :meth:`trainable_parameters`,
        but for the authors' Sequential (``sequential_adapter_updates: twice``, tasks >= 1) the task's own
        parameters first and then every trainable parameter again, as their trainer builds it."""
        params = self.trainable_parameters(task)
        if self.strategy == "sequential" and task > 0 and self.adapter_updates == "twice":
            model, local = self.model_for(task)
            return model.task_parameters(local) + params
        return params

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
        if self.strategy != "ewc" or not self.fisher:
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
        if self.strategy == "separated":
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
