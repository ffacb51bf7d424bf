"""The grid's smoke check: grouping by shapes and code paths, the cost arithmetic, a real check of the default's grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from moleflow.cli import main
from moleflow.config import read_yaml
from moleflow.continual.strategies import parameter_counts
from moleflow.planning import WorkflowPlan
from moleflow.planning.estimate import GroupCheck, published_counts, run_cost, split_sizes
from moleflow.planning.smoke import covered_check, covering, shape_signature, smoke_groups

ROOT = Path(__file__).parents[1]


def _workflow(tmp_path: Path, variants: list[dict]) -> dict:
    return {
        "results": str(tmp_path / "results"),
        "cache": str(tmp_path / "cache"),
        "seeds": [0, 1],
        "base": {
            "profile": "cpu",
            "set": {
                "features.resize": 64,
                "features.input_size": 64,
                "features.embed_dim": 16,
                "model.coupling_blocks": 2,
                "model.lora_rank": 4,
                "training.epochs": 3,
            },
        },
        "datasets": {
            "synth": {
                "kind": "mvtec",
                "root": str(tmp_path / "synth"),
                "generate": {"seed": 0, "size": 64, "train": 8, "test_good": 2, "test_defect": 1},
            }
        },
        "studies": {"s": {"set": {"dataset.categories": ["cap", "tile"]}, "variants": variants}},
    }


def test_runs_differing_only_in_values_share_a_check_and_shapes_or_code_paths_do_not(tmp_path: Path) -> None:
    plan = WorkflowPlan.from_config(
        _workflow(
            tmp_path,
            [
                {"name": "a"},
                {"name": "lr", "set": {"training.lr": 0.01, "training.epochs": 9}},
                {
                    "name": "tail 0",
                    "set": {"training.tail_weight": 0.0, "training.nll_reduction": "image_sum"},
                },  # same tensors
                {"name": "deeper", "set": {"model.coupling_blocks": 3}},  # other shapes
                {"name": "seq", "set": {"strategy.name": "sequential"}},  # another code path over the same shapes
                {"name": "adamp", "set": {"training.optimizer": "adamp"}},  # another package's optimiser
            ],
        )
    )
    groups = smoke_groups(plan)
    labels = [sorted({v for r in g.runs for _, v in r.memberships}) for g in groups]
    assert labels == [["a", "lr", "tail 0"], ["deeper"], ["seq"], ["adamp"]]
    assert [len(g.runs) for g in groups] == [6, 2, 2, 2]  # two seeds each
    first = groups[0].config
    other_kind = {**first, "dataset": {**first["dataset"], "kind": "visa", "root": "/elsewhere"}}
    assert shape_signature(other_kind) == shape_signature(first)  # the layout is checked by the extraction, once
    assert [sorted({v for r in g.runs for _, v in r.memberships}) for g in smoke_groups(plan, ["nope"])] == []


def _params(config: dict) -> int:
    counts = parameter_counts(config, config["features"]["embed_dim"])
    return int(counts["base"] + counts["per_task"])


def test_groups_that_differ_only_in_sizes_are_covered_by_their_largest(tmp_path: Path) -> None:
    plan = WorkflowPlan.from_config(
        _workflow(
            tmp_path,
            [
                {"name": "a"},  # 2 coupling blocks, rank 4
                {"name": "deeper", "set": {"model.coupling_blocks": 4}},  # the same code, larger
                {"name": "rank 8", "set": {"model.lora_rank": 8, "model.mixer_kernel": 5}},  # the same code
                {"name": "no DIA", "set": {"model.dia_blocks": 0}},  # a component left out: another path
                {"name": "seq", "set": {"strategy.name": "sequential"}},
            ],
        )
    )
    groups = smoke_groups(plan)
    configs = [g.config for g in groups]
    assert _params(configs[1]) > max(_params(configs[0]), _params(configs[2]))
    assert covering(groups) == [1, None, 1, None, None]
    assert covering(groups, every_group=True) == [None] * 5
    smaller = WorkflowPlan.from_config(
        _workflow(tmp_path, [{"name": "a"}, {"name": "shallower", "set": {"model.coupling_blocks": 1}}])
    )
    assert covering(smoke_groups(smaller)) == [None, 0]  # the largest, wherever it stands


def test_a_covered_groups_figures_are_its_checked_groups_scaled_by_parameters(tmp_path: Path) -> None:
    plan = WorkflowPlan.from_config(
        _workflow(tmp_path, [{"name": "a"}, {"name": "deeper", "set": {"model.coupling_blocks": 4}}])
    )
    small, large = smoke_groups(plan)
    checked = GroupCheck("s/deeper", 2, "ok", "", 10, 5, 300.0, 2.0, 1.0, 0.5, random_weights=True)
    covered = covered_check(small, large, checked)
    share = _params(small.config) / _params(large.config)
    counts = parameter_counts(small.config, 16)
    assert 0.3 < share < 0.9
    assert covered.status == "covered" and covered.label == small.label and covered.runs == 2
    assert (covered.base_params, covered.params_per_task) == (counts["base"], counts["per_task"])
    assert (covered.peak_mib, covered.task0_step_s, covered.later_step_s, covered.eval_image_s) == pytest.approx(
        (300.0 * share, 2.0 * share, 1.0 * share, 0.5 * share)
    )
    assert covered.random_weights and f"x {share:.2f}" in covered.message and large.label in covered.message
    failed = covered_check(
        small, large, GroupCheck("s/deeper", 2, "failed", "boom", 0, 0, math.nan, math.nan, math.nan, math.nan, False)
    )
    assert failed.status == "failed" and failed.message == f"not checked: {large.label} (its code path) failed"
    assert math.isnan(failed.task0_step_s) and failed.base_params == counts["base"]


def test_the_check_in_two_processes_reports_covered_groups_and_estimates_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = _workflow(
        tmp_path,
        [
            {"name": "a"},
            {"name": "deeper", "set": {"model.coupling_blocks": 3}},
            {"name": "seq", "set": {"strategy.name": "sequential"}},
        ],
    )
    workflow["seeds"] = [0]
    (tmp_path / "workflow.yaml").write_text(json.dumps(workflow))
    report = tmp_path / "smoke.json"
    code = main(
        ["plan", str(tmp_path / "workflow.yaml"), "--smoke", "--device", "cpu", "--jobs", "2", "--json", str(report)]
    )
    out = capsys.readouterr().out
    groups = json.loads(report.read_text())
    assert code == 0 and [g["status"] for g in groups["groups"]] == ["covered", "ok", "ok"]
    assert (groups["jobs"], groups["threads"]) == (2, 1)
    assert groups["groups"][1]["task0_step_s"] > 0 and groups["estimate"]["runs_without_estimate"] == 0
    assert "3 of 3 groups ok (1 covered by another of their code path)" in out
    assert "(an upper estimate, summed over jobs of 1 thread(s) as checked, 2 at a time)" in out
    assert "covered  s/a (1 run): the code path of s/deeper" in out


def test_split_sizes_from_disk_published_or_generated(tmp_path: Path) -> None:
    plan = WorkflowPlan.from_config(_workflow(tmp_path, [{"name": "a"}]))
    generated = split_sizes(plan, "synth", ["cap", "tile"])
    from moleflow.data.synth import CATEGORIES

    assert generated == {c: (8, 2 + len(CATEGORIES[c].defects)) for c in ("cap", "tile")}
    workflow = _workflow(tmp_path, [{"name": "a"}])
    workflow["datasets"] = {"mvtec": {"kind": "mvtec", "root": str(tmp_path / "absent")}}
    workflow["studies"]["s"]["set"] = {"dataset.categories": ["bottle", "toothbrush"]}
    plan = WorkflowPlan.from_config(workflow)
    assert split_sizes(plan, "mvtec", ["bottle", "toothbrush"]) == {"bottle": (209, 83), "toothbrush": (60, 42)}
    assert sum(train for train, _ in published_counts("mvtec").values()) == 3629  # MVTec AD's training set
    assert sum(test for _, test in published_counts("mvtec").values()) == 1725
    assert split_sizes(plan, "mvtec", ["not_a_category"]) is None


def test_a_published_dataset_that_is_not_on_this_machine_is_estimated_from_its_published_split(
    tmp_path: Path,
) -> None:
    """The paper's grid is checked where MVTec AD is not: its categories and sizes are the published ones."""
    from moleflow.planning.estimate import dataset_categories, estimate

    workflow = _workflow(tmp_path, [{"name": "a"}])
    workflow["datasets"] = {"mvtec": {"kind": "mvtec", "root": str(tmp_path / "absent")}}
    workflow["studies"]["s"]["set"] = {}
    workflow["seeds"] = [0]
    plan = WorkflowPlan.from_config(workflow)
    assert dataset_categories(plan, "mvtec") == sorted(published_counts("mvtec"))
    (run,) = plan.runs.values()
    check = GroupCheck("s/a", 1, "ok", "", 0, 0, 0.0, 2.0, 1.0, 0.5, random_weights=False)
    found = estimate(plan, [(run, check)], [])
    sizes = {c: published_counts("mvtec")[c] for c in sorted(published_counts("mvtec"))}
    assert found["runs_without_estimate"] == 0
    assert found["train_eval_hours"] == pytest.approx(run_cost(run, check, sizes) / 3600)


def test_run_cost_by_hand(tmp_path: Path) -> None:
    plan = WorkflowPlan.from_config(
        _workflow(tmp_path, [{"name": "a", "set": {"training.batch_size": 4, "training.drop_last": True}}])
    )
    run = next(iter(plan.runs.values()))
    check = GroupCheck(
        "a", 1, "ok", "", 0, 0, 0.0, task0_step_s=2.0, later_step_s=1.0, eval_image_s=0.5, random_weights=False
    )
    sizes = {"cap": (10, 6), "tile": (9, 4)}
    # task 0: 3 epochs x floor(10/4) = 6 steps at 2 s, then cap's 6 test images; task 1: 3 x 2 steps at 1 s, then 6 + 4 images
    assert run_cost(run, check, sizes) == pytest.approx(6 * 2.0 + 6 * 0.5 + 6 * 1.0 + 10 * 0.5)
    keep = WorkflowPlan.from_config(
        _workflow(tmp_path, [{"name": "a", "set": {"training.batch_size": 4, "training.drop_last": False}}])
    )
    assert run_cost(next(iter(keep.runs.values())), check, sizes) == pytest.approx(
        3 * math.ceil(10 / 4) * 2.0 + 6 * 0.5 + 3 * math.ceil(9 / 4) * 1.0 + 10 * 0.5
    )


def test_a_failing_kind_of_run_is_reported_and_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workflow = _workflow(
        tmp_path, [{"name": "MoLE-Flow"}, {"name": "broken", "set": {"model.subnet": "joint"}}]
    )  # joint needs no scale context
    workflow["seeds"] = [0]
    (tmp_path / "workflow.yaml").write_text(json.dumps(workflow))
    code = main(
        ["plan", str(tmp_path / "workflow.yaml"), "--smoke", "--device", "cpu", "--jobs", "1"]
        + ["--json", str(tmp_path / "smoke.json")]
    )
    out = capsys.readouterr().out
    assert code == 1
    report = json.loads((tmp_path / "smoke.json").read_text())
    assert (report["jobs"], report["threads"]) == (1, torch.get_num_threads())  # checked here, with its threads
    assert [g["status"] for g in report["groups"]] == ["ok", "failed"]
    assert "joint subnet has no scale context" in report["groups"][1]["message"]
    assert "1 of 2 groups ok" in out and "failed   s/broken" in out


@pytest.mark.slow
def test_the_default_grid_passes_its_smoke_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every kind of run of the embedded default builds, trains a step per task and evaluates, at its real shapes."""
    workflow = read_yaml(ROOT / "config" / "config.yaml")
    code = main(
        ["plan", str(ROOT / "config" / "config.yaml"), "--smoke", "--device", "cpu", "--json", str(tmp_path / "s.json")]
    )
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "s.json").read_text())
    plan = WorkflowPlan.from_config(workflow)
    groups = smoke_groups(plan)
    statuses = [g["status"] for g in report["groups"]]
    assert code == 0 and len(statuses) == len(groups) and set(statuses) == {"ok", "covered"}
    assert [s == "covered" for s in statuses] == [by is not None for by in covering(groups)]
    assert sum(g["runs"] for g in report["groups"]) == len(plan.runs)
    for group, check in zip(groups, report["groups"]):
        counts = parameter_counts(group.config, group.config["features"]["embed_dim"])
        assert (check["base_params"], check["params_per_task"]) == (counts["base"], counts["per_task"])
        trains = group.config["strategy"]["name"] != "dne"  # DNE fits a Gaussian when a task is added: no step
        assert (check["task0_step_s"] > 0) == trains and check["peak_mib"] >= 0
    assert report["estimate"]["runs_without_estimate"] == 0 and report["estimate"]["train_eval_hours"] > 0
    assert f"{len(groups)} of {len(groups)} groups ok" in out
