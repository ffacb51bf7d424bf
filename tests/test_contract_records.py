"""The records downstream of a run as a contract: MLflow tracking refuses what is not a finished run and logs a rerun once; the analysis names a damaged summary, a folder without a plan, runs of another plan, and a partial analysis."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests_helpers import finished_run, one_line

from moleflow.cli import main


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished two-task run (read only: tests copy it before changing it)."""
    return finished_run(tmp_path_factory.mktemp("finished"))[0]


@pytest.fixture
def store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["track", "init", "--results", str(tmp_path), "--experiments", "main (synth)"]) == 0
    capsys.readouterr()
    return tmp_path


def _runs_in(store: Path, experiment: str = "main (synth)") -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    assert found is not None
    return client.search_runs([found.experiment_id])


def test_track_refuses_a_folder_without_a_good_summary_in_one_line(
    store: Path, finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "summary.json").write_text('{"status": "ok"')
    cases = {
        tmp_path / "empty": "holds no summary.json: the run has not finished",
        tmp_path / "missing": "no such run folder",
        bad: "summary.json: truncated or not JSON",
    }
    for folder, message in cases.items():
        err = one_line(
            capsys,
            main(["track", "log", "--results", str(store), "--run-dir", str(folder), "--experiment", "main (synth)=x"]),
        )
        assert message in err and str(folder) in err
    err = one_line(
        capsys,
        main(["track", "log", "--results", str(store), "--run-dir", str(finished), "--experiment", "nope (synth)=x"]),
    )
    assert "MLflow experiment 'nope (synth)' does not exist" in err and "moleflow track init" in err
    # a good run then a bad one: refused before the good one is logged, so the study is never half logged
    one_line(
        capsys,
        main(
            [
                "track",
                "study",
                "--results",
                str(store),
                "--experiment",
                "main (synth)",
                "--run",
                f"{finished}=a",
                "--run",
                f"{bad}=b",
            ]
        ),
    )
    assert _runs_in(store) == []


def test_a_run_logged_twice_is_one_mlflow_run_and_a_diverged_run_is_failed(
    store: Path, finished: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        assert (
            main(
                [
                    "track",
                    "log",
                    "--results",
                    str(store),
                    "--run-dir",
                    str(finished),
                    "--experiment",
                    "main (synth)=MoLE-Flow",
                ]
            )
            == 0
        )
    runs = _runs_in(store)
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    diverged = tmp_path / "diverged"
    shutil.copytree(finished, diverged)
    summary = json.loads((diverged / "summary.json").read_text())
    summary.update(status="diverged", config_hash="another")
    (diverged / "summary.json").write_text(json.dumps(summary))
    assert (
        main(
            [
                "track",
                "log",
                "--results",
                str(store),
                "--run-dir",
                str(diverged),
                "--experiment",
                "main (synth)=MoLE-Flow",
            ]
        )
        == 0
    )
    statuses = sorted((r.data.tags["config_hash"], r.info.status) for r in _runs_in(store))
    first = json.loads((finished / "summary.json").read_text())["config_hash"]
    assert statuses == sorted([("another", "FAILED"), (first, "FINISHED")])


@pytest.fixture
def planned(tmp_path: Path) -> tuple[Path, dict]:
    """A results folder whose plan.json plans two runs; each test writes their summaries as it needs."""
    from moleflow.planning import WorkflowPlan

    workflow = {
        "results": str(tmp_path / "results"),
        "datasets": {"tiny": {"kind": "mvtec", "root": "data/tiny"}},
        "base": {"profile": "cpu"},
        "seeds": [0, 1],
        "studies": {"main": {"variants": [{"name": "MoLE-Flow"}]}},
    }
    record = WorkflowPlan.from_config(workflow).record()
    results = tmp_path / "results"
    results.mkdir()
    (results / "plan.json").write_text(json.dumps(record))
    return results, record


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"status": "ok", "conf', "summary.json: truncated or not JSON"),
        ("", "summary.json: truncated or not JSON"),
        ("{}", "summary.json: not a run summary (no status, config, config_hash"),
        ("[]", "summary.json: not a run summary"),
    ],
)
def test_analysis_names_a_damaged_summary(
    planned: tuple[Path, dict],
    content: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from analysis.__main__ import main as analysis_main

    results, record = planned
    run_id = sorted(r["run_id"] for r in record["runs"])[0]
    (results / "runs" / run_id).mkdir(parents=True)
    (results / "runs" / run_id / "summary.json").write_text(content)
    err = one_line(capsys, analysis_main(["--results", str(results)]), prefix="analysis: error: ")
    assert f"{results / 'runs' / run_id / 'summary.json'}: " in err and message in err
    assert f"rerun that run (its folder resumes) or delete {results / 'runs' / run_id}" in err


def test_analysis_of_a_folder_without_a_plan_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from analysis.__main__ import main as analysis_main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    err = one_line(capsys, analysis_main(["--results", "empty"]), prefix="analysis: error: ")
    assert err == (
        "analysis: error: empty holds no plan.json (the record the workflow writes) and there is no "
        "config/config.yaml to plan from; give --plan FILE or --config FILE\n"
    )
    (tmp_path / "empty" / "plan.json").write_text("{}")
    err = one_line(capsys, analysis_main(["--results", "empty"]), prefix="analysis: error: ")
    assert "empty/plan.json: not a plan record" in err


def test_analysis_warns_when_no_run_of_the_folder_belongs_to_the_plan(
    planned: tuple[Path, dict],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from analysis.__main__ import _warn_foreign_runs

    results, record = planned
    (results / "runs" / "0123456789ab").mkdir(parents=True)
    _warn_foreign_runs(record, results)
    assert capsys.readouterr().err == (
        f"analysis: warning: none of the 1 run folder(s) under {results / 'runs'} belongs "
        "to this plan (2 planned runs): is the plan from another configuration?\n"
    )
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
