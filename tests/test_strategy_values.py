"""What each strategy object says of itself, against values by hand: the planner's work units, whether its
seeds differ, its name; and a run summary read back (the refusals name the file and what it lacks)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from tests_helpers import per_task_by_formula

from moleflow.continual.checkpoint import RunState
from moleflow.continual.strategies import STRATEGIES, Strategy, strategy_named
from moleflow.continual.strategies.base import CostInputs
from moleflow.continual.summary_file import SUMMARY_KEYS, read_summary
from moleflow.errors import MoleflowError

CONFIG = {"model": {"coupling_blocks": 6, "dia_blocks": 2}, "training": {"epochs": 3}, "features": {"input_size": 64}}


@pytest.mark.parametrize("name", ["frozen_base", "sequential", "ewc", "replay", "joint", "separated"])
def test_a_flow_strategys_work_is_tasks_epochs_pixels_and_blocks(name: str) -> None:
    assert strategy_named(name).estimated_work(CONFIG, 5) == 5 * 3 * 64 * 64 * (6 + 2)
    no_blocks = {**CONFIG, "model": {"coupling_blocks": 0, "dia_blocks": 0}}
    assert strategy_named(name).estimated_work(no_blocks, 2) == 2 * 3 * 64 * 64 * 1  # at least one block


def test_the_memories_work_is_their_evaluation_or_nothing() -> None:
    work = strategy_named("knn").estimated_work(CONFIG, 5)
    assert work == 8 * 5 * 5 * 64 * 64 and isinstance(work, float)
    assert strategy_named("dne").estimated_work(CONFIG, 7) == 7.0


def test_seeds_differ_unless_a_bank_is_kept_whole() -> None:
    for name in STRATEGIES:
        if name != "knn":
            assert strategy_named(name).draws_at_random() is True, name
    assert strategy_named("knn").draws_at_random() is False  # the default keeps every patch
    assert strategy_named("knn", {"knn_coreset_ratio": 1.0}).draws_at_random() is False
    assert strategy_named("knn", {"knn_coreset_ratio": 0.25}).draws_at_random() is True


def test_a_strategy_names_itself() -> None:
    assert repr(strategy_named("frozen_base")) == "FrozenBase('frozen_base')"
    assert {strategy_named(name).name for name in STRATEGIES} == set(STRATEGIES)


def _summary() -> dict[str, object]:
    return {key: i for i, key in enumerate(SUMMARY_KEYS)}


def test_a_summary_is_read_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "run" / "summary.json"
    path.parent.mkdir()
    path.write_text(json.dumps({**_summary(), "extra": [1, 2]}), encoding="utf-8")
    assert read_summary(str(path)) == {**_summary(), "extra": [1, 2]}


def test_a_broken_summary_is_refused_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "run" / "summary.json"
    path.parent.mkdir()
    fix = f"rerun that run (its folder resumes) or delete {path.parent}"
    path.write_text('{"status": "ok", "config', encoding="utf-8")
    with pytest.raises(MoleflowError) as error:
        read_summary(path)
    assert str(error.value).startswith(f"{path}: truncated or not JSON (Unterminated string")
    assert str(error.value).endswith(f"); {fix}")
    missing = tmp_path / "run" / "absent.json"
    with pytest.raises(MoleflowError, match=r"absent\.json: truncated or not JSON \(\[Errno 2\] No such file"):
        read_summary(missing)
    lacking = _summary()
    del lacking["tasks"], lacking["forgetting"]
    path.write_text(json.dumps(lacking), encoding="utf-8")
    with pytest.raises(MoleflowError) as error:
        read_summary(path)
    assert str(error.value) == f"{path}: not a run summary (no tasks, forgetting); {fix}"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(MoleflowError) as error:
        read_summary(path)
    assert str(error.value) == f"{path}: not a run summary (no {', '.join(SUMMARY_KEYS)}); {fix}"


# ---------------------------------------------------------------------------------------------- Table 1's accounting
DIM, CELLS, TRAIN = 16, 36, 10
SMALL = {"model.coupling_blocks": 2, "model.lora_rank": 4, "model.dia_blocks": 2, "strategy.replay_images": 5}


def _config(strategy: str, **extra: object) -> dict:
    from moleflow.config import apply_overrides, load_profile

    return apply_overrides(load_profile("cpu"), {**SMALL, "strategy.name": strategy, **extra})


def _named(config: dict, tasks: int) -> list[tuple[str, torch.nn.Parameter]]:
    """The named parameters of the configured model on ``DIM``-vectors with ``tasks`` tasks added."""
    from moleflow.continual.settings import model_config
    from moleflow.model import MoLEFlow

    model = MoLEFlow(model_config(config, DIM))
    for _ in range(tasks):
        model.add_task()
    return list(model.named_parameters())


def _shared_and_task0(config: dict) -> tuple[int, int]:
    """The shared parameters (no task index, not fixed: a permutation, a frozen global affine) and task 0's own,
    counted name by name in a model of three tasks (the count of a later task's adapters is the closed formula's)."""
    from moleflow.model.mole_flow import is_fixed_parameter, task_of_parameter

    named = _named(config, 3)
    affine = config["model"]["global_affine"]  # a frozen global affine is a constant, as the permutations are
    shared = sum(p.numel() for n, p in named if task_of_parameter(n) is None and not is_fixed_parameter(n, affine))
    return shared, sum(p.numel() for n, p in named if task_of_parameter(n) == 0)


def _numel(config: dict, prefix: str = "", suffixes: tuple[str, ...] = ()) -> int:
    """Parameters of a one-task model whose names start with ``prefix`` or end with one of ``suffixes``."""
    return sum(p.numel() for n, p in _named(config, 1) if (prefix and n.startswith(prefix)) or n.endswith(suffixes))


ADAPTERS = per_task_by_formula(DIM, blocks=2, rank=4, dia=2)
DIA = 2 * 2 * 3 * (DIM // 2 * DIM // 2 + DIM // 2)  # two blocks of two MLPs of three D/2 x D/2 linears with biases
ROUTER = 8.0 * (DIM + DIM * DIM)  # a float64 mean and precision per task


def test_flow_counts_are_the_shared_task0_and_a_later_tasks_parameters() -> None:
    from moleflow.continual.strategies.base import flow_counts

    config = _config("frozen_base")
    base, task0 = _shared_and_task0(config)
    state = torch.random.get_rng_state()
    assert flow_counts(config, DIM) == {
        "base": base, "task0": task0, "per_task": ADAPTERS, "per_task_without_dia": ADAPTERS - DIA,
    }  # fmt: skip
    assert torch.equal(torch.random.get_rng_state(), state)  # counting draws nothing from the global RNG
    bare = _config("frozen_base", **{"model.task0_adapters": False})  # task 0 without LoRA: not a later task's count
    base, task0 = _shared_and_task0(bare)
    assert flow_counts(bare, DIM)["task0"] == task0 != ADAPTERS


def test_parameter_counts_of_every_strategy() -> None:
    from moleflow.continual.strategies import parameter_counts
    from moleflow.continual.strategies.base import with_overheads

    base, task0 = _shared_and_task0(_config("frozen_base"))
    flow = {
        "base": base, "per_task": ADAPTERS, "per_task_without_dia": ADAPTERS - DIA,
        "overhead_pct": 100.0 * ADAPTERS / base, "overhead_without_dia_pct": 100.0 * (ADAPTERS - DIA) / base,
    }  # fmt: skip
    for name in ("frozen_base", "sequential", "ewc", "replay", "separated"):
        assert parameter_counts(_config(name), DIM) == pytest.approx(flow), name
    joint = {"base": base + task0, "per_task": 0, "per_task_without_dia": 0, "overhead_pct": 0.0}
    assert parameter_counts(_config("joint"), DIM) == pytest.approx({**joint, "overhead_without_dia_pct": 0.0})
    for name in ("knn", "dne"):
        counts = parameter_counts(_config(name), DIM)
        assert {k: counts[k] for k in ("base", "per_task", "per_task_without_dia")} == dict.fromkeys(
            ("base", "per_task", "per_task_without_dia"), 0
        )
        assert math.isnan(counts["overhead_pct"]) and math.isnan(counts["overhead_without_dia_pct"])
    none = with_overheads(0, 5, 3)
    assert (none["per_task"], none["per_task_without_dia"]) == (5, 3) and math.isnan(none["overhead_pct"])
    assert math.isnan(none["overhead_without_dia_pct"])


def _memory(strategy: str, **extra: object) -> dict[str, float]:
    from moleflow.continual.strategies import memory_per_task

    return memory_per_task(_config(strategy, **extra), DIM, CELLS, TRAIN)


def test_memory_per_task_of_each_flow_strategy() -> None:
    base, task0 = _shared_and_task0(_config("frozen_base"))
    adapters = {
        "params_per_task": ADAPTERS, "bytes_per_task": 4.0 * ADAPTERS, "pct_of_base": 100.0 * ADAPTERS / base,
        "fixed_bytes": 0.0, "router_bytes_per_task": ROUTER,
    }  # fmt: skip
    assert _memory("frozen_base") == pytest.approx(adapters)
    assert _memory("sequential") == pytest.approx(adapters)
    assert _memory("ewc") == pytest.approx({**adapters, "fixed_bytes": 2 * 4.0 * base})  # Fisher and anchor
    replay = 4.0 * ADAPTERS + 2.0 * 5 * CELLS * DIM  # adapters and five float16 feature maps
    assert _memory("replay") == pytest.approx({**adapters, "bytes_per_task": replay, "pct_of_base": 25 * replay / base})
    joint = 2.0 * TRAIN * CELLS * DIM  # every training feature map, float16
    assert _memory("joint") == pytest.approx(
        {"params_per_task": 0.0, "bytes_per_task": joint, "pct_of_base": 25 * joint / (base + task0),
         "fixed_bytes": 0.0, "router_bytes_per_task": 0.0}
    )  # fmt: skip


def test_memory_per_task_of_a_whole_model_per_task_in_each_form() -> None:
    base, task0 = _shared_and_task0(_config("separated"))
    whole = base + task0

    def expected(params: int, shared_base: int) -> dict[str, float]:
        return {
            "params_per_task": params, "bytes_per_task": 4.0 * params, "pct_of_base": 100.0 * params / shared_base,
            "fixed_bytes": 0.0, "router_bytes_per_task": ROUTER,
        }  # fmt: skip

    assert _memory("separated") == pytest.approx(expected(whole, base))
    mixer = _numel(_config("separated"), prefix="mixer.")
    assert mixer > 0 and _memory("separated", **{"strategy.separated_mixer": "shared"}) == pytest.approx(
        expected(whole - mixer, base)
    )
    frozen = {"model.global_affine": "frozen"}
    base_f, task0_f = _shared_and_task0(_config("separated", **frozen))
    affine = _numel(_config("separated"), suffixes=(".global_scale", ".global_offset"))
    assert affine > 0 and base_f == base - affine
    assert _memory("separated", **frozen) == pytest.approx(expected(base_f + task0_f, base_f))
    trained = _memory("separated", **frozen, **{"strategy.separated_global_affine": "trained"})
    assert trained == pytest.approx(expected(base_f + task0_f + affine, base_f))  # a later task trains its affine


@pytest.mark.parametrize("mode", ["per_task", "joint", "replaced"])
def test_a_memory_bank_is_its_coreset_of_float32_patches(mode: str) -> None:
    bank = 4.0 * math.ceil(0.3 * TRAIN * CELLS) * DIM  # ceil(0.3 x 360) = 108 patches of D float32
    found = _memory("knn", **{"strategy.knn_coreset_ratio": 0.3, "strategy.knn_bank": mode})
    assert found["params_per_task"] == 0.0 and math.isnan(found["pct_of_base"])
    assert (found["bytes_per_task"], found["fixed_bytes"]) == ((0.0, bank) if mode == "replaced" else (bank, 0.0))
    assert found["router_bytes_per_task"] == (ROUTER if mode == "per_task" else 0.0)
    assert _memory("knn", **{"strategy.knn_coreset_ratio": 0.301})["bytes_per_task"] == 4.0 * 109 * DIM  # ceil


@pytest.mark.parametrize("density", ["pooled", "routed"])
def test_dne_keeps_a_gaussian_per_task(density: str) -> None:
    found = _memory("dne", **{"strategy.dne_density": density})
    gaussian = 8.0 * (1 + 2 * (DIM + DIM * DIM))  # float64: a count, mean and covariance, the density's mean, precision
    assert {k: v for k, v in found.items() if k != "pct_of_base"} == {
        "params_per_task": 0.0, "bytes_per_task": gaussian, "fixed_bytes": 0.0,
        "router_bytes_per_task": ROUTER if density == "routed" else 0.0,
    }  # fmt: skip
    assert math.isnan(found["pct_of_base"])


# ---------------------------------------------------------------------------------------- what a run costs (planner)
def _cost(strategy: str = "frozen_base", **extra: object) -> tuple[Strategy, CostInputs]:
    from moleflow.continual.settings import TrainSettings

    config = _config(strategy, **{"training.epochs": 3, "training.batch_size": 4, **extra})
    images = [(10, 6), (7, 5), (9, 4)]  # (train, test) per task
    return strategy_named(strategy, config["strategy"]), CostInputs(
        TrainSettings.from_config(config), images, (2.0, 0.5), 0.1
    )


def test_a_runs_seconds_by_hand() -> None:
    strategy, cost = _cost()
    steps = [3 * 3, 3 * 2, 3 * 3]  # epochs x ceil(train / 4)
    evaluated = [6, 6 + 5, 6 + 5 + 4]  # every task seen so far, after each task
    seconds = steps[0] * 2.0 + (steps[1] + steps[2]) * 0.5 + 0.1 * sum(evaluated)
    assert strategy.run_seconds(cost) == pytest.approx(seconds)
    dropped, cost = _cost("frozen_base", **{"training.drop_last": True})
    assert dropped.run_seconds(cost) == pytest.approx((3 * 2) * 2.0 + (3 * 1 + 3 * 2) * 0.5 + 0.1 * sum(evaluated))
    joint, cost = _cost("joint")
    assert joint.run_seconds(cost) == pytest.approx(3 * 7 * 2.0 + 0.1 * 15)  # ceil(26 / 4) steps, every test once
    knn, cost = _cost("knn")
    assert knn.run_seconds(cost) == pytest.approx(2.0 * 10 / 4 + 0.5 * (7 + 9) / 4 + 0.1 * sum(evaluated))
    dne, cost = _cost("dne")
    assert dne.run_seconds(cost) == 0.0


def test_smoke_timings_by_hand() -> None:
    images = [(10, 6), (7, 5), (9, 4)]
    plain = strategy_named("frozen_base")
    assert plain.smoke_timings([3.0, 1.5, 1.2], images, 2) == (3.0, 1.5, 6 + 6 + 5)
    assert plain.smoke_timings([3.0], images, 1)[:2] == (3.0, pytest.approx(float("nan"), nan_ok=True))
    assert plain.smoke_timings([3.0, 1.5], images, 2)[:2] == (3.0, 1.5)  # two tasks: the second is the later one
    first, later, n = plain.smoke_timings([], images, 0)
    assert math.isnan(first) and math.isnan(later) and n == 0
    joint = strategy_named("joint")
    assert joint.smoke_timings([0.0, 0.0, 6.0], images, 3) == (2.0, 2.0, 6 + 5 + 4)  # one training shared out
    assert joint.smoke_timings([], images, 0)[2] == 0


def test_a_flow_without_a_shared_base_has_no_share_of_it() -> None:
    from moleflow.continual.strategies import memory_per_task

    bare = _config("frozen_base", **{"model.coupling_blocks": 0, "model.spatial_mixer": False})
    found = memory_per_task(bare, DIM, CELLS, TRAIN)
    assert math.isnan(found["pct_of_base"]) and found["params_per_task"] > 0  # whitening and DIA, no base


def test_memory_per_task_hands_fixed_bytes_the_run_config_and_its_training_images() -> None:
    """The extension point a strategy overrides (its memory kept once) gets what it may need to count."""
    config = _config("ewc")
    strategy = strategy_named("ewc", config["strategy"])
    seen: list[tuple] = []

    def fixed_bytes(config: dict, dim: int, patches_per_image: int, train_images: int, base_bytes: float) -> float:
        seen.append((config, dim, patches_per_image, train_images, base_bytes))
        return 7.0

    strategy.fixed_bytes = fixed_bytes  # type: ignore[method-assign]
    memory = strategy.memory_per_task(config, DIM, 25, 40)
    assert memory["fixed_bytes"] == 7.0 and len(seen) == 1
    assert seen[0][:4] == (config, DIM, 25, 40) and seen[0][4] == 4.0 * strategy.parameter_counts(config, DIM)["base"]


def test_the_replay_buffer_keeps_a_seeded_draw_without_repeats_of_each_task() -> None:
    import numpy as np

    from moleflow.continual.strategies.replay import ReplayBuffer

    buffer = ReplayBuffer(images_per_task=4, seed=3)
    patches = np.zeros((40, 2, 2, 8), dtype=np.float16)
    buffer.add(1, patches)
    buffer.add(2, patches[:2])  # fewer maps than the buffer holds: all of them
    (task, held, rows), (task2, _, rows2) = buffer.entries
    by_hand = np.sort(np.random.default_rng([3, 1, 17]).choice(40, 4, replace=False))
    assert task == 1 and held is patches and rows.tolist() == by_hand.tolist() and len(set(rows.tolist())) == 4
    assert task2 == 2 and rows2.tolist() == [0, 1]


def test_forgetting_of_no_task_and_of_a_matrix_with_untrained_cells() -> None:
    from moleflow.continual.summary import forgetting_of

    none = forgetting_of([], 0)
    assert list(none) == ["fm", "paper", "bwt"] and all(math.isnan(v) for v in none.values())
    matrix: list[list[float | None]] = [
        [0.9, None, None],
        [0.95, 0.8, None],
        [0.6, 0.85, 0.5],
    ]  # R[j][i]: task i after training task j
    two = forgetting_of(matrix, 2)  # the first two tasks only
    assert two == {"fm": pytest.approx(-0.05), "paper": pytest.approx(-0.05), "bwt": pytest.approx(0.05)}
    three = forgetting_of(matrix, 3)  # FM from task 0's best earlier value 0.95, the paper's from its own 0.9
    assert three == {"fm": pytest.approx((0.35 - 0.05) / 2), "paper": pytest.approx((0.3 - 0.05) / 2),
                     "bwt": pytest.approx(-0.125)}  # fmt: skip


def _state(completed: int, collapsed: tuple[bool, ...] = ()) -> RunState:
    """A two-task run's commit record after ``completed`` tasks: I-AUROC routed and oracle, the collapse flags."""
    state = RunState(2, "h")
    state.completed = completed
    cells: dict[str, list[list[float | None]]] = {
        "routed": [[0.9, None], [0.95, 0.8]],
        "oracle": [[0.9, None], [0.7, 0.8]],
    }
    for mode, matrix in cells.items():
        state.matrices[mode]["image_auroc"] = [row[:] for row in matrix]
    diagnosed: list[dict[str, Any]] = [{"task": t, "input_collapse": {"collapsed": c}} for t, c in enumerate(collapsed)]
    state.tasks = diagnosed + [{"task": t} for t in range(len(collapsed), 2)]  # no flow: nothing diagnosed
    return state


def _built(state: RunState, status: str = "ok") -> dict:
    from moleflow.continual.summary import build_summary

    config = _config("frozen_base")
    return build_summary(config, "h", ["a", "b"], state, status, "", DIM, 4, 10, {}, torch.device("cpu"))


def test_a_finished_runs_summary_has_its_forgetting_and_its_collapse_flags() -> None:
    summary = _built(_state(2, collapsed=(False, True)))
    assert summary["config_hash"] == "h" and summary["tasks_completed"] == 2 and summary["forgetting_partial"] is None
    assert summary["forgetting"]["image_auroc"] == {  # routed: task 0 rose from 0.9 to 0.95
        "fm": pytest.approx(-0.05), "paper": pytest.approx(-0.05), "bwt": pytest.approx(0.05)}  # fmt: skip
    assert summary["forgetting_oracle"]["image_auroc"]["paper"] == pytest.approx(0.2)  # oracle: 0.9 -> 0.7
    assert summary["input_collapse"] == {"collapsed": True, "flagged_tasks": [1]}
    assert _built(_state(2, collapsed=(False, False)))["input_collapse"] == {"collapsed": False, "flagged_tasks": []}
    assert _built(_state(2))["input_collapse"] is None  # no flow: nothing diagnosed


def test_a_stopped_runs_forgetting_is_nan_and_kept_apart() -> None:
    for summary in (_built(_state(1), status="diverged"), _built(_state(2), status="diverged"), _built(_state(1))):
        assert all(math.isnan(v) for v in summary["forgetting"]["image_auroc"].values())
        assert all(math.isnan(v) for v in summary["forgetting_oracle"]["image_auroc"].values())
        assert summary["forgetting_partial"] is not None
    stopped = _built(_state(2), status="diverged")  # both tasks committed, yet not finished
    assert stopped["forgetting_partial"]["image_auroc"]["paper"] == pytest.approx(-0.05)


def test_a_summary_has_the_routing_after_each_task_and_the_environment_it_ran_in() -> None:
    import platform

    state = _state(2)
    state.routing = [
        {"accuracy": 1.0, "confusion": [[3]], "accuracy_euclidean": 1.0},
        {"accuracy": 0.75, "confusion": [[3, 0], [1, 0]], "accuracy_euclidean": 0.5},
    ]
    summary = _built(state)
    assert summary["routing_accuracy_after_task"] == [1.0, 0.75]  # the last is the run's routing accuracy
    assert (summary["routing_accuracy"], summary["routing_accuracy_euclidean"]) == (0.75, 0.5)
    assert summary["routing_confusion"] == [[3, 0], [1, 0]]
    assert summary["environment"] == {
        "device": "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    unrouted = _built(_state(2))
    assert unrouted["routing_accuracy_after_task"] == [] and unrouted["routing_accuracy"] is None


def test_tasks_csv_lists_every_filled_cell_under_its_header() -> None:
    import csv
    import io

    from moleflow.continual.checkpoint import MODES
    from moleflow.continual.summary import METRICS, tasks_csv

    def value(mode: str, metric: str, j: int, i: int) -> float:
        return 1000 * MODES.index(mode) + 100 * METRICS.index(metric) + 10 * j + i + 0.25

    matrices: dict[str, dict[str, list[list[float | None]]]] = {
        mode: {m: [[value(mode, m, j, i) for i in range(3)] for j in range(3)] for m in METRICS} for mode in MODES
    }
    rows = list(csv.reader(io.StringIO(tasks_csv(matrices, ["cap", "tile", "wood"], 2))))
    assert rows[0] == ["after_task", "task", "category", "mode", *METRICS]
    expected = [
        [str(j), str(i), name, mode, *(str(value(mode, m, j, i)) for m in METRICS)]
        for j in range(2)  # the completed tasks only: the third row of the matrices is not a finished task's
        for i, name in zip(range(j + 1), ["cap", "tile"])
        for mode in MODES
    ]
    assert rows[1:] == expected


def test_the_dataset_record_names_what_the_run_read() -> None:
    import hashlib
    from types import SimpleNamespace

    import numpy as np

    from moleflow.continual.summary import dataset_record
    from moleflow.continual.tasks import TaskData

    def split(dataset: str, labels: list[int]) -> Any:
        return SimpleNamespace(meta={"key": {"dataset": dataset}}, labels=np.asarray(labels, dtype=np.int8))

    tasks = [
        TaskData("tile", split("t-train", [0, 0]), split("t-test", [0, 1, 1, 1])),
        TaskData("cap", split("c-train", [0]), split("c-test", [0, 0, 1])),
    ]
    record = dataset_record({"dataset": {"kind": "visa", "root": Path("/data/visa")}}, tasks)
    prints = {"tile": {"train": "t-train", "test": "t-test"}, "cap": {"train": "c-train", "test": "c-test"}}
    assert record == {
        "kind": "visa",
        "root": "/data/visa",
        "categories": ["tile", "cap"],
        "fingerprints": prints,
        "digest": hashlib.sha256(json.dumps(prints, sort_keys=True).encode()).hexdigest()[:16],
        "test_counts": {"tile": {"normal": 1, "anomalous": 3}, "cap": {"normal": 2, "anomalous": 1}},
    }
    assert len(record["digest"]) == 16


class _ImageScorer:
    """A strategy without maps (DNE's kind) whose router sends every image to task 0 and scores one image NaN."""

    has_maps = False

    def __init__(self) -> None:
        self.router = self

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(features), dtype=torch.long)

    def nearest_mean(self, features: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(features), dtype=torch.long)

    def image_scores(self, task: int, features: torch.Tensor) -> torch.Tensor:
        return torch.tensor([float("nan"), 0.2, 0.9, 0.7])[: len(features)]


@pytest.mark.parametrize("reading, replaced", [("nan_to_num", 2), ("diverged", 0)])
def test_a_strategy_without_maps_is_scored_under_the_configured_reading_of_nonfinite_scores(
    reading: str, replaced: int
) -> None:
    from types import SimpleNamespace

    import numpy as np

    from moleflow.continual.evaluate import evaluate_task
    from moleflow.continual.settings import ScoreSettings
    from moleflow.continual.tasks import TaskData

    test = SimpleNamespace(labels=np.array([0, 0, 1, 1], dtype=np.int8), router=np.zeros((4, 3), np.float32))
    scoring = ScoreSettings(64, 3, 4.0, 0.3, 8, nonfinite_scores=reading)
    evaluation = evaluate_task(_ImageScorer(), 0, TaskData("cap", test, test), scoring, torch.device("cpu"))  # type: ignore[arg-type]
    assert evaluation.replaced == replaced  # the oracle's and the routed scores' NaN, each replaced once
    if reading == "nan_to_num":  # NaN -> 0: below both anomalous images, tied with nothing
        assert evaluation.oracle["image_auroc"] == pytest.approx(1.0)
        assert evaluation.oracle["pixel_auroc"] is None


def test_metrics_without_maps_are_nan_for_non_finite_scores_and_none_for_pixels() -> None:
    import numpy as np

    from moleflow.continual.evaluate import TaskScores, metrics_of
    from moleflow.metrics.continual import METRICS

    labels = np.array([0, 1, 1, 0])
    broken = metrics_of(labels, np.zeros(0), TaskScores(np.array([0.1, np.inf, 0.5, 0.2]), None), 0.3)
    assert (
        math.isnan(float(broken["image_auroc"] or 0.0))
        and [broken[m] for m in METRICS if m != "image_auroc"] == [None] * 3
    )
    fine = metrics_of(labels, np.zeros(0), TaskScores(np.array([0.1, 0.9, 0.5, 0.6]), None), 0.3)
    assert fine["image_auroc"] == pytest.approx(0.75)  # 3 of the 4 (anomalous, normal) pairs ordered


class _MapScorer:
    """A strategy with maps whose router sends images 1 and 2 to task 1 (the test's scores stand in for the flow)."""

    has_maps = True

    def __init__(self) -> None:
        self.router = self

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tensor([0, 1, 1, 0])

    def nearest_mean(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tensor([1, 1, 1, 1])

    def scoring_state(self, task: int) -> dict[str, torch.Tensor]:
        return {f"scores_{task}": torch.tensor(float(task))}  # what the evaluation's score cache keys on


@pytest.mark.parametrize("route_all_elsewhere", [False, True])
def test_routed_images_are_scored_under_the_task_they_are_sent_to(
    route_all_elsewhere: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Oracle: every image under task 0's scores; routed: images sent to task 1 under task 1's; replaced NaN counted
    in both; the routed metrics are the oracle's only when every image stays with its task."""
    from types import SimpleNamespace

    import numpy as np

    import moleflow.continual.evaluate as evaluate
    from moleflow.continual.settings import ScoreSettings
    from moleflow.continual.tasks import TaskData

    size = 4
    labels = np.array([0, 0, 1, 1], dtype=np.int8)
    masks = np.zeros((4, size, size), bool)
    masks[2:, :2, :2] = True
    images = {0: np.array([np.nan, 0.2, 0.8, 0.9]), 1: np.array([0.9, 0.8, 0.2, 0.1])}
    maps = {
        t: np.broadcast_to(np.nan_to_num(images[t])[:, None, None], (4, size, size)).astype(np.float32).copy()
        for t in (0, 1)
    }
    maps[0][0, 0, 0] = np.nan
    maps[0][2:, :2, :2] += 1.0  # task 0's maps find the defects; task 1's miss them

    def score_rows(learner, task, patches, rows, scoring, device, rescore=()):
        return evaluate.TaskScores(
            images[task][rows].copy(), maps[task][rows].copy(), {k: images[task][rows].copy() for k in rescore}
        )

    monkeypatch.setattr(evaluate, "score_rows", score_rows)
    scorer = _MapScorer()
    if route_all_elsewhere:
        monkeypatch.setattr(_MapScorer, "__call__", lambda self, features: torch.tensor([1, 1, 1, 1]))
    test = SimpleNamespace(labels=labels, masks=masks, patches=np.zeros((4, 1, 1, 1)), router=np.zeros((4, 2)))
    scoring = ScoreSettings(size, 1, 1.0, 0.3, 2, nonfinite_scores="nan_to_num")
    ev = evaluate.evaluate_task(scorer, 0, TaskData("cap", test, test), scoring, torch.device("cpu"))  # type: ignore[arg-type]
    assert ev.oracle["image_auroc"] == pytest.approx(1.0)  # the NaN became 0, below every anomalous score
    # routed: image 0 at 0 (NaN replaced), 1 and 2 under task 1 (0.8, 0.2), 3 at 0.9: 3 of 4 pairs ordered
    assert ev.routed["image_auroc"] == pytest.approx(0.0 if route_all_elsewhere else 0.75)
    assert float(ev.routed["pixel_auroc"] or 1.0) < float(ev.oracle["pixel_auroc"] or 0.0)
    # NaN replaced: the oracle's image, map pixel and re-scored top-k, and the routed image and pixel if image 0 stays
    oracle_nan = 2 + len(evaluate.RESCORE_TOP_K)
    assert ev.replaced == oracle_nan + (0 if route_all_elsewhere else 2)
    assert list(ev.routed_to_euclidean) == [1, 1, 1, 1]


def test_memory_per_task_without_the_training_images_counts_a_memory_bank_of_none() -> None:
    """Table 1's callers that have no training images (a flow's memory does not depend on them) leave them out: a
    kNN bank is then counted empty, never one image's worth."""
    from moleflow.continual.strategies import memory_per_task

    config = _config("knn", **{"strategy.knn_coreset_ratio": 0.3})
    left_out, none = memory_per_task(config, DIM, CELLS), memory_per_task(config, DIM, CELLS, 0)
    assert left_out.keys() == none.keys()
    assert all(left_out[k] == none[k] or (math.isnan(left_out[k]) and math.isnan(none[k])) for k in none)
    assert (
        memory_per_task(config, DIM, CELLS)["bytes_per_task"] < memory_per_task(config, DIM, CELLS, 1)["bytes_per_task"]
    )


def test_metrics_with_maps_are_nan_when_a_map_is_not_finite_and_aupro_uses_the_given_limit() -> None:
    import numpy as np

    from moleflow.continual.evaluate import TaskScores, metrics_of
    from moleflow.metrics import aupro

    labels = np.array([0, 1, 1])
    masks = np.zeros((3, 8, 8), bool)
    masks[1, :4, :4] = masks[2, 4:, 4:] = True
    rng = np.random.default_rng(0)
    maps = (rng.random((3, 8, 8)) + 0.6 * masks).astype(np.float32)
    image = np.array([0.1, 0.7, 0.9])
    broken = maps.copy()
    broken[0, 3, 3] = np.nan  # the image scores finite, one map pixel not
    assert all(math.isnan(float(v or 0.0)) for v in metrics_of(labels, masks, TaskScores(image, broken), 0.3).values())
    found = metrics_of(labels, masks, TaskScores(image, maps), 0.05)
    assert found["aupro"] == pytest.approx(aupro(masks, maps, 0.05))
    assert aupro(masks, maps, 0.05) != pytest.approx(aupro(masks, maps, 0.3))  # the limit matters here


def test_an_unknown_strategy_is_refused_with_the_known_ones_listed() -> None:
    from moleflow.continual.strategies import REGISTRY, strategy_named

    with pytest.raises(KeyError) as refused:
        strategy_named("nope")
    assert refused.value.args[0] == f"strategy.name: 'nope' is not a strategy (known: {', '.join(sorted(REGISTRY))})"
