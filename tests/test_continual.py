"""Continual runs: zero forgetting, routing, determinism, resume, divergence, strategies, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from moleflow.continual.settings import ScoreSettings, TrainSettings
from moleflow.cli import main
from moleflow.config import load_config, load_profile
from moleflow.continual import Learner, run
from moleflow.continual.evaluate import score_rows
from moleflow.continual.tasks import load_tasks
from moleflow.continual.train import train_task
from moleflow.data.synth import SynthCounts, generate
from moleflow.features import FeatureStore
from tests_helpers import interrupted_then_resumed, per_task_by_formula, scores_of_task0_after_each_task

CATEGORIES = ["cap", "tile", "screw"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, seed=0, size=64, categories=CATEGORIES, counts=SynthCounts(train=8, test_good=3, test_per_defect=2))
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def tiny(dataset: Path, cache: Path, *extra: str) -> dict:
    """A configuration small enough for the test suite (seconds per run)."""
    return load_config(
        overrides=[
            f"dataset.root={dataset}", f"features.cache_dir={cache}", "features.resize=64", "features.input_size=64",
            "features.embed_dim=16", "model.coupling_blocks=2", "model.lora_rank=4", "model.context_kernel=3",
            "training.epochs=2", "training.batch_size=4", "evaluation.sample_images=1", "scoring.map_sigma=1.0",
            "device=cpu", *extra,
        ],
        base=load_profile("cpu"),
    )


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
def test_resume_equals_uninterrupted(dataset: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_diverged_late_task_keeps_earlier_metrics(dataset: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import moleflow.continual.experiment as run_module
    from moleflow.continual.train import TrainResult

    real = run_module.train_task

    def explode(learner, task, *args, **kwargs):  # type: ignore[no-untyped-def]
        return TrainResult("diverged", message="non-finite loss at task 2") if task == 2 else real(learner, task, *args, **kwargs)

    monkeypatch.setattr(run_module, "train_task", explode)
    summary = run(tiny(dataset, cache), tmp_path / "late", progress=False, log=lambda *a: None)
    assert summary["status"] == "diverged" and summary["tasks_completed"] == 2
    assert set(summary["final"]) == set(sorted(CATEGORIES)[:2])
    assert summary["accuracy_matrix"]["image_auroc"][2] == [None, None, None]
    # forgetting belongs to a whole sequence: none for a run that stopped, the finished tasks' kept apart
    assert all(np.isnan(v) for m in summary["forgetting"].values() for v in m.values())
    assert summary["forgetting_partial"]["image_auroc"]["fm"] == 0.0  # frozen base, tasks 0 and 1


def test_non_finite_scores_make_the_run_diverged_not_a_mean_over_the_rest(dataset: Path, cache: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = Learner.patch_scores

    def broken(self, task, x):  # type: ignore[no-untyped-def]
        scores = real(self, task, x)
        return torch.full_like(scores, float("nan")) if task == 1 else scores

    monkeypatch.setattr(Learner, "patch_scores", broken)
    summary = run(tiny(dataset, cache), tmp_path / "nan", progress=False, log=lambda *a: None)
    assert summary["status"] == "diverged" and "non-finite scores on task 1" in summary["message"]
    assert summary["tasks_completed"] == 1 and list(summary["final"]) == [sorted(CATEGORIES)[0]]
    assert json.loads((tmp_path / "nan" / "status.json").read_text())["status"] == "diverged"


def _traced_run(config: dict, out: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, list[dict], list[tuple[int, int]]]:
    """``run(config)`` through the real loop, recording the learner's tensors and EWC penalty after each task's
    training, and every ``(training task, objective task)`` pair the training objective was evaluated for."""
    import moleflow.continual.experiment as experiment
    import moleflow.continual.train as train

    snapshots: list[dict] = []
    objectives: list[tuple[int, int]] = []
    training = [-1]
    real_train, real_objective = experiment.train_task, train._objective

    def traced_train(learner, task, *args, **kwargs):  # type: ignore[no-untyped-def]
        training[0] = task
        result = real_train(learner, task, *args, **kwargs)
        penalty = learner.ewc_penalty(task)
        snapshots.append({"state": {k: v.detach().clone() for k, v in learner.state_dict().items()},
                          "penalty": None if penalty is None else float(penalty)})
        return result

    def traced_objective(learner, task, *args, **kwargs):  # type: ignore[no-untyped-def]
        objectives.append((training[0], task))
        return real_objective(learner, task, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_task", traced_train)
    monkeypatch.setattr(train, "_objective", traced_objective)
    summary = run(config, out, progress=False, log=lambda *a: None)
    return summary, snapshots, objectives


def _base_of(state: dict, model: int = 0) -> dict:
    from moleflow.model.mole_flow import is_fixed_parameter, task_of_parameter

    prefix = f"models.{model}."
    return {k: v for k, v in state.items() if k.startswith(prefix) and task_of_parameter(k[len(prefix):]) is None
            and not is_fixed_parameter(k[len(prefix):])}


@pytest.mark.parametrize("strategy", ["separated", "replay", "sequential", "ewc", "frozen_base"])
def test_each_strategy_does_what_it_names(dataset: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          strategy: str) -> None:
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


def test_cli_run_and_config_mismatch(dataset: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", "--profile", "cpu", "--out", str(tmp_path / "cli"), "--quiet",
            "--set", f"dataset.root={dataset}", "--set", f"features.cache_dir={cache}", "--set", "features.resize=64",
            "--set", "features.input_size=64", "--set", "features.embed_dim=16", "--set", "model.coupling_blocks=1",
            "--set", "model.lora_rank=2", "--set", "training.epochs=1", "--set", "dataset.categories=[cap,tile]",
            "--set", "evaluation.sample_images=0", "--set", "device=cpu"]
    assert main(args) == 0
    assert "ok: 2/2 tasks" in capsys.readouterr().out
    assert main([*args, "--set", "training.epochs=2"]) == 2
    assert "holds a run of another configuration" in capsys.readouterr().err
    assert main([*args, "--set", "model.lora_rnk=2"]) == 2
    assert "unknown config key 'model.lora_rnk'" in capsys.readouterr().err


def test_memory_per_task_follows_what_each_strategy_keeps() -> None:
    from moleflow.config import apply_overrides
    from moleflow.continual.learner import memory_per_task, model_config, parameter_counts
    from moleflow.model import MoLEFlow
    from moleflow.model.mole_flow import is_fixed_parameter

    dim, cells = 16, 36
    small = {"model.coupling_blocks": 2, "model.lora_rank": 4, "strategy.replay_images": 5}
    memory = {s: memory_per_task(apply_overrides(load_profile("cpu"), {**small, "strategy.name": s}), dim, cells)
              for s in ("frozen_base", "sequential", "separated", "ewc", "replay")}
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


def test_predict_routes_a_mixed_batch_and_scores_each_group_with_its_adapters(dataset: Path, cache: Path) -> None:
    from moleflow.continual.infer import predict

    config = tiny(dataset, cache)
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner(config, tasks[0].train.patches.shape[-1])
    for task, data in enumerate(tasks):
        learner.add_task(np.asarray(data.train.router))
        assert train_task(learner, task, data.train.patches, TrainSettings.from_config(config), torch.device("cpu")).status == "ok"
    # interleave the test images of the three tasks: one batch, three routed groups
    picks = [(t, i) for i in range(4) for t in range(len(tasks))]
    patches = torch.from_numpy(np.stack([np.asarray(tasks[t].test.patches[i], dtype=np.float32) for t, i in picks]))
    router = torch.from_numpy(np.stack([np.asarray(tasks[t].test.router[i]) for t, i in picks]))
    out = predict(learner, patches, router, ScoreSettings.from_config(config))
    assert out.task.tolist() == [t for t, _ in picks]  # distinct categories: perfect routing
    for t in range(len(tasks)):
        alone = score_rows(learner, t, tasks[t].test.patches, np.arange(4), ScoreSettings.from_config(config), torch.device("cpu"))
        mine = np.array([k for k, (task, _) in enumerate(picks) if task == t])
        np.testing.assert_allclose(out.image[mine], alone.image, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out.maps[mine], alone.maps, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("strategy", ["frozen_base", "separated"])
def test_new_task_parameters_do_not_depend_on_the_global_rng(strategy: str) -> None:
    from moleflow.config import apply_overrides

    config = apply_overrides(load_profile("cpu"), {"strategy.name": strategy, "model.coupling_blocks": 1, "model.lora_rank": 2})
    states = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        learner = Learner(config, 8)
        for _ in range(2):
            torch.rand(7)  # something else drew from the global RNG in between (a summary, a resume)
            learner.add_task(np.random.default_rng(0).normal(size=(16, 8)))
        states.append(learner.state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cap`` and ``cap_twin`` (the same product from another generator seed) and ``tile``: the router must err."""
    root = tmp_path_factory.mktemp("twins")
    generate(root, seed=0, size=64, categories=["cap", "tile"], counts=SynthCounts(train=8, test_good=3, test_per_defect=2))
    other = tmp_path_factory.mktemp("twin-source")
    generate(other, seed=5, size=64, categories=["cap"], counts=SynthCounts(train=8, test_good=3, test_per_defect=2))
    (other / "cap").rename(root / "cap_twin")
    return root


def test_misrouted_images_are_scored_by_the_task_they_were_routed_to(twins: Path, cache: Path, tmp_path: Path) -> None:
    from moleflow.continual.evaluate import evaluate_task, metrics_of

    config = tiny(twins, cache, "dataset.categories=[cap,cap_twin,tile]")
    device = torch.device("cpu")
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner(config, tasks[0].train.patches.shape[-1])
    for task, data in enumerate(tasks):
        learner.add_task(np.asarray(data.train.router))
        assert train_task(learner, task, data.train.patches, TrainSettings.from_config(config), device).status == "ok"
    misrouted = 0
    expected: dict[str, dict] = {}
    for task, data in enumerate(tasks):
        ev = evaluate_task(learner, task, data, ScoreSettings.from_config(config), device)
        n = len(data.test.labels)
        image = np.empty(n)
        maps = np.empty((n, 64, 64), dtype=np.float32)
        for k in range(n):  # each image alone, under the adapters the router chose for it
            alone = score_rows(learner, int(ev.routed_to[k]), data.test.patches, np.array([k]), ScoreSettings.from_config(config), device)
            image[k], maps[k] = alone.image[0], alone.maps[0]
        np.testing.assert_allclose(ev.routed_scores.image, image, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ev.routed_scores.maps, maps, rtol=1e-5, atol=1e-4)
        wrong = ev.routed_to != task
        misrouted += int(wrong.sum())
        assert data.category != "tile" or not wrong.any()  # the distinct product is never confused
        assert set(ev.routed_to[wrong]) <= {0, 1}  # the twins are confused with each other only
        routed = metrics_of(np.asarray(data.test.labels), np.asarray(data.test.masks),
                            type(ev.routed_scores)(image, maps), config["scoring"]["aupro_fpr_limit"])
        # maps agree to 1e-4 (one image's float sums against a batch's); pixel AP ranks 4,096 pixels per image,
        # among them near-ties that such a difference can reorder: 1e-5 is still far below any reported digit
        assert routed == pytest.approx(ev.routed, abs=1e-5)
        if not wrong.any():
            assert ev.routed == ev.oracle
        expected[data.category] = routed
    assert misrouted > 0
    summary = run(config, tmp_path / "twins", progress=False, log=lambda *a: None)
    assert summary["routing_accuracy"] < 1.0
    confusion = np.array(summary["routing_confusion"])
    assert confusion[0, 1] + confusion[1, 0] == misrouted and confusion[2, 2] == confusion[2].sum()
    for category, metrics in expected.items():
        assert summary["final"][category]["routed"] == pytest.approx(metrics, abs=1e-5), category  # as above
    assert any(summary["final"][c]["routed"] != summary["final"][c]["oracle"] for c in ("cap", "cap_twin"))


@pytest.mark.slow
def test_a_seeded_random_order_runs_the_sequence_it_drew(dataset: Path, cache: Path, tmp_path: Path) -> None:
    """``task_order: random`` draws a permutation from ``order_seed``; the run equals the same sequence given."""
    from moleflow.continual.tasks import task_order

    draws = {seed: task_order(tiny(dataset, cache, "task_order=random", f"order_seed={seed}")) for seed in range(6)}
    assert all(sorted(order) == sorted(CATEGORIES) for order in draws.values())
    assert len({tuple(order) for order in draws.values()}) > 1  # the seed matters
    assert draws[3] == task_order(tiny(dataset, cache, "task_order=random", "order_seed=3"))  # and fixes the order
    seed = next(s for s, order in draws.items() if order != sorted(CATEGORIES))  # not the alphabetical one
    drawn = run(tiny(dataset, cache, "task_order=random", f"order_seed={seed}"), tmp_path / "random",
                progress=False, log=lambda *a: None)
    listed = ",".join(draws[seed])
    given = run(tiny(dataset, cache, "task_order=given", f"dataset.categories=[{listed}]"), tmp_path / "given",
                progress=False, log=lambda *a: None)
    assert drawn["status"] == "ok" and drawn["tasks"] == draws[seed] == given["tasks"]
    for key in ("final", "accuracy_matrix", "accuracy_matrix_oracle", "routing_confusion"):
        assert drawn[key] == given[key], key


def _as_visa(mvtec: Path, visa: Path) -> Path:
    """The MVTec-layout tree ``mvtec`` rewritten in the VisA layout: JPG images, class-id masks, split_csv/1cls.csv."""
    import csv

    from PIL import Image

    rows = []
    for category in sorted(p.name for p in mvtec.iterdir() if p.is_dir()):
        pictures = [("train", "good", p) for p in sorted((mvtec / category / "train" / "good").glob("*.png"))]
        pictures += [("test", d.name, p) for d in sorted((mvtec / category / "test").iterdir()) for p in sorted(d.glob("*.png"))]
        defects = sorted({d for _, d, _ in pictures if d != "good"})
        for k, (split, defect, path) in enumerate(pictures):
            kind = "Normal" if defect == "good" else "Anomaly"
            image = f"{category}/Data/Images/{kind}/{k:04d}.JPG"
            (visa / image).parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).convert("RGB").save(visa / image, format="JPEG", quality=95)
            mask = ""
            if defect != "good":
                mask = f"{category}/Data/Masks/Anomaly/{k:04d}.png"
                (visa / mask).parent.mkdir(parents=True, exist_ok=True)
                binary = np.asarray(Image.open(mvtec / category / "ground_truth" / defect / f"{path.stem}_mask.png")) > 0
                Image.fromarray((binary * (1 + defects.index(defect))).astype(np.uint8)).save(visa / mask)
            rows.append([category, split, "normal" if defect == "good" else "anomaly", image, mask])
    (visa / "split_csv").mkdir(parents=True)
    with (visa / "split_csv" / "1cls.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["object", "split", "label", "image", "mask"], *rows])
    return visa


def test_visa_through_features_run_and_summary(dataset: Path, cache: Path, tmp_path: Path) -> None:
    from moleflow.data import check_dataset

    visa = _as_visa(dataset, tmp_path / "visa")
    assert check_dataset("visa", visa) == check_dataset("mvtec", dataset)
    config = tiny(visa, cache, "dataset.kind=visa")
    mvtec_config = tiny(dataset, cache)
    for category in CATEGORIES:  # the same test images: the same labels and the same (binarised) masks
        got = FeatureStore(config, progress=False).get(category, "test")
        want = FeatureStore(mvtec_config, progress=False).get(category, "test")
        assert sorted(np.asarray(got.labels)) == sorted(np.asarray(want.labels))
        assert sorted(m.sum() for m in np.asarray(got.masks)) == sorted(m.sum() for m in np.asarray(want.masks))
    summary = run(config, tmp_path / "run", progress=False, log=lambda *a: None)
    assert summary["status"] == "ok" and summary["tasks"] == sorted(CATEGORIES) and summary["config"]["dataset"]["kind"] == "visa"
    for category, result in summary["final"].items():
        assert all(np.isfinite(v) and 0.0 <= v <= 1.0 for mode in result.values() for v in mode.values()), category
    assert summary["routing_accuracy"] == 1.0 and summary["forgetting"]["image_auroc"]["fm"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["frozen_base", "sequential", "ewc"])
def test_killed_between_checkpoint_and_commit_resumes_exactly(dataset: Path, cache: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, strategy: str) -> None:
    """Task 1's checkpoint is on disk but ``progress.json`` still says one task: the rerun redoes task 1 from
    the state after task 0, not from the state after task 1 it finds on disk, and ends as an uninterrupted run."""
    import moleflow.continual.checkpoint as checkpoint

    config = tiny(dataset, cache, f"strategy.name={strategy}")
    whole = run(config, tmp_path / "whole", progress=False, log=lambda *a: None)
    real = checkpoint.write_json_atomic

    def killed_before_commit(path, data):  # type: ignore[no-untyped-def]
        if Path(path).name == "progress.json" and data["completed"] == 2:
            raise KeyboardInterrupt  # the process dies after writing task 1's checkpoint, before committing it
        return real(path, data)

    monkeypatch.setattr(checkpoint, "write_json_atomic", killed_before_commit)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path / "cut", progress=False, log=lambda *a: None)
    assert json.loads((tmp_path / "cut" / "checkpoints" / "progress.json").read_text())["completed"] == 1
    monkeypatch.setattr(checkpoint, "write_json_atomic", real)
    messages: list[str] = []
    resumed = run(config, tmp_path / "cut", progress=False, log=messages.append)
    assert any("resuming after task 0" in m for m in messages)
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    assert resumed["accuracy_matrix_oracle"] == whole["accuracy_matrix_oracle"]


def test_ewc_penalty_and_per_sample_fisher_by_hand(dataset: Path, cache: Path) -> None:
    """The penalty is lambda/2 sum F (theta - theta*)^2; the Fisher is the mean over images of each image's squared
    gradient, computed here with a plain autograd loop over the model's own objective."""
    from moleflow.continual.train import empirical_fisher
    config = tiny(dataset, cache, "strategy.name=ewc", "strategy.ewc_lambda=7.0")
    settings = TrainSettings.from_config(config)
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner(config, tasks[0].train.patches.shape[-1])
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
                by_hand[n] += g ** 2 / len(patches)
    for p in named.values():
        p.requires_grad_(False)
    assert fisher.keys() == by_hand.keys()
    for n in fisher:
        torch.testing.assert_close(fisher[n], by_hand[n], rtol=1e-4, atol=1e-10)
    learner.consolidate(0, fisher)
    with torch.no_grad():
        for p in named.values():
            p.add_(0.01)  # move the base away from its anchor
    expected = 0.5 * 7.0 * sum(float((fisher[n] * 0.01 ** 2).sum()) for n in fisher)
    assert float(learner.ewc_penalty(1)) == pytest.approx(expected, rel=1e-4)


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
    sequential = run(tiny(dataset, cache, "strategy.name=sequential"), tmp_path / "seq", progress=False, log=lambda *a: None)
    assert len({t["fingerprints"]["base"] for t in sequential["per_task"]}) == len(CATEGORIES)

    for record in frozen["per_task"]:
        inv = record["invertibility"]
        assert len(inv["tasks"]) == record["task"] + 1
        assert inv["max_relative_reconstruction"] < 1e-5 and inv["max_inverse_logdet"] < 1e-4
        assert inv["relative_logdet_autograd"] < 1e-9  # float64: the formula, not rounding

    config = tiny(dataset, cache)
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner(config, int(tasks[0].train.patches.shape[-1]))
    for t in tasks:
        learner.add_task(np.asarray(t.train.router))
    feats = torch.from_numpy(np.concatenate([np.asarray(t.test.router) for t in tasks]))
    means = np.stack([np.asarray(t.train.router, dtype=np.float64).mean(axis=0) for t in tasks])
    by_hand = np.argmin(((feats.numpy()[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (learner.router.nearest_mean(feats).numpy() == by_hand).all()
    truth = np.concatenate([np.full(len(t.test.labels), i) for i, t in enumerate(tasks)])
    assert frozen["routing_accuracy_euclidean"] == pytest.approx(float((by_hand == truth).mean()))
    # the test images per category, for the resolution of an image-level metric (the audit's margins)
    assert frozen["dataset"]["test_counts"] == {t.category: {"normal": int((np.asarray(t.test.labels) == 0).sum()),
                                                             "anomalous": int((np.asarray(t.test.labels) == 1).sum())}
                                                for t in tasks}

    assert config["scoring"]["image_top_k"] == 3
    for category, final in frozen["final"].items():  # k = 3 re-scored is the run's own image AUROC
        assert frozen["rescored"]["image_auroc"]["3"][category] == final["oracle"]["image_auroc"]
    assert set(frozen["rescored"]["mean"]) == {"1", "3", "5", "10"}
    assert frozen["inference"]["backbone_passes_per_test_image"] == 1.0
