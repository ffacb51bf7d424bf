"""DNE (a Gaussian of each task's image embeddings) and the joint flow (every task's patches at once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.covariance import LedoitWolf
from tests_helpers import interrupted_then_resumed, tiny_config

from moleflow.config import config_hash
from moleflow.continual import run
from moleflow.continual.tasks import StackedRows
from moleflow.model import GaussianMemory


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _mahalanobis_by_hand(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """sqrt((x - m)^T P (x - m)) of each unit test row, m and P of the unit training rows (Ledoit-Wolf), in numpy."""
    z = _unit(train)
    mean = z.mean(axis=0)
    precision = np.linalg.inv(LedoitWolf().fit(z).covariance_)
    diff = _unit(test) - mean
    return np.sqrt(np.einsum("bi,ij,bj->b", diff, precision, diff))


def test_dne_routed_score_is_the_mahalanobis_distance_to_the_tasks_gaussian() -> None:
    rng = np.random.default_rng(0)
    tasks = [rng.normal(size=(30, 6)) + 3 * t for t in range(3)]
    test = rng.normal(size=(5, 6)) + 3
    memory = GaussianMemory("routed", seed=0)
    for features in tasks:
        memory.add_task(features)
    for task in range(3):
        np.testing.assert_allclose(
            memory(torch.from_numpy(test), task).numpy(), _mahalanobis_by_hand(tasks[task], test), rtol=1e-9
        )
    assert not np.allclose(memory(torch.from_numpy(test), 0).numpy(), memory(torch.from_numpy(test), 1).numpy())


def test_dne_pooled_density_is_fitted_on_the_task_and_draws_from_the_earlier_gaussians() -> None:
    """DNE's own density: after task 1, one Gaussian of task 1's embeddings plus n_0 draws from task 0's Gaussian
    (unit rows, drawn as the memory documents); whatever task is asked for, every image is scored against it."""
    rng = np.random.default_rng(1)
    first, second = rng.normal(size=(25, 5)), rng.normal(size=(20, 5)) + 2
    test = torch.from_numpy(rng.normal(size=(4, 5)))
    memory = GaussianMemory("pooled", seed=7)
    memory.add_task(first)
    np.testing.assert_allclose(memory(test, 0).numpy(), _mahalanobis_by_hand(first, test.numpy()), rtol=1e-9)
    memory.add_task(second)
    z0 = _unit(first)
    draws = np.random.default_rng(7 * 1_000_003 + 1).multivariate_normal(
        z0.mean(axis=0), LedoitWolf().fit(z0).covariance_, size=25
    )
    pooled = np.concatenate([_unit(draws), _unit(second)])
    expected = _mahalanobis_by_hand(pooled, test.numpy())
    for task in (0, 1):
        np.testing.assert_allclose(memory(test, task).numpy(), expected, rtol=1e-9)
    with pytest.raises(ValueError, match="task 2 does not exist"):
        memory(test, 2)


def test_stacked_rows_read_every_part_in_order() -> None:
    parts = [np.arange(6).reshape(3, 2), np.arange(10, 14).reshape(2, 2)]
    stacked = StackedRows(parts)
    whole = np.concatenate(parts)
    assert len(stacked) == 5 and stacked.shape == (5, 2)
    rows = np.array([4, 0, 3, 2])
    assert np.array_equal(stacked[rows], whole[rows])
    with pytest.raises(IndexError):
        stacked[np.array([5])]


def _config(dataset: Path, cache: Path, *extra: str) -> dict:
    return tiny_config(dataset, cache, "evaluation.sample_images=1", "training.epochs=1", *extra)


def test_dne_in_a_continual_run_has_image_metrics_only_and_resumes(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(dataset, tmp_path / "cache", "strategy.name=dne")
    whole = run(config, tmp_path / "dne", progress=False, log=lambda *a: None)
    assert whole["status"] == "ok" and all(t["epoch_losses"] == [] for t in whole["per_task"])
    for mode in ("routed", "oracle"):
        assert 0.0 <= whole["mean"][mode]["image_auroc"] <= 1.0
        assert whole["mean"][mode]["pixel_auroc"] is None and whole["mean"][mode]["aupro"] is None
    assert np.isfinite(whole["forgetting"]["image_auroc"]["fm"]) and np.isnan(whole["forgetting"]["pixel_auroc"]["fm"])
    assert whole["params"]["base"] == 0 and whole["memory"]["router_bytes_per_task"] == 0.0
    assert whole["memory"]["bytes_per_task"] == 8.0 * (1 + 2 * (16 + 16 * 16))
    assert not (tmp_path / "dne" / "samples").exists()  # no map, no picture
    from moleflow.continual.predict import predict_images
    from moleflow.errors import MoleflowError

    image = next((dataset / "cap" / "test").rglob("*.png"))
    with pytest.raises(MoleflowError, match="makes no anomaly map"):
        predict_images(tmp_path / "dne", [str(image)], tmp_path / "predicted")
    assert not (tmp_path / "predicted").exists()
    # the pooled density changes as tasks arrive: task 0's image AUROC is measured against a new Gaussian each time
    column = [row[0] for row in whole["accuracy_matrix"]["image_auroc"]]
    assert len(set(column)) > 1
    resumed, messages = interrupted_then_resumed(config, tmp_path / "cut", monkeypatch)
    assert any("resuming after task 1" in m for m in messages)
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    routed = _config(dataset, tmp_path / "cache", "strategy.name=dne", "strategy.dne_density=routed")
    assert config_hash(routed) != config_hash(config)
    per_task = run(routed, tmp_path / "routed", progress=False, log=lambda *a: None)
    assert per_task["memory"]["router_bytes_per_task"] > 0
    # each task's own Gaussian never changes: task 0's cell is the same after every task
    assert len({row[0] for row in per_task["accuracy_matrix_oracle"]["image_auroc"]}) == 1
    assert per_task["forgetting_oracle"]["image_auroc"]["fm"] == 0.0


def test_the_joint_flow_trains_once_on_every_tasks_patches(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The joint flow sees every task's training patches, in one training after the last task: the batches it
    draws hold rows of every task; nothing is trained or measured before, so it has no forgetting."""
    import moleflow.continual.experiment as experiment

    seen: list[tuple[int, int]] = []
    original = experiment.train_task

    def spy(learner, task, patches, *args, **kwargs):
        seen.append((task, len(patches)))
        return original(learner, task, patches, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_task", spy)
    config = _config(dataset, tmp_path / "cache", "strategy.name=joint")
    summary = run(config, tmp_path / "joint", progress=False, log=lambda *a: None)
    assert summary["status"] == "ok" and seen == [(2, 24)]  # one training, on 3 tasks x 8 images
    assert [bool(t["epoch_losses"]) for t in summary["per_task"]] == [False, False, True]
    matrix = summary["accuracy_matrix"]["image_auroc"]
    assert matrix[0] == [None, None, None] and matrix[1] == [None, None, None]
    assert all(v is not None for v in matrix[2])
    assert summary["accuracy_matrix"] == summary["accuracy_matrix_oracle"]  # one model serves every task
    assert np.isnan(summary["forgetting"]["image_auroc"]["fm"])
    assert summary["params"]["per_task"] == 0 and summary["memory"]["bytes_per_task"] == 2.0 * 8 * 64 * 16
    monkeypatch.setattr(experiment, "train_task", original)
    resumed, messages = interrupted_then_resumed(config, tmp_path / "cut", monkeypatch)
    assert resumed["accuracy_matrix"] == summary["accuracy_matrix"]
    # on one category the joint flow is MoLE-Flow's task 0, bit for bit: what differs is only the sharing
    one = [
        _config(dataset, tmp_path / "cache", f"strategy.name={name}", "dataset.categories=[cap]")
        for name in ("joint", "frozen_base")
    ]
    joint_one, frozen_one = (
        run(c, tmp_path / f"one_{c['strategy']['name']}", progress=False, log=lambda *a: None) for c in one
    )
    assert joint_one["accuracy_matrix"] == frozen_one["accuracy_matrix"]
    assert joint_one["per_task"][0]["epoch_losses"] == frozen_one["per_task"][0]["epoch_losses"]


def test_joint_flow_batches_mix_the_tasks(dataset: Path, tmp_path: Path) -> None:
    """The rows the joint flow's training reads come from every task's cache entry."""
    from moleflow.continual import Learner
    from moleflow.continual.settings import TrainSettings
    from moleflow.continual.tasks import joint_patches, load_tasks
    from moleflow.continual.train import train_task
    from moleflow.features import FeatureStore

    config = _config(dataset, tmp_path / "cache", "strategy.name=joint")
    tasks = load_tasks(config, FeatureStore(config, progress=False, log=lambda *a: None))
    stacked = joint_patches(tasks)
    read: set[int] = set()

    class Recording(StackedRows):
        def __getitem__(self, rows: np.ndarray) -> np.ndarray:
            read.update(int(r) for r in np.asarray(rows))
            return super().__getitem__(rows)

    learner = Learner.from_config(config, int(tasks[0].train.patches.shape[-1]))
    for t in tasks:
        learner.add_task(np.asarray(t.train.router))
    result = train_task(learner, 2, Recording(stacked.parts), TrainSettings.from_config(config), torch.device("cpu"))
    assert result.status == "ok" and read == set(range(24))
    owners = {int(np.searchsorted(stacked.offsets, r, side="right") - 1) for r in read}
    assert owners == {0, 1, 2}
