"""The run folder as a contract: locks, full disks, interrupts and bad input to run-many, plan, track and analysis.

Each case was found by trying the commands as a new user would; before the fix each ended in a
traceback, a lost result or a silent wrong answer. Now each ends in one line naming the file, key
or process at fault, or in a correct result.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from tests_helpers import RUN_SETS, finished_run, one_line, run_args

from moleflow.cli import main


@pytest.fixture(scope="module")
def finished_and_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return finished_run(tmp_path_factory.mktemp("finished"))


@pytest.fixture(scope="module")
def dataset(finished_and_data: tuple[Path, Path]) -> Path:
    return finished_and_data[1]


@pytest.fixture(scope="module")
def finished(finished_and_data: tuple[Path, Path]) -> Path:
    """One finished two-task run (read only: tests copy it before changing it)."""
    return finished_and_data[0]


# ------------------------------------------------------------------------------------------------ the run folder's lock


def test_a_second_run_on_a_held_folder_is_refused_naming_the_holder(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from moleflow.lock import folder_lock

    out = tmp_path / "run"
    out.mkdir()
    with folder_lock(out, "run folder"):
        err = one_line(capsys, main(run_args(out, dataset, tmp_path / "cache")))
    assert f"run folder {out} is in use by process {os.getpid()} on " in err and "wait for it to finish" in err
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the holder's folder is left as it was
    assert main(run_args(out, dataset, tmp_path / "cache")) == 0  # released with its holder
    assert json.loads((out / "status.json").read_text())["status"] == "ok"


def test_the_lock_is_released_when_its_process_dies(tmp_path: Path) -> None:
    import subprocess
    import sys

    from moleflow.lock import folder_lock

    code = (
        "import os, sys; from moleflow.lock import folder_lock\n"
        f"with folder_lock({str(tmp_path)!r}, 'x'):\n    os._exit(9)\n"
    )  # dies holding it, with no clean-up
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    with folder_lock(tmp_path, "x"):  # a stale lock file never blocks: the kernel dropped the lock
        record = json.loads((tmp_path / ".lock").read_text())
    assert record["pid"] == os.getpid()


# ------------------------------------------------------------------------------------------------------- a full disk


def test_a_full_disk_during_a_run_is_one_line_and_the_status_says_so(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import moleflow.continual.checkpoint as state
    from moleflow.io import atomic_path

    out = tmp_path / "run"
    real = state.write_json_atomic

    def full_after_task0(path, obj):
        if Path(path).name == "progress.json" and obj["completed"] == 2:  # the device fills during the second commit
            with atomic_path(path) as tmp:
                tmp.write_text("{")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, obj)

    monkeypatch.setattr(state, "write_json_atomic", full_after_task0)
    err = one_line(capsys, main(run_args(out, dataset, tmp_path / "cache")))
    assert (
        err
        == f"moleflow: error: no space left on the device of {out / 'checkpoints' / 'progress.json'} (writing it failed; nothing half-written was kept)\n"
    )
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and status["message"] == err.removeprefix("moleflow: error: ").strip()
    assert json.loads((out / "checkpoints" / "progress.json").read_text())["completed"] == 1  # task 0 is kept
    assert not [p for p in out.rglob(".*") if p.name != ".lock"]  # no temporary file left
    monkeypatch.undo()
    assert main(run_args(out, dataset, tmp_path / "cache")) == 0  # space again: the rerun resumes after task 0
    assert "resuming after task 0 (cap)" in capsys.readouterr().out


def test_a_full_disk_during_extraction_is_one_line_and_leaves_no_temporary_folder(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sparse memmap on a full disk died of SIGBUS (exit 135, nothing printed) and left its .tmp-* folder for good."""

    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    cache = tmp_path / "cache"
    code = main(
        [
            "features",
            "extract",
            "--profile",
            "cpu",
            "--root",
            str(dataset),
            "--categories",
            "cap",
            "--quiet",
            *[a for s in [f"features.cache_dir={cache}", *RUN_SETS[:3]] for a in ("--set", s)],
        ]
    )
    err = one_line(capsys, code)
    assert err.startswith(f"moleflow: error: no space left on the device of {cache}/cap-train-")
    assert not list(cache.glob(".*tmp-*")) and not list(cache.glob("cap-*"))


def test_a_full_disk_reserves_the_cache_entry_before_writing_it(tmp_path: Path) -> None:
    from moleflow.features.cache import EntryWriter

    with EntryWriter(tmp_path / "entry", 16, (16, 16, 64), mask_size=64, dtype="float32") as writer:  # 1 MiB of patches
        for name in ("patches.npy", "masks.npy"):
            allocated = os.stat(writer.tmp / name).st_blocks * 512
            assert allocated >= os.stat(writer.tmp / name).st_size, name  # not sparse: the space is held already
        writer.write(0, np.ones((16, 16, 16, 64)), np.ones((16, 64)), np.zeros(16), np.zeros((16, 64, 64), dtype=bool))
        writer.meta = {"key": {}}
    assert np.load(tmp_path / "entry" / "patches.npy").sum() == 16 * 16 * 16 * 64


# --------------------------------------------------------------------------------------------------------- interrupts


def test_an_interrupt_exits_130_and_the_status_says_interrupted(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import moleflow.continual.experiment as experiment

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "train_task", stopped)
    out = tmp_path / "run"
    assert main(run_args(out, dataset, tmp_path / "cache")) == 130
    assert capsys.readouterr().err == "moleflow: interrupted\n"
    assert json.loads((out / "status.json").read_text())["status"] == "interrupted"


# ------------------------------------------------------------------------------------------------------------ run-many


@pytest.mark.parametrize(
    "runs, message",
    [
        ('{"x": {}, "./x": {"seed": 1}}', "--runs-json: 'x' and './x' are the same folder"),
        ('{"x": {}, "x": {"seed": 1}}', "--runs-json: x given twice in one object"),
        ('{"x": {"seed": 1, "seed": 2}}', "--runs-json: seed given twice in one object"),
    ],
)
def test_run_many_refuses_one_folder_named_twice_before_training(
    tmp_path: Path, runs: str, message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    err = one_line(capsys, main(["run-many", "--runs-json", runs]))
    assert message in err and not (tmp_path / "x").exists()


def test_threads_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["run-many", "--runs-json", "{}", "--threads=-2"])
    assert stop.value.code == 2 and "argument --threads: must be at least 1, got -2" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------- plan


def test_plan_counts_the_runs_of_each_study(capsys: pytest.CaptureFixture[str]) -> None:
    from moleflow.config import read_workflow_config
    from moleflow.planning import WorkflowPlan

    root = Path(__file__).resolve().parents[1]
    assert main(["plan", str(root / "config" / "config.yaml")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    plan = WorkflowPlan.from_config(read_workflow_config(root / "config" / "config.yaml"))
    expected = [f"{study}: {len(ids)} runs (synth)" for study, ids in plan.studies.items()]
    assert sorted(lines[:-1]) == sorted(expected) and lines[-1] == f"total: {len(plan.runs)} distinct runs"
    assert len(plan.runs) < sum(len(ids) for ids in plan.studies.values())  # shared runs counted once


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "empty; a workflow configuration needs at least datasets and studies"),
        (
            '{"results": "r", "datasets": {}, "studies": {}, "jobs": [], "runs": {}}',
            "a plan record (the workflow's plan.json)",
        ),
        (
            "studies: {main: {bogus: 1, variants: [{name: a}]}}\ndatasets: {d: {kind: mvtec, root: x}}\n",
            "unknown workflow key 'studies.main.bogus'",
        ),
        ("[1, 2]", "expected a mapping of config keys at the top level"),
    ],
)
def test_plan_refuses_what_is_not_a_workflow_configuration(
    tmp_path: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "workflow.yaml"
    path.write_text(content)
    err = one_line(capsys, main(["plan", str(path)]))
    assert err.startswith(f"moleflow: error: {path}: ") and message in err


def test_the_snakefile_and_plan_validate_with_one_schema() -> None:
    root = Path(__file__).resolve().parents[1]
    linked = root / "workflow" / "schemas" / "config.schema.yaml"
    assert linked.resolve() == (root / "moleflow" / "schemas" / "workflow.schema.yaml").resolve()


def test_a_category_typo_is_refused_at_planning_naming_the_ones_that_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(__file__).resolve().parents[1]
    workflow = yaml.safe_load((root / "config" / "config.yaml").read_text())
    workflow["studies"]["strategies"]["set"]["dataset.categories"] = ["cap", "tiel"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(workflow))
    err = one_line(capsys, main(["plan", str(path)]))
    assert err == (
        f"moleflow: error: {path}: studies.strategies.variants.MoLE-Flow: category 'tiel' is not in dataset "
        "synth (data/synth); it has fabric, wood, tile, cap, screw, pcb\n"
    )
    # a real root: its own categories
    from conftest import make_mvtec

    mv = make_mvtec(tmp_path / "mv", {"bottle": False})
    path.write_text(
        yaml.safe_dump(
            {
                "datasets": {"mv": {"kind": "mvtec", "root": str(mv)}},
                "studies": {"s": {"set": {"dataset.categories": ["bottle", "cable"]}, "variants": [{"name": "a"}]}},
            }
        )
    )
    err = one_line(capsys, main(["plan", str(path)]))
    assert err == (
        f"moleflow: error: {path}: studies.s.variants.a: category 'cable' is not in dataset mv ({mv}); it has bottle\n"
    )


# ----------------------------------------------------------------------------------- the folder layout, end to end


def test_a_folder_dataset_of_jpegs_with_stem_masks_goes_through_check_run_and_predict(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's own example: JPEG images, ``ground_truth/<defect>/<stem>.png`` masks, own names."""
    parts = tmp_path / "my_parts"
    for category, name in (("cap", "bracket"), ("tile", "hinge")):
        for image in sorted((dataset / category).rglob("*.png")):
            rel = image.relative_to(dataset / category)
            if rel.parts[0] == "ground_truth":  # <stem>_mask.png -> <stem>.png
                target = parts / name / rel.parent / (image.stem.removesuffix("_mask") + ".png")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(image, target)
            else:
                target = parts / name / rel.with_suffix(".jpg")
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.open(image).convert("RGB").save(target, quality=95)
    assert main(["data", "check", "--dataset", "folder", "--root", str(parts), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert (
        sorted(counts) == ["bracket", "hinge"] and counts["bracket"]["masks"] == counts["bracket"]["test_anomalous"] > 0
    )
    out = tmp_path / "runs" / "my_parts"
    assert main(run_args(out, parts, tmp_path / "cache", "dataset.kind=folder")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == ["bracket", "hinge"] and summary["status"] == "ok"
    assert all(summary["final"][c]["routed"]["pixel_auroc"] is not None for c in ("bracket", "hinge"))
    capsys.readouterr()
    assert (
        main(["predict", "--run", str(out), str(parts / "hinge" / "test" / "good"), "--out", str(tmp_path / "p")]) == 0
    )
    rows = (tmp_path / "p" / "scores.csv").read_text().splitlines()
    assert len(rows) == 1 + len(list((parts / "hinge" / "test" / "good").glob("*.jpg")))
    assert all(row.endswith(",,") and ".jpg," in row for row in rows[1:])
