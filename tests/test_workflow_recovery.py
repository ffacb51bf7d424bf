"""The workflow after things go wrong: a killed job resumes, a partial folder is analysable, the analysis before any run, and only the documented targets are target rules."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tests_helpers import TINY, snakemake_cmd, validated

from moleflow.planning import plan_runs

ROOT = Path(__file__).resolve().parents[1]


PARTIAL = copy.deepcopy(TINY)
PARTIAL["base"]["set"]["training.epochs"] = 2
PARTIAL["datasets"]["tiny"]["categories"] = ["cap", "tile", "screw"]
PARTIAL["studies"] = {
    "main": {"tables": ["T3"], "variants": [{"name": "MoLE-Flow"}]},
    "ablation": {
        "tables": ["T7"],
        "variants": [
            {"name": "MoLE-Flow"},
            {"name": "w/o TAL", "set": {"training.tail_weight": 0.0}},
            {
                "name": "lr 1e8",
                "set": {"training.lr": 1.0e8, "training.clip_grad_norm": 0.0, "training.warmup_epochs": 0},
            },
        ],
    },
}


def _killed_after_first_checkpoint(workdir: Path) -> str:
    """Start the workflow and SIGKILL it (scheduler and job) once a run has committed a task but not finished."""
    import os
    import signal
    import time

    runs = workdir / "results" / "runs"
    proc = subprocess.Popen(
        snakemake_cmd("all_tables"),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for progress in runs.glob("*/checkpoints/progress.json") if runs.is_dir() else []:
                folder = progress.parents[1]
                try:
                    committed = json.loads(progress.read_text())["completed"]
                except (OSError, ValueError):
                    continue
                if 1 <= committed < 3 and not (folder / "summary.json").exists():
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    return folder.name
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    raise AssertionError("no run was caught between its first checkpoint and its end")


@pytest.mark.slow
def test_killed_workflow_leaves_an_analysable_folder_and_resumes(tmp_path: Path) -> None:
    """A real partial results folder: one run diverged through the real loop, one SIGKILLed after its first
    checkpoint. The analysis reads it (missing and diverged runs marked, not dropped); ``--rerun-incomplete``
    resumes the killed run, whose log says so and whose result equals an uninterrupted run's."""
    import pandas as pd

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(PARTIAL))
    planned = plan_runs(validated(PARTIAL))
    diverging = next(r.run_id for r in planned.values() if ("ablation", "lr 1e8") in r.memberships)
    first = subprocess.run(
        snakemake_cmd(f"results/runs/{diverging}/summary.json"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    killed = _killed_after_first_checkpoint(tmp_path)
    assert killed != diverging and not (tmp_path / "results" / "runs" / killed / "summary.json").exists()

    analysed = subprocess.run(
        [sys.executable, "-m", "analysis", "--config", "config.yaml", "--results", "results"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=_with_root_on_path(),
    )
    assert analysed.returncode == 0, analysed.stderr[-3000:]
    runs = pd.read_csv(tmp_path / "results" / "runs.csv").drop_duplicates("run_id").set_index("run_id")
    assert runs.loc[diverging, "status"] == "diverged" and runs.loc[killed, "status"] == "missing"
    ablation = (tmp_path / "results" / "tables" / "T7_ablation_tiny.md").read_text()
    assert "| lr 1e8 | diverged (n=0 of 1) |" in ablation

    unlocked = subprocess.run(
        snakemake_cmd("all_tables", "--unlock"), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )  # a SIGKILLed Snakemake leaves its lock: the README's recovery step
    assert unlocked.returncode == 0, unlocked.stderr[-3000:]
    again = subprocess.run(
        snakemake_cmd("all_tables", "--rerun-incomplete"), cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert again.returncode == 0, again.stderr[-3000:]
    from moleflow.planning import WorkflowPlan

    as_read = yaml.safe_load((tmp_path / "config.yaml").read_text())  # the study order Snakemake read
    job = next(name for name, ids in WorkflowPlan.from_config(validated(as_read)).jobs.items() if killed in ids)
    log = (tmp_path / "results" / "logs" / "runs" / f"{job}.log").read_text()
    assert "resuming after task" in log, log
    resumed = json.loads((tmp_path / "results" / "runs" / killed / "summary.json").read_text())
    import os

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as Snakemake runs a one-thread job
    alone = subprocess.run(
        ["moleflow", "run", "--config-json", json.dumps(planned[killed].config), "--out", "uninterrupted", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    whole = json.loads((tmp_path / "uninterrupted" / "summary.json").read_text())
    for key in ("status", "final", "accuracy_matrix", "accuracy_matrix_oracle", "routing_confusion", "forgetting"):
        assert resumed[key] == whole[key], key
    runs = pd.read_csv(tmp_path / "results" / "runs.csv").drop_duplicates("run_id").set_index("run_id")
    assert runs.loc[killed, "status"] == "ok" and runs.loc[diverging, "status"] == "diverged"


def _with_root_on_path() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_analysis_before_any_run_lists_every_planned_run_as_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the README promises for a folder where nothing has finished yet: every table, the runs marked missing."""
    from analysis.__main__ import main as analysis_main

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    assert analysis_main(["--config", str(tmp_path / "config.yaml"), "--results", str(tmp_path / "results")]) == 0
    assert "partial: 2 planned run(s) have no summary yet" in capsys.readouterr().out
    runs = pd.read_csv(tmp_path / "results" / "runs.csv")
    assert set(runs["status"]) == {"missing"} and runs["run_id"].nunique() == 2
    assert (tmp_path / "results" / "tables" / "index.csv").is_file()


def test_only_the_documented_targets_are_target_rules(tmp_path: Path) -> None:
    """`snakemake --list-target-rules` lists what the README tells a user to call, no helper."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(ROOT / "Snakefile"),
        "--configfile",
        "config.yaml",
        "--list-target-rules",
    ]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    listed = [line.strip() for line in result.stdout.splitlines() if line.strip() and " " not in line.strip()]
    assert listed == ["all_runs", "all_tables", "study_ablation", "study_main"], result.stdout
