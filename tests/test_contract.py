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

from moleflow.cli import main
from moleflow.data.synth import SynthCounts, generate

SETS = ["features.resize=64", "features.input_size=64", "features.embed_dim=16", "model.coupling_blocks=1",
        "model.lora_rank=2", "training.epochs=1", "evaluation.sample_images=0", "device=cpu"]


def _run_args(out: Path, root: Path, cache: Path, *extra: str) -> list[str]:
    sets = [f"dataset.root={root}", f"features.cache_dir={cache}", *SETS, *extra]
    return ["run", "--profile", "cpu", "--out", str(out), "--quiet", *[a for s in sets for a in ("--set", s)]]


def _one_line(capsys: pytest.CaptureFixture[str], code: int, prefix: str = "moleflow: error: ") -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(prefix) and err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("contract") / "data"
    generate(root, seed=0, size=64, categories=["cap", "tile"], counts=SynthCounts(train=4, test_good=2, test_per_defect=1))
    return root


@pytest.fixture(scope="module")
def finished(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished two-task run (read only: tests copy it before changing it)."""
    root = tmp_path_factory.mktemp("finished")
    assert main(_run_args(root / "run", dataset, root / "cache")) == 0
    return root / "run"


# ------------------------------------------------------------------------------------------------ the run folder's lock

def test_a_second_run_on_a_held_folder_is_refused_naming_the_holder(dataset: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from moleflow.lock import folder_lock

    out = tmp_path / "run"
    out.mkdir()
    with folder_lock(out, "run folder"):
        err = _one_line(capsys, main(_run_args(out, dataset, tmp_path / "cache")))
    assert f"run folder {out} is in use by process {os.getpid()} on " in err and "wait for it to finish" in err
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # the holder's folder is left as it was
    assert main(_run_args(out, dataset, tmp_path / "cache")) == 0  # released with its holder
    assert json.loads((out / "status.json").read_text())["status"] == "ok"


def test_the_lock_is_released_when_its_process_dies(tmp_path: Path) -> None:
    import subprocess
    import sys

    from moleflow.lock import folder_lock

    code = ("import os, sys; from moleflow.lock import folder_lock\n"
            f"with folder_lock({str(tmp_path)!r}, 'x'):\n    os._exit(9)\n")  # dies holding it, with no clean-up
    assert subprocess.run([sys.executable, "-c", code]).returncode == 9
    with folder_lock(tmp_path, "x"):  # a stale lock file never blocks: the kernel dropped the lock
        record = json.loads((tmp_path / ".lock").read_text())
    assert record["pid"] == os.getpid()


# ------------------------------------------------------------------------------------------------------- a full disk

def test_a_full_disk_during_a_run_is_one_line_and_the_status_says_so(dataset: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import moleflow.continual.checkpoint as checkpoint
    from moleflow.io import atomic_path

    out = tmp_path / "run"
    real = checkpoint.write_json_atomic

    def full_after_task0(path, obj):  # type: ignore[no-untyped-def]
        if Path(path).name == "progress.json" and obj["completed"] == 2:  # the device fills during the second commit
            with atomic_path(path) as tmp:
                tmp.write_text("{")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, obj)

    monkeypatch.setattr(checkpoint, "write_json_atomic", full_after_task0)
    err = _one_line(capsys, main(_run_args(out, dataset, tmp_path / "cache")))
    assert err == f"moleflow: error: no space left on the device of {out / 'checkpoints' / 'progress.json'} (writing it failed; nothing half-written was kept)\n"
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and status["message"] == err.removeprefix("moleflow: error: ").strip()
    assert json.loads((out / "checkpoints" / "progress.json").read_text())["completed"] == 1  # task 0 is kept
    assert not [p for p in out.rglob(".*") if p.name != ".lock"]  # no temporary file left
    monkeypatch.undo()
    assert main(_run_args(out, dataset, tmp_path / "cache")) == 0  # space again: the rerun resumes after task 0
    assert "resuming after task 0 (cap)" in capsys.readouterr().out


def test_a_full_disk_during_extraction_is_one_line_and_leaves_no_temporary_folder(
        dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A sparse memmap on a full disk died of SIGBUS (exit 135, nothing printed) and left its .tmp-* folder for good."""
    def no_space(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    cache = tmp_path / "cache"
    code = main(["features", "extract", "--profile", "cpu", "--root", str(dataset), "--categories", "cap", "--quiet",
                 *[a for s in [f"features.cache_dir={cache}", *SETS[:3]] for a in ("--set", s)]])
    err = _one_line(capsys, code)
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

def test_an_interrupt_exits_130_and_the_status_says_interrupted(dataset: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import moleflow.continual.experiment as experiment

    def stopped(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "train_task", stopped)
    out = tmp_path / "run"
    assert main(_run_args(out, dataset, tmp_path / "cache")) == 130
    assert capsys.readouterr().err == "moleflow: interrupted\n"
    assert json.loads((out / "status.json").read_text())["status"] == "interrupted"


# ------------------------------------------------------------------------------------------------------------ run-many

@pytest.mark.parametrize("runs, message", [
    ('{"x": {}, "./x": {"seed": 1}}', "--runs-json: 'x' and './x' are the same folder"),
    ('{"x": {}, "x": {"seed": 1}}', "--runs-json: x given twice in one object"),
    ('{"x": {"seed": 1, "seed": 2}}', "--runs-json: seed given twice in one object"),
])
def test_run_many_refuses_one_folder_named_twice_before_training(tmp_path: Path, runs: str, message: str,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    err = _one_line(capsys, main(["run-many", "--runs-json", runs]))
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


@pytest.mark.parametrize("content, message", [
    ("", "empty; a workflow configuration needs at least datasets and studies"),
    ('{"results": "r", "datasets": {}, "studies": {}, "jobs": [], "runs": {}}', "a plan record (the workflow's plan.json)"),
    ("studies: {main: {bogus: 1, variants: [{name: a}]}}\ndatasets: {d: {kind: mvtec, root: x}}\n",
     "unknown workflow key 'studies.main.bogus'"),
    ("[1, 2]", "expected a mapping of config keys at the top level"),
])
def test_plan_refuses_what_is_not_a_workflow_configuration(tmp_path: Path, content: str, message: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "workflow.yaml"
    path.write_text(content)
    err = _one_line(capsys, main(["plan", str(path)]))
    assert err.startswith(f"moleflow: error: {path}: ") and message in err


def test_the_snakefile_and_plan_validate_with_one_schema() -> None:
    root = Path(__file__).resolve().parents[1]
    linked = root / "workflow" / "schemas" / "config.schema.yaml"
    assert linked.resolve() == (root / "moleflow" / "schemas" / "workflow.schema.yaml").resolve()


def test_a_category_typo_is_refused_at_planning_naming_the_ones_that_exist(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[1]
    workflow = yaml.safe_load((root / "config" / "config.yaml").read_text())
    workflow["studies"]["strategies"]["set"]["dataset.categories"] = ["cap", "tiel"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(workflow))
    err = _one_line(capsys, main(["plan", str(path)]))
    assert err == (f"moleflow: error: {path}: studies.strategies.variants.MoLE-Flow: category 'tiel' is not in dataset "
                   "synth (data/synth); it has fabric, wood, tile, cap, screw, pcb\n")
    # a real root: its own categories
    from conftest import make_mvtec

    mv = make_mvtec(tmp_path / "mv", {"bottle": False})
    path.write_text(yaml.safe_dump({"datasets": {"mv": {"kind": "mvtec", "root": str(mv)}}, "studies": {
        "s": {"set": {"dataset.categories": ["bottle", "cable"]}, "variants": [{"name": "a"}]}}}))
    err = _one_line(capsys, main(["plan", str(path)]))
    assert err == (f"moleflow: error: {path}: studies.s.variants.a: category 'cable' is not in dataset mv ({mv}); "
                   "it has bottle\n")


# --------------------------------------------------------------------------------------------------------------- track

@pytest.fixture
def store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["track", "init", "--results", str(tmp_path), "--experiments", "main/synth"]) == 0
    capsys.readouterr()
    return tmp_path


def _runs_in(store: Path, experiment: str = "main/synth") -> list:  # type: ignore[type-arg]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name(experiment).experiment_id])


def test_track_refuses_a_folder_without_a_good_summary_in_one_line(store: Path, finished: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text('{"status": "ok"')
    cases = {tmp_path / "empty": "holds no summary.json: the run has not finished",
             tmp_path / "missing": "no such run folder", bad: "summary.json: truncated or not JSON"}
    for folder, message in cases.items():
        err = _one_line(capsys, main(["track", "log", "--results", str(store), "--run-dir", str(folder),
                                      "--experiment", "main/synth=x"]))
        assert message in err and str(folder) in err
    err = _one_line(capsys, main(["track", "log", "--results", str(store), "--run-dir", str(finished),
                                  "--experiment", "nope/synth=x"]))
    assert "MLflow experiment 'nope/synth' does not exist" in err and "moleflow track init" in err
    # a good run then a bad one: refused before the good one is logged, so the study is never half logged
    _one_line(capsys, main(["track", "study", "--results", str(store), "--experiment", "main/synth",
                            "--run", f"{finished}=a", "--run", f"{bad}=b"]))
    assert _runs_in(store) == []


def test_a_run_logged_twice_is_one_mlflow_run_and_a_diverged_run_is_failed(store: Path, finished: Path, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert main(["track", "log", "--results", str(store), "--run-dir", str(finished),
                     "--experiment", "main/synth=MoLE-Flow"]) == 0
    runs = _runs_in(store)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    diverged = tmp_path / "diverged"
    shutil.copytree(finished, diverged)
    summary = json.loads((diverged / "summary.json").read_text())
    summary.update(status="diverged", config_hash="another")
    (diverged / "summary.json").write_text(json.dumps(summary))
    assert main(["track", "log", "--results", str(store), "--run-dir", str(diverged),
                 "--experiment", "main/synth=MoLE-Flow"]) == 0
    statuses = sorted((r.data.tags["config_hash"], r.info.status) for r in _runs_in(store))
    first = json.loads((finished / "summary.json").read_text())["config_hash"]
    assert statuses == sorted([("another", "FAILED"), (first, "FINISHED")])


# ------------------------------------------------------------------------------------------------------------ analysis

@pytest.fixture
def planned(tmp_path: Path) -> tuple[Path, dict]:  # type: ignore[type-arg]
    """A results folder whose plan.json plans two runs; each test writes their summaries as it needs."""
    from moleflow.planning import WorkflowPlan

    workflow = {"results": str(tmp_path / "results"), "datasets": {"tiny": {"kind": "mvtec", "root": "data/tiny"}},
                "base": {"profile": "cpu"}, "seeds": [0, 1],
                "studies": {"main": {"variants": [{"name": "MoLE-Flow"}]}}}
    record = WorkflowPlan.from_config(workflow).record()
    results = tmp_path / "results"
    results.mkdir()
    (results / "plan.json").write_text(json.dumps(record))
    return results, record


@pytest.mark.parametrize("content, message", [
    ('{"status": "ok", "conf', "summary.json: truncated or not JSON"),
    ("", "summary.json: truncated or not JSON"),
    ("{}", "summary.json: not a run summary (no status, config, config_hash"),
    ("[]", "summary.json: not a run summary"),
])
def test_analysis_names_a_damaged_summary(planned: tuple[Path, dict], content: str, message: str,  # type: ignore[type-arg]
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from analysis.__main__ import main as analysis_main

    results, record = planned
    run_id = sorted(r["run_id"] for r in record["runs"])[0]
    (results / "runs" / run_id).mkdir(parents=True)
    (results / "runs" / run_id / "summary.json").write_text(content)
    err = _one_line(capsys, analysis_main(["--results", str(results)]), prefix="analysis: error: ")
    assert f"{results / 'runs' / run_id / 'summary.json'}: " in err and message in err
    assert f"rerun that run (its folder resumes) or delete {results / 'runs' / run_id}" in err


def test_analysis_of_a_folder_without_a_plan_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from analysis.__main__ import main as analysis_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    err = _one_line(capsys, analysis_main(["--results", "empty"]), prefix="analysis: error: ")
    assert err == ("analysis: error: empty holds no plan.json (the record the workflow writes) and there is no "
                   "config/config.yaml to plan from; give --plan FILE or --config FILE\n")
    (tmp_path / "empty" / "plan.json").write_text("{}")
    err = _one_line(capsys, analysis_main(["--results", "empty"]), prefix="analysis: error: ")
    assert "empty/plan.json: not a plan record" in err


def test_analysis_warns_when_no_run_of_the_folder_belongs_to_the_plan(planned: tuple[Path, dict],  # type: ignore[type-arg]
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from analysis.__main__ import _warn_foreign_runs

    results, record = planned
    (results / "runs" / "0123456789ab").mkdir(parents=True)
    _warn_foreign_runs(record, results)
    assert capsys.readouterr().err == (f"analysis: warning: none of the 1 run folder(s) under {results / 'runs'} belongs "
                                       "to this plan (2 planned runs): is the plan from another configuration?\n")
    (results / "runs" / sorted(r["run_id"] for r in record["runs"])[0]).mkdir()
    _warn_foreign_runs(record, results)
    assert capsys.readouterr().err == ""


def test_a_partial_analysis_removes_the_completeness_marker(tmp_path: Path) -> None:
    import pandas as pd

    from analysis.__main__ import _mark_completeness

    marker = tmp_path / "complete.json"
    complete = pd.DataFrame({"run_id": ["a", "a", "b"], "status": ["ok", "ok", "diverged"]})
    assert _mark_completeness(complete, marker) == 0
    assert json.loads(marker.read_text()) == {"runs": 2, "status": {"diverged": 1, "ok": 1}}
    partial = pd.DataFrame({"run_id": ["a", "b"], "status": ["ok", "missing"]})
    assert _mark_completeness(partial, marker) == 1 and not marker.exists()


# ----------------------------------------------------------------------------------- the folder layout, end to end

def test_a_folder_dataset_of_jpegs_with_stem_masks_goes_through_check_run_and_predict(
        dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
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
    assert sorted(counts) == ["bracket", "hinge"] and counts["bracket"]["masks"] == counts["bracket"]["test_anomalous"] > 0
    out = tmp_path / "runs" / "my_parts"
    assert main(_run_args(out, parts, tmp_path / "cache", "dataset.kind=folder")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tasks"] == ["bracket", "hinge"] and summary["status"] == "ok"
    assert all(summary["final"][c]["routed"]["pixel_auroc"] is not None for c in ("bracket", "hinge"))
    capsys.readouterr()
    assert main(["predict", "--run", str(out), str(parts / "hinge" / "test" / "good"), "--out", str(tmp_path / "p")]) == 0
    rows = (tmp_path / "p" / "scores.csv").read_text().splitlines()
    assert len(rows) == 1 + len(list((parts / "hinge" / "test" / "good").glob("*.jpg")))
    assert all(row.endswith(",,") and ".jpg," in row for row in rows[1:])
