"""Continual runs: zero forgetting, routing, determinism, resume, divergence, strategies, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tests_helpers import (
    interrupted_then_resumed,
    scores_of_task0_after_each_task,
    tiny,
)

from moleflow.cli import main
from moleflow.continual import Learner, run
from moleflow.continual.evaluate import score_rows
from moleflow.continual.settings import ScoreSettings, TrainSettings
from moleflow.continual.tasks import load_tasks
from moleflow.continual.train import train_task
from moleflow.features import FeatureStore

CATEGORIES = ["cap", "tile", "screw"]


def _comparable(summary: dict) -> dict:
    out = dict(summary)
    out.pop("timings")  # every timing lives there: the rest of two summaries of one configuration is equal
    return out


def test_frozen_base_forgets_nothing_bitwise_and_sequential_does(dataset: Path, cache: Path) -> None:
    frozen = scores_of_task0_after_each_task(tiny(dataset, cache))[0]
    assert all(np.array_equal(frozen[0], later) for later in frozen[1:])
    sequential = scores_of_task0_after_each_task(tiny(dataset, cache, "strategy.name=sequential"))[0]
    assert np.array_equal(sequential[0], frozen[0])  # same data, same first task
    assert not np.array_equal(sequential[0], sequential[-1])


def test_run_summary_routing_and_determinism(dataset: Path, cache: Path, tmp_path: Path) -> None:
    config = tiny(dataset, cache)
    first = run(config, tmp_path / "a", progress=False, log=lambda *a: None)
    assert first["status"] == "ok" and first["tasks"] == sorted(CATEGORIES)
    assert first["routing_accuracy"] == 1.0
    for category, result in first["final"].items():
        assert result["routed"] == result["oracle"], category  # perfect routing: routed equals oracle
    for metric, values in first["forgetting"].items():
        assert values["fm"] == 0.0 and values["paper"] == 0.0, metric
    matrix = first["accuracy_matrix"]["image_auroc"]
    assert matrix[0][1] is None and matrix[0][2] is None and matrix[2][0] == matrix[0][0]
    assert set(first["params"]) >= {"base", "per_task", "per_task_without_dia", "overhead_pct"}
    assert first["params"]["per_task"] > first["params"]["per_task_without_dia"] > 0
    assert set(first["timings"]) >= {"features", "training", "evaluation"}
    on_disk = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert on_disk["config"] == config and on_disk["seed"] == 0
    assert yaml.safe_load((tmp_path / "a" / "config.yaml").read_text()) == config
    assert (tmp_path / "a" / "tasks.csv").read_text().count("\n") == 1 + 2 * 6
    assert len(list((tmp_path / "a" / "samples").glob("*.png"))) == 3
    assert (tmp_path / "a" / "accuracy_matrix.png").stat().st_size > 1000
    second = run(config, tmp_path / "b", progress=False, log=lambda *a: None)
    assert _comparable(second) == _comparable(first)


@pytest.mark.slow
def test_resume_equals_uninterrupted(
    dataset: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for strategy in ("frozen_base", "ewc", "separated", "replay", "sequential"):
        config = tiny(dataset, cache, f"strategy.name={strategy}", "strategy.replay_images=2")
        whole = run(config, tmp_path / f"whole-{strategy}", progress=False, log=lambda *a: None)
        resumed, messages = interrupted_then_resumed(config, tmp_path / f"cut-{strategy}", monkeypatch)
        assert any("resuming after task 1" in m for m in messages)
        assert _comparable(resumed)["final"] == _comparable(whole)["final"]
        assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
        assert resumed["accuracy_matrix_oracle"] == whole["accuracy_matrix_oracle"]


def test_divergence_is_recorded_not_raised(dataset: Path, cache: Path, tmp_path: Path) -> None:
    config = tiny(dataset, cache, "training.lr=1.0e+8", "training.clip_grad_norm=0", "training.warmup_epochs=0")
    summary = run(config, tmp_path / "div", progress=False, log=lambda *a: None)
    assert summary["status"] == "diverged" and "non-finite loss" in summary["message"]
    assert summary["tasks_completed"] < 3
    on_disk = json.loads((tmp_path / "div" / "summary.json").read_text())
    assert on_disk["status"] == "diverged"


def test_diverged_late_task_keeps_earlier_metrics(
    dataset: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moleflow.continual.experiment as run_module
    from moleflow.continual.train import TrainResult

    real = run_module.train_task

    def explode(learner, task, *args, **kwargs):
        return (
            TrainResult("diverged", message="non-finite loss at task 2")
            if task == 2
            else real(learner, task, *args, **kwargs)
        )

    monkeypatch.setattr(run_module, "train_task", explode)
    summary = run(tiny(dataset, cache), tmp_path / "late", progress=False, log=lambda *a: None)
    assert summary["status"] == "diverged" and summary["tasks_completed"] == 2
    assert set(summary["final"]) == set(sorted(CATEGORIES)[:2])
    assert summary["accuracy_matrix"]["image_auroc"][2] == [None, None, None]
    # forgetting belongs to a whole sequence: none for a run that stopped, the finished tasks' kept apart
    assert all(np.isnan(v) for m in summary["forgetting"].values() for v in m.values())
    assert summary["forgetting_partial"]["image_auroc"]["fm"] == 0.0  # frozen base, tasks 0 and 1


def test_non_finite_scores_make_the_run_diverged_not_a_mean_over_the_rest(
    dataset: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Learner.patch_scores

    def broken(self, task, x):
        scores = real(self, task, x)
        return torch.full_like(scores, float("nan")) if task == 1 else scores

    monkeypatch.setattr(Learner, "patch_scores", broken)
    summary = run(tiny(dataset, cache), tmp_path / "nan", progress=False, log=lambda *a: None)
    assert summary["status"] == "diverged" and "non-finite scores on task 1" in summary["message"]
    assert summary["tasks_completed"] == 1 and list(summary["final"]) == [sorted(CATEGORIES)[0]]
    assert json.loads((tmp_path / "nan" / "status.json").read_text())["status"] == "diverged"


def test_cli_run_and_config_mismatch(
    dataset: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "run",
        "--profile",
        "cpu",
        "--out",
        str(tmp_path / "cli"),
        "--quiet",
        "--set",
        f"dataset.root={dataset}",
        "--set",
        f"features.cache_dir={cache}",
        "--set",
        "features.resize=64",
        "--set",
        "features.input_size=64",
        "--set",
        "features.embed_dim=16",
        "--set",
        "model.coupling_blocks=1",
        "--set",
        "model.lora_rank=2",
        "--set",
        "training.epochs=1",
        "--set",
        "dataset.categories=[cap,tile]",
        "--set",
        "evaluation.sample_images=0",
        "--set",
        "device=cpu",
    ]
    assert main(args) == 0
    assert "ok: 2/2 tasks" in capsys.readouterr().out
    assert main([*args, "--set", "training.epochs=2"]) == 2
    assert "holds a run of another configuration" in capsys.readouterr().err
    assert main([*args, "--set", "model.lora_rnk=2"]) == 2
    assert "unknown config key 'model.lora_rnk'" in capsys.readouterr().err


def test_predict_routes_a_mixed_batch_and_scores_each_group_with_its_adapters(dataset: Path, cache: Path) -> None:
    from moleflow.continual.infer import predict

    config = tiny(dataset, cache)
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    for task, data in enumerate(tasks):
        learner.add_task(np.asarray(data.train.router))
        assert (
            train_task(learner, task, data.train.patches, TrainSettings.from_config(config), torch.device("cpu")).status
            == "ok"
        )
    # interleave the test images of the three tasks: one batch, three routed groups
    picks = [(t, i) for i in range(4) for t in range(len(tasks))]
    patches = torch.from_numpy(np.stack([np.asarray(tasks[t].test.patches[i], dtype=np.float32) for t, i in picks]))
    router = torch.from_numpy(np.stack([np.asarray(tasks[t].test.router[i]) for t, i in picks]))
    out = predict(learner, patches, router, ScoreSettings.from_config(config))
    assert out.task.tolist() == [t for t, _ in picks]  # distinct categories: perfect routing
    for t in range(len(tasks)):
        alone = score_rows(
            learner, t, tasks[t].test.patches, np.arange(4), ScoreSettings.from_config(config), torch.device("cpu")
        )
        mine = np.array([k for k, (task, _) in enumerate(picks) if task == t])
        np.testing.assert_allclose(out.image[mine], alone.image, rtol=1e-5, atol=1e-5)
        assert alone.maps is not None
        np.testing.assert_allclose(out.maps[mine], alone.maps, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["frozen_base", "sequential", "ewc"])
def test_killed_between_checkpoint_and_commit_resumes_exactly(
    dataset: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    """Task 1's checkpoint is on disk but ``progress.json`` still says one task: the rerun redoes task 1 from
    the state after task 0, not from the state after task 1 it finds on disk, and ends as an uninterrupted run."""
    import moleflow.continual.checkpoint as state

    config = tiny(dataset, cache, f"strategy.name={strategy}")
    whole = run(config, tmp_path / "whole", progress=False, log=lambda *a: None)
    real = state.write_json_atomic

    def killed_before_commit(path, data):
        if Path(path).name == "progress.json" and data["completed"] == 2:
            raise KeyboardInterrupt  # the process dies after writing task 1's checkpoint, before committing it
        return real(path, data)

    monkeypatch.setattr(state, "write_json_atomic", killed_before_commit)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path / "cut", progress=False, log=lambda *a: None)
    assert json.loads((tmp_path / "cut" / "checkpoints" / "progress.json").read_text())["completed"] == 1
    monkeypatch.setattr(state, "write_json_atomic", real)
    messages: list[str] = []
    resumed = run(config, tmp_path / "cut", progress=False, log=messages.append)
    assert any("resuming after task 0" in m for m in messages)
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    assert resumed["accuracy_matrix_oracle"] == whole["accuracy_matrix_oracle"]


@pytest.mark.slow
def test_runs_record_what_the_claims_audit_reads(dataset: Path, cache: Path, tmp_path: Path) -> None:
    """Fingerprints (frozen base unchanged, earlier tasks unchanged; a sequential base changes), invertibility
    after each task, the Euclidean router beside the Mahalanobis one, image top-k re-scored from the same
    patch scores, and one backbone pass per test image."""
    frozen = run(tiny(dataset, cache), tmp_path / "frozen", progress=False, log=lambda *a: None)
    records = [t["fingerprints"] for t in frozen["per_task"]]
    assert len({r["base"] for r in records}) == 1
    for j, record in enumerate(records):
        assert record["tasks"] == records[-1]["tasks"][: j + 1]  # task t's digest never changes after task t
    sequential = run(
        tiny(dataset, cache, "strategy.name=sequential"), tmp_path / "seq", progress=False, log=lambda *a: None
    )
    assert len({t["fingerprints"]["base"] for t in sequential["per_task"]}) == len(CATEGORIES)

    for record in frozen["per_task"]:
        inv = record["invertibility"]
        assert len(inv["tasks"]) == record["task"] + 1
        assert inv["max_relative_reconstruction"] < 1e-5 and inv["max_inverse_logdet"] < 1e-4
        assert inv["relative_logdet_autograd"] < 1e-9  # float64: the formula, not rounding

    config = tiny(dataset, cache)
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, int(tasks[0].train.patches.shape[-1]))
    for t in tasks:
        learner.add_task(np.asarray(t.train.router))
    feats = torch.from_numpy(np.concatenate([np.asarray(t.test.router) for t in tasks]))
    means = np.stack([np.asarray(t.train.router, dtype=np.float64).mean(axis=0) for t in tasks])
    by_hand = np.argmin(((feats.numpy()[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (learner.router.nearest_mean(feats).numpy() == by_hand).all()
    truth = np.concatenate([np.full(len(t.test.labels), i) for i, t in enumerate(tasks)])
    assert frozen["routing_accuracy_euclidean"] == pytest.approx(float((by_hand == truth).mean()))
    # the test images per category, for the resolution of an image-level metric (the audit's margins)
    assert frozen["dataset"]["test_counts"] == {
        t.category: {
            "normal": int((np.asarray(t.test.labels) == 0).sum()),
            "anomalous": int((np.asarray(t.test.labels) == 1).sum()),
        }
        for t in tasks
    }

    assert config["scoring"]["image_top_k"] == 3
    for category, final in frozen["final"].items():  # k = 3 re-scored is the run's own image AUROC
        assert frozen["rescored"]["image_auroc"]["3"][category] == final["oracle"]["image_auroc"]
    assert set(frozen["rescored"]["mean"]) == {"1", "3", "5", "10"}
    assert frozen["inference"]["backbone_passes_per_test_image"] == 1.0
