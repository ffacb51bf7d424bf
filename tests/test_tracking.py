"""MLflow mirror: URI resolution, flattening, and 8 concurrent writers on one new store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests_helpers import fake_summary

from moleflow.config import flat_strings
from moleflow.tracking import default_tracking_uri


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri(tmp_path / "results") == f"sqlite:///{(tmp_path / 'results').resolve()}/mlflow.db"
    assert default_tracking_uri(tmp_path, "http://server:5000") == "http://server:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://u@h/db")
    assert default_tracking_uri(tmp_path, "http://server:5000") == "postgresql://u@h/db"


def test_experiment_names_have_no_slash_and_their_artifacts_a_plain_folder() -> None:
    from moleflow.tracking.mlflow_log import artifact_folder, experiment_name

    assert experiment_name("ablation", "synth") == "ablation (synth)"
    assert artifact_folder("ablation (synth)") == "ablation_synth" and artifact_folder("a/b c") == "a_b_c"


def test_flat_strings() -> None:
    assert flat_strings({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": "x"}) == {
        "a.b": "1",
        "a.c": "[1, 2]",
        "d": "null",
        "e": "x",
    }


@pytest.mark.slow
def test_eight_parallel_writers_on_one_new_store_lose_nothing(tmp_path: Path) -> None:
    results = tmp_path / "results"
    cli = [sys.executable, "-m", "moleflow"]
    subprocess.run(
        [*cli, "track", "init", "--results", str(results), "--experiments", "main (synth)"],
        check=True,
        capture_output=True,
        env=_env(),
    )
    procs = []
    for i in range(8):
        run_dir = tmp_path / f"run{i}"
        run_dir.mkdir()
        (run_dir / "summary.json").write_text(json.dumps(fake_summary(i)))
        procs.append(
            subprocess.Popen(
                [
                    *cli,
                    "track",
                    "log",
                    "--run-dir",
                    str(run_dir),
                    "--results",
                    str(results),
                    "--experiment",
                    "main (synth)=MoLE-Flow",
                ],
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outcomes = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-500:] for _, err in outcomes]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(default_tracking_uri(results))
    experiment = client.get_experiment_by_name("main (synth)")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["config_hash"] for r in runs) == [f"hash{i:03d}" for i in range(8)]
    for r in runs:  # each run's own numbers, not another writer's
        i = int(r.data.tags["config_hash"][4:])
        assert r.data.metrics["final.routed.image_auroc"] == pytest.approx(0.5 + i / 100, abs=1e-12)
        assert r.data.metrics["train_seconds"] == 1.0 and r.data.params["seed"] == str(i)


def _env() -> dict:
    """This process's environment without a tracking URI, so the default sqlite store is used."""
    return {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}


def test_each_experiment_carries_its_studys_description(tmp_path: Path) -> None:
    """The MLflow experiment list says what each experiment is: its study's description, dataset, tables and runs
    (the plan writes it, `track init` sets it as the experiment's description, and again on an existing store)."""
    from mlflow.tracking import MlflowClient
    from tests_helpers import TINY, validated

    from moleflow.planning import WorkflowPlan
    from moleflow.tracking import init_store

    workflow = validated({**TINY, "studies": {**TINY["studies"], "main": {**TINY["studies"]["main"],
                                                                          "description": "The headline.",
                                                                          "tables": ["T3", "T4"]}}})  # fmt: skip
    texts = WorkflowPlan.from_config(workflow).experiment_descriptions
    assert texts["main/tiny"] == "The headline. Dataset: tiny. Tables: T3, T4. 1 runs; variants: MoLE-Flow."
    assert texts["ablation/tiny"] == (
        "The ablation study. Dataset: tiny. Tables: T7. 2 runs; variants: MoLE-Flow, w/o TAL."
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for _ in range(2):  # a second init (a rerun of the workflow) keeps and re-sets them
        ids = init_store(uri, sorted(texts), tmp_path / "artifacts", texts)
    client = MlflowClient(uri)
    for name, experiment_id in ids.items():
        assert client.get_experiment(experiment_id).tags["mlflow.note.content"] == texts[name]
    # the list shows the studies only: MLflow's own empty Default experiment is retired
    assert sorted(e.name for e in client.search_experiments()) == sorted(texts)
    assert client.get_experiment("0").lifecycle_stage == "deleted"


def test_the_mirror_reads_summaries_without_importing_torch(tmp_path: Path) -> None:
    """`moleflow track study` runs once per study: the training code's imports (about 4 s on a CPU) are not its."""
    (tmp_path / "summary.json").write_text(json.dumps(fake_summary(0)))
    code = (
        "import sys; import moleflow.cli.track; from moleflow.tracking.mlflow_log import run_summary; "
        f"assert run_summary({str(tmp_path)!r})['status'] == 'ok'; "
        "print([m for m in ('torch', 'FrEIA', 'sklearn', 'matplotlib') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
