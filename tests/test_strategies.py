"""Each strategy does what it names: what it trains and freezes, what it keeps per task, EWC's penalty by hand, fresh parameters drawn from (seed, task) alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests_helpers import (
    per_task_by_formula,
    tiny,
)

from moleflow.config import load_profile
from moleflow.continual import Learner, run
from moleflow.continual.settings import TrainSettings
from moleflow.continual.tasks import load_tasks
from moleflow.features import FeatureStore


def _traced_run(
    config: dict, out: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict, list[dict], list[tuple[int, int]]]:
    """``run(config)`` through the real loop, recording the learner's tensors and EWC penalty after each task's
    training, and every ``(training task, objective task)`` pair the training objective was evaluated for."""
    import moleflow.continual.experiment as experiment
    import moleflow.continual.train as train

    snapshots: list[dict] = []
    objectives: list[tuple[int, int]] = []
    training = [-1]
    real_train, real_objective = experiment.train_task, train._objective

    def traced_train(learner, task, *args, **kwargs):
        training[0] = task
        result = real_train(learner, task, *args, **kwargs)
        penalty = learner.ewc_penalty(task)
        snapshots.append(
            {
                "state": {k: v.detach().clone() for k, v in learner.state_dict().items()},
                "penalty": None if penalty is None else float(penalty),
            }
        )
        return result

    def traced_objective(learner, task, *args, **kwargs):
        objectives.append((training[0], task))
        return real_objective(learner, task, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_task", traced_train)
    monkeypatch.setattr(train, "_objective", traced_objective)
    summary = run(config, out, progress=False, log=lambda *a: None)
    return summary, snapshots, objectives


def _base_of(state: dict, model: int = 0) -> dict:
    from moleflow.model.mole_flow import is_fixed_parameter, task_of_parameter

    prefix = f"models.{model}."
    return {
        k: v
        for k, v in state.items()
        if k.startswith(prefix)
        and task_of_parameter(k[len(prefix) :]) is None
        and not is_fixed_parameter(k[len(prefix) :])
    }


@pytest.mark.parametrize("strategy", ["separated", "replay", "sequential", "ewc", "frozen_base"])
def test_each_strategy_does_what_it_names(
    dataset: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    config = tiny(dataset, cache, f"strategy.name={strategy}", "strategy.replay_images=2", "strategy.ewc_lambda=10.0")
    summary, snaps, objectives = _traced_run(config, tmp_path / strategy, monkeypatch)
    assert summary["status"] == "ok" and summary["strategy"] == strategy and len(summary["final"]) == 3
    used = {task: {old for t, old in objectives if t == task} for task in range(3)}
    if strategy == "replay":  # the buffer's earlier tasks are replayed through their own adapters
        assert used == {0: {0}, 1: {0, 1}, 2: {0, 1, 2}}
    else:
        assert used == {0: {0}, 1: {1}, 2: {2}}
    base_after = [_base_of(s["state"]) for s in snaps]
    assert base_after[0]  # the shared model (separated: task 0's own model) has trainable base tensors
    same_base = [all(torch.equal(base_after[0][k], later[k]) for k in base_after[0]) for later in base_after[1:]]
    if strategy in ("frozen_base", "separated"):  # the base, or task 0's whole model, is untouched by later tasks
        assert same_base == [True, True]
    else:  # sequential, replay and EWC train the shared base in every task
        assert same_base == [False, False]
    if strategy == "separated":
        assert sorted({k.split(".")[1] for k in snaps[-1]["state"] if k.startswith("models.")}) == ["0", "1", "2"]
        first = {k: v for k, v in snaps[0]["state"].items() if k.startswith("models.0.")}
        assert all(torch.equal(v, snaps[-1]["state"][k]) for k, v in first.items())
    penalties = [s["penalty"] for s in snaps]
    if strategy == "ewc":  # no Fisher before task 0 ends; afterwards the base has moved away from its anchor
        assert penalties[0] is None and penalties[1] > 0.0 and penalties[2] > 0.0
    else:
        assert penalties == [None, None, None]


def test_memory_per_task_follows_what_each_strategy_keeps() -> None:
    from moleflow.config import apply_overrides
    from moleflow.continual.settings import model_config
    from moleflow.continual.strategies import memory_per_task, parameter_counts
    from moleflow.model import MoLEFlow
    from moleflow.model.mole_flow import is_fixed_parameter

    dim, cells = 16, 36
    small = {"model.coupling_blocks": 2, "model.lora_rank": 4, "strategy.replay_images": 5}
    memory = {
        s: memory_per_task(apply_overrides(load_profile("cpu"), {**small, "strategy.name": s}), dim, cells)
        for s in ("frozen_base", "sequential", "separated", "ewc", "replay")
    }
    counts = parameter_counts(apply_overrides(load_profile("cpu"), small), dim)
    adapters = counts["per_task"]
    assert adapters == per_task_by_formula(dim, 2, 4, 2)  # counted independently of the model
    assert memory["frozen_base"]["params_per_task"] == memory["sequential"]["params_per_task"] == adapters
    assert memory["frozen_base"]["bytes_per_task"] == 4 * adapters and memory["frozen_base"]["fixed_bytes"] == 0
    model = MoLEFlow(model_config(apply_overrides(load_profile("cpu"), small), dim))
    model.add_task()
    whole = sum(p.numel() for n, p in model.named_parameters() if not is_fixed_parameter(n))
    assert memory["separated"]["params_per_task"] == whole > counts["base"]
    assert memory["separated"]["pct_of_base"] > 100.0 > memory["frozen_base"]["pct_of_base"]
    assert memory["ewc"]["fixed_bytes"] == 2 * 4 * counts["base"]
    assert memory["replay"]["bytes_per_task"] == 4 * adapters + 2 * 5 * cells * dim
    assert all(m["router_bytes_per_task"] == 8 * (dim + dim * dim) for m in memory.values())


@pytest.mark.parametrize("strategy", ["frozen_base", "separated"])
def test_new_task_parameters_do_not_depend_on_the_global_rng(strategy: str) -> None:
    from moleflow.config import apply_overrides

    config = apply_overrides(
        load_profile("cpu"), {"strategy.name": strategy, "model.coupling_blocks": 1, "model.lora_rank": 2}
    )
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        learner = Learner.from_config(config, 8)
        for _ in range(2):
            torch.rand(7)  # something else drew from the global RNG in between (a summary, a resume)
            learner.add_task(np.random.default_rng(0).normal(size=(16, 8)))
        states.append(learner.state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_ewc_penalty_and_per_sample_fisher_by_hand(dataset: Path, cache: Path) -> None:
    """The penalty is lambda/2 sum F (theta - theta*)^2; the Fisher is the mean over images of each image's squared
    gradient, computed here with a plain autograd loop over the model's own objective."""
    from moleflow.continual.train import empirical_fisher

    config = tiny(dataset, cache, "strategy.name=ewc", "strategy.ewc_lambda=7.0")
    settings = TrainSettings.from_config(config)
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    learner.add_task(np.asarray(tasks[0].train.router))
    patches = tasks[0].train.patches
    fisher = empirical_fisher(learner, 0, patches, settings, torch.device("cpu"))
    named = learner.base_named_parameters(0)
    loss_fn = settings.loss()
    by_hand = {n: torch.zeros_like(p) for n, p in named.items()}
    for p in named.values():
        p.requires_grad_(True)
    for i in range(len(patches)):
        x = torch.from_numpy(np.asarray(patches[i : i + 1], dtype=np.float32))
        out = learner.models[0](x, 0)
        loss, _ = loss_fn(-out.log_prob, out.logdet_flow + out.logdet_dia)
        grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
        for (n, _), g in zip(named.items(), grads):
            if g is not None:
                by_hand[n] += g**2 / len(patches)
    for p in named.values():
        p.requires_grad_(False)
    assert fisher.keys() == by_hand.keys()
    for n in fisher:
        torch.testing.assert_close(fisher[n], by_hand[n], rtol=1e-4, atol=1e-10)
    learner.consolidate(0, fisher)
    with torch.no_grad():
        for p in named.values():
            p.add_(0.01)  # move the base away from its anchor
    expected = 0.5 * 7.0 * sum(float((fisher[n] * 0.01**2).sum()) for n in fisher)
    penalty = learner.ewc_penalty(1)
    assert penalty is not None and float(penalty) == pytest.approx(expected, rel=1e-4)
