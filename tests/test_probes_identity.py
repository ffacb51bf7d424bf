"""Probes where the harness once assumed two things were the same without checking: each silent wrong result a
hostile but realistic user found (exit 0, wrong numbers) is now refused in one line naming what is at fault."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from tests_helpers import finished_run, one_line, predict_args, run_args, two_task_synth

from moleflow.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return finished_run(tmp_path_factory.mktemp("identity"))


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / ".lock").unlink(missing_ok=True)
    return copy


# ------------------------------------------------------------------------------------------------ planning
def test_two_variants_with_one_name_are_refused_at_planning() -> None:
    from moleflow.errors import ConfigError
    from moleflow.planning import plan_runs

    workflow = {
        "results": "results",
        "datasets": {"d": {"kind": "mvtec", "root": "nowhere", "categories": ["cap"]}},
        "base": {"profile": "cpu"},
        "seeds": [0],
        "studies": {"main": {"variants": [{"name": "A"}, {"name": "A", "set": {"training.lr": 0.01}}]}},
    }
    with pytest.raises(
        ConfigError, match=r"studies\.main\.variants: 1 name\(s\) given to more than one variant \('A'\)"
    ):
        plan_runs(workflow)


def test_no_study_at_all_is_refused() -> None:
    from moleflow.errors import ConfigError
    from moleflow.planning import plan_runs

    workflow = {"datasets": {"d": {"kind": "mvtec", "root": "x", "categories": ["cap"]}}, "studies": {}}
    with pytest.raises(ConfigError, match="studies: none"):
        plan_runs(workflow)


def test_smoke_of_an_unknown_study_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = Path(__file__).resolve().parents[1] / "config" / "config.yaml"
    err = one_line(capsys, main(["plan", str(config), "--smoke", "--studies", "nosuch"]))
    assert "--studies: no study 'nosuch' in the configuration (it has main," in err


# ------------------------------------------------------------------------------------------------ predict
def test_a_checkpoint_of_another_run_is_refused_by_predict(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained
    other = tmp_path / "other"
    assert main(run_args(other, data, tmp_path / "cache", "seed=7")) == 0
    capsys.readouterr()
    copy = _copy(run, tmp_path)
    shutil.copy(other / "checkpoints" / "task_1.pt", copy / "checkpoints" / "task_1.pt")
    err = one_line(
        capsys,
        main(predict_args(copy, data, "tile", tmp_path / "o")),
    )
    assert f"{copy / 'checkpoints' / 'task_1.pt'} does not hold the tensors this run recorded after training" in err
    assert not (tmp_path / "o").exists()
    # its own checkpoint back: served again
    shutil.copy(run / "checkpoints" / "task_1.pt", copy / "checkpoints" / "task_1.pt")
    assert main(predict_args(copy, data, "tile", tmp_path / "o")) == 0


def test_a_joint_flow_that_never_trained_is_refused_by_predict(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained
    joint = tmp_path / "joint"
    assert main(run_args(joint, data, tmp_path / "cache", "strategy.name=joint")) == 0
    capsys.readouterr()
    # killed during its only training: the first task committed as waiting, the second never trained
    progress = json.loads((joint / "checkpoints" / "progress.json").read_text())
    assert progress["tasks"][0]["note"].startswith("not trained or measured")
    progress.update(completed=1, tasks=progress["tasks"][:1])
    (joint / "checkpoints" / "progress.json").write_text(json.dumps(progress))
    (joint / "status.json").write_text(json.dumps({"status": "running", "message": ""}))
    (joint / "summary.json").unlink()
    err = one_line(
        capsys,
        main(predict_args(joint, data, "cap", tmp_path / "o")),
    )
    assert "is a joint flow that has not trained yet (1 of 2 tasks kept, cap" in err and "nothing to serve" in err


def test_training_images_saved_in_another_format_are_refused_as_normal_images(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained
    normal = tmp_path / "normal"
    normal.mkdir()
    for path in sorted((data / "cap" / "train" / "good").glob("*.png")):
        Image.open(path).save(normal / f"{path.stem}.bmp")  # the same pixels, other bytes
    assert not any(
        (normal / f"{p.stem}.bmp").read_bytes() == p.read_bytes()
        for p in (data / "cap" / "train" / "good").glob("*.png")
    )
    err = one_line(capsys, main(predict_args(run, data, "cap", tmp_path / "o", "--normal", str(normal))))
    assert "4 of the 4 --normal images are the run's own training images" in err


def test_a_threshold_that_flags_its_own_normal_images_is_said(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained
    normal = tmp_path / "normal"
    normal.mkdir()
    for path in sorted((data / "cap" / "test" / "good").glob("*.png"))[:2]:
        shutil.copy(path, normal / path.name)
    assert main(predict_args(run, data, "cap", tmp_path / "o", "--normal", str(normal), "--task", "cap")) == 0
    err = capsys.readouterr().err
    assert "note: 1 of the 2 --normal images routed to cap score above the threshold drawn from them" in err
    assert "give at least 100 per task" in err


# ------------------------------------------------------------------------------------------------ run
def test_an_input_size_larger_than_the_resize_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = two_task_synth(tmp_path / "data")
    err = one_line(capsys, main(run_args(tmp_path / "run", data, tmp_path / "cache", "features.input_size=128")))
    assert "features.input_size: 128 is larger than features.resize (64)" in err
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ analysis
def test_analysis_refuses_the_summary_of_another_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from analysis_fixture import write_results

    from analysis.__main__ import main as analysis_main

    root = write_results(tmp_path)
    runs = sorted((root / "results" / "runs").iterdir())
    foreign, victim = runs[0], runs[1]
    shutil.copy(foreign / "summary.json", victim / "summary.json")
    err = one_line(
        capsys,
        analysis_main(["--config", str(root / "config.yaml"), "--results", str(root / "results")]),
        prefix="analysis: error: ",
    )
    assert f"{victim / 'summary.json'}: the summary of another configuration (config_hash {foreign.name})" in err
