"""The nearest-neighbour reference: exact distances, PatchCore's coreset, and the knn strategy in a continual run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests_helpers import interrupted_then_resumed, tiny_config

from moleflow.config import load_config, load_profile
from moleflow.continual import run
from moleflow.model import NearestNeighbourScorer, greedy_coreset


def test_patch_scores_are_the_distance_to_the_nearest_bank_vector() -> None:
    generator = torch.Generator().manual_seed(0)
    bank = torch.randn(300, 12, generator=generator)
    x = torch.randn(3, 5, 4, 12, generator=generator)
    scorer = NearestNeighbourScorer(chunk=7)  # chunks that do not divide the 60 patches
    scorer.add_task(torch.zeros(2, 12))
    scorer.add_task(bank)
    expected = torch.cdist(x.reshape(-1, 12).double(), bank.double()).min(dim=1).values.reshape(3, 5, 4)
    torch.testing.assert_close(scorer(x, task=1).double(), expected, rtol=0, atol=1e-4)
    assert torch.equal(scorer(bank[:6].reshape(1, 2, 3, 12), task=1), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="task 2 does not exist"):
        scorer(x, task=2)


def test_distances_are_computed_once_per_query_and_bank_and_are_the_same_bits() -> None:
    generator = torch.Generator().manual_seed(3)
    scorer = NearestNeighbourScorer(chunk=5)
    scorer.add_task(torch.randn(50, 4, generator=generator))
    scorer.add_task(torch.randn(50, 4, generator=generator))
    x = torch.randn(2, 3, 3, 4, generator=generator)
    first = scorer(x, task=0)
    assert torch.equal(first, scorer._distances(x, scorer.bank(0)))  # what an uncached call computes
    first += 1.0  # a caller changing its result does not change the memo
    assert torch.equal(scorer(x, task=0), scorer._distances(x, scorer.bank(0)))
    assert len(scorer._memo) == 1
    assert not torch.equal(scorer(x, task=1), scorer(x, task=0)) and len(scorer._memo) == 2  # another bank
    assert not torch.equal(scorer(x + 1e-3, task=0), scorer(x, task=0)) and len(scorer._memo) == 3  # another query


def test_greedy_coreset_takes_the_farthest_points() -> None:
    points = torch.tensor([[0.0], [1.0], [2.0], [10.0], [10.5], [20.0]])

    def by_hand(first: int) -> set[int]:  # k-centre greedy: each next centre is the farthest from the chosen ones
        chosen = [first]
        while len(chosen) < 3:
            gaps = [min(abs(float(points[i, 0] - points[c, 0])) for c in chosen) for i in range(6)]
            chosen.append(int(np.argmax(gaps)))
        return set(chosen)

    possible = [by_hand(first) for first in range(6)]
    for seed in range(8):
        chosen = greedy_coreset(points, ratio=0.5, seed=seed)  # 3 of 6
        assert len(chosen) == 3 and set(chosen.tolist()) in possible
        radius = max(min(abs(float(p - points[c, 0])) for c in chosen.tolist()) for p in points[:, 0])
        assert radius <= 2 * 1.0  # the greedy bound: at most twice the best 3-centre radius (1.0 here)
    assert torch.equal(greedy_coreset(points, ratio=1.0, seed=0), torch.arange(6))


def _config(dataset: Path, cache: Path, *extra: str) -> dict:
    return tiny_config(dataset, cache, "strategy.name=knn", "evaluation.sample_images=0", *extra)


def test_knn_strategy_needs_no_training_forgets_nothing_and_resumes(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(dataset, tmp_path / "cache")
    whole = run(config, tmp_path / "whole", progress=False, log=lambda *a: None)
    assert whole["status"] == "ok" and whole["routing_accuracy"] == 1.0
    assert all(t["epoch_losses"] == [] for t in whole["per_task"])
    for metric in whole["forgetting"]:
        assert whole["forgetting"][metric]["fm"] == 0.0 and whole["forgetting_oracle"][metric]["paper"] == 0.0
    grid = 8 * 8  # 64 px, stride 8
    assert whole["memory"]["bytes_per_task"] == 4 * 8 * grid * 16 and whole["params"]["base"] == 0
    resumed, messages = interrupted_then_resumed(config, tmp_path / "cut", monkeypatch)
    assert any("resuming after task 1" in m for m in messages)
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    assert resumed["accuracy_matrix_oracle"] == whole["accuracy_matrix_oracle"]


def test_knn_coreset_keeps_the_stated_share(dataset: Path, tmp_path: Path) -> None:
    config = _config(dataset, tmp_path / "cache", "strategy.knn_coreset_ratio=0.25", "dataset.categories=[cap]")
    summary = run(config, tmp_path / "coreset", progress=False, log=lambda *a: None)
    assert summary["status"] == "ok"
    state = torch.load(tmp_path / "coreset" / "checkpoints" / "task_0.pt")
    assert state["knn.bank_0"].shape == (int(np.ceil(0.25 * 8 * 64)), 16)
    assert summary["memory"]["bytes_per_task"] == 4 * int(np.ceil(0.25 * 8 * 64)) * 16


def _learner_with_banks(mode: str, banks: list[torch.Tensor]):
    from moleflow.continual import Learner

    config = load_config(overrides=["strategy.name=knn", f"strategy.knn_bank={mode}"], base=load_profile("cpu"))
    learner = Learner.from_config(config, banks[0].shape[1])
    for bank in banks:
        learner.add_task(None)
        learner.fit_memory(bank)
    return learner


def test_joint_patchcore_scores_the_nearest_patch_of_any_task() -> None:
    """``knn_bank: joint``: one bank of every task's patches and no router: the score equals, computed here by hand,
    the distance to the nearest vector of the union, whatever task the image is routed to."""
    generator = torch.Generator().manual_seed(1)
    banks = [torch.randn(40, 6, generator=generator) + 3 * t for t in range(3)]
    x = torch.randn(2, 3, 3, 6, generator=generator) + 3
    learner = _learner_with_banks("joint", banks)
    union = torch.cat(banks).double()
    expected = torch.cdist(x.reshape(-1, 6).double(), union).min(dim=1).values.reshape(2, 3, 3)
    for task in range(3):
        torch.testing.assert_close(learner.patch_scores(task, x).double(), expected, rtol=0, atol=1e-4)
    own = _learner_with_banks("per_task", banks)  # Joint_PatchCore(R): the routed task's bank only
    assert torch.all(own.patch_scores(0, x) >= learner.patch_scores(0, x))
    assert not torch.allclose(own.patch_scores(0, x), learner.patch_scores(0, x))


def test_ft_patchcore_forgets_task_0_after_task_1() -> None:
    """``knn_bank: replaced``: each task's bank replaces the one before, so task 0's own training patches, at
    distance 0 while its bank is the newest, are measured against task 1's bank once task 1 is learned."""
    generator = torch.Generator().manual_seed(2)
    task0, task1 = torch.randn(30, 5, generator=generator), torch.randn(30, 5, generator=generator) + 4
    patches = task0[:8].reshape(2, 2, 2, 5)
    after_task0 = _learner_with_banks("replaced", [task0])
    assert torch.equal(after_task0.patch_scores(0, patches), torch.zeros(2, 2, 2))
    after_task1 = _learner_with_banks("replaced", [task0, task1])
    expected = torch.cdist(patches.reshape(-1, 5).double(), task1.double()).min(dim=1).values.reshape(2, 2, 2)
    torch.testing.assert_close(after_task1.patch_scores(0, patches).double(), expected, rtol=0, atol=1e-4)
    assert after_task1.patch_scores(0, patches).min() > 1.0


def test_the_patchcore_bounds_in_a_continual_run(dataset: Path, tmp_path: Path) -> None:
    """Through the whole run: FT_PatchCore's task-0 cells change after task 1 (it forgets), Joint_PatchCore's routed
    and oracle rows are equal (no router), and a per-task bank's run keeps its identity (the key's old value)."""
    from moleflow.config import config_hash

    ft = run(
        _config(dataset, tmp_path / "cache", "strategy.knn_bank=replaced"),
        tmp_path / "ft",
        progress=False,
        log=lambda *a: None,
    )
    joint = run(
        _config(dataset, tmp_path / "cache", "strategy.knn_bank=joint"),
        tmp_path / "joint",
        progress=False,
        log=lambda *a: None,
    )
    matrix = ft["accuracy_matrix_oracle"]["pixel_auroc"]
    assert matrix[1][0] != matrix[0][0] and ft["memory"]["bytes_per_task"] == 0 and ft["memory"]["fixed_bytes"] > 0
    assert joint["accuracy_matrix"] == joint["accuracy_matrix_oracle"]
    per_task = _config(dataset, tmp_path / "cache")
    without_key = {**per_task, "strategy": {k: v for k, v in per_task["strategy"].items() if k != "knn_bank"}}
    assert (
        config_hash(per_task)
        == config_hash(without_key)
        != config_hash(_config(dataset, tmp_path / "c", "strategy.knn_bank=joint"))
    )
