"""What a user sees in the MLflow UI: an ``mlflow server`` on loopback over a store the harness wrote,
asked through its REST API (what the UI itself asks), and the runs page in a real headless browser."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from tests_helpers import fake_summary

pytestmark = pytest.mark.slow  # an mlflow server start (about 25 s) and a browser

EXPERIMENT = "ablation (synth)"  # as the workflow names it (moleflow.tracking.mlflow_log.experiment_name)


def _summary(index: int, start: float) -> dict:
    summary = fake_summary(index)
    summary["tasks"], summary["tasks_completed"] = ["cap", "pcb"], 2
    for key in ("accuracy_matrix", "accuracy_matrix_oracle"):
        summary[key] = {m: [[0.6, None], [0.6, 0.7 + index / 100]] for m in summary[key]}
    summary["per_task"] = [{"task": 0, "epoch_losses": [3.0]}, {"task": 1, "epoch_losses": [2.0]}]
    summary["forgetting"] = {m: {"fm": 0.0, "paper": 0.0, "bwt": 0.0} for m in summary["forgetting"]}
    summary["timings"] = {
        "training": 40.0,
        "training_per_task": [20.0, 20.0],
        "started_at": start,
        "task_finished_at": [start + 25.0, start + 50.0],
        "finished_at": start + 52.0,
    }
    summary["dataset"] = {
        "kind": "mvtec",
        "root": "data/synth",
        "categories": ["cap", "pcb"],
        "fingerprints": {"cap": {"train": "a1", "test": "a2"}, "pcb": {"train": "b1", "test": "b2"}},
        "digest": "0123456789abcdef",
    }
    return summary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """A results folder whose MLflow store holds two runs logged by ``moleflow track``."""
    root = tmp_path_factory.mktemp("ui")
    results = root / "results"
    cli = [sys.executable, "-m", "moleflow"]
    subprocess.run(
        [*cli, "track", "init", "--results", str(results), "--experiments", EXPERIMENT],
        check=True,
        capture_output=True,
        env=_env(),
    )
    summaries = {}
    for index, variant in enumerate(["MoLE-Flow", "w/o TAL"]):
        run_dir = root / f"run{index}"
        run_dir.mkdir()
        summaries[variant] = _summary(index, start=1_700_000_000.0 + 100 * index)
        (run_dir / "summary.json").write_text(json.dumps(summaries[variant]))
        subprocess.run(
            [
                *cli,
                "track",
                "log",
                "--run-dir",
                str(run_dir),
                "--results",
                str(results),
                "--experiment",
                f"{EXPERIMENT}={variant}",
            ],
            check=True,
            capture_output=True,
            env=_env(),
        )
    return results, summaries


@pytest.fixture(scope="module")
def server(store: tuple[Path, dict[str, dict]]):
    results, _ = store
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{results / 'mlflow.db'}",
            "--default-artifact-root",
            str(results / "mlflow-artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=_env(),
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"mlflow server did not start: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
                )
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_the_rest_api_serves_what_the_runs_page_shows(server: str, store: tuple[Path, dict[str, dict]]) -> None:
    _, summaries = store
    experiment = _get(f"{server}/api/2.0/mlflow/experiments/get-by-name?experiment_name={quote(EXPERIMENT)}")[
        "experiment"
    ]
    tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert tags["mlflow.experimentKind"] == "custom_model_development"  # the model-training view, not GenAI's
    runs = _post(f"{server}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    assert len(runs) == 2
    for run in runs:
        variant = next(t["value"] for t in run["data"]["tags"] if t["key"] == "variant")
        timings = summaries[variant]["timings"]
        info = run["info"]
        assert int(info["start_time"]) == round(1000 * timings["started_at"])
        assert int(info["end_time"]) == round(
            1000 * timings["finished_at"]
        )  # the UI's Duration: 52 s, not milliseconds
        (dataset,) = run["inputs"]["dataset_inputs"]
        assert dataset["dataset"]["digest"] == "0123456789abcdef" and dataset["dataset"]["name"] == "mvtec:synth"
        history = _get(
            f"{server}/api/2.0/mlflow/metrics/get-history?run_id={info['run_id']}"
            "&metric_key=routed.seen_mean.image_auroc"
        )["metrics"]
        assert [int(m["step"]) for m in history] == [0, 1]
        assert [int(m["timestamp"]) for m in history] == [round(1000 * t) for t in timings["task_finished_at"]]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _dom_text(page: str, profile: Path, wanted: list[str]) -> str:
    """The text of ``page`` once the single-page app has rendered what ``wanted`` names (or the last try)."""
    import re

    assert CHROMIUM is not None  # the tests that call this skip without a browser
    text = ""
    for budget in (15000, 40000):  # virtual time for the app to fetch and render
        result = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget}",
                "--window-size=2400,1000",  # the table renders only the columns in view
                "--dump-dom",
                page,
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", result.stdout))
        if all(w in text for w in wanted):
            break
    return text


@pytest.mark.service
@pytest.mark.skipif(CHROMIUM is None, reason="no headless browser (Debian's chromium); .ci/run installs it")
def test_a_real_browser_shows_the_runs_their_dataset_and_duration(
    server: str, store: tuple[Path, dict[str, dict]], tmp_path: Path
) -> None:
    """The README's link (the experiment with ?workflowType=machine_learning) opens on the runs table; a run's
    page shows the training's duration and the dataset."""
    from moleflow.tracking.mlflow_log import HEADLINE_COLUMNS, experiment_url

    experiment = _get(f"{server}/api/2.0/mlflow/experiments/get-by-name?experiment_name={quote(EXPERIMENT)}")[
        "experiment"
    ]
    home = f"{server}/#/experiments/{experiment['experiment_id']}?workflowType=machine_learning"
    wanted = ["MoLE-Flow-seed0", "w/o TAL-seed1", "mvtec:synth"]
    text = _dom_text(home, tmp_path / "profile", wanted)
    assert all(w in text for w in wanted) and "Run Name" in text, text[-3000:]
    # the experiment's shared view (what `track init` prints): the headline metrics are columns of the runs table
    assert not any(m in text for m in HEADLINE_COLUMNS)  # MLflow's own default view shows none of them
    wanted = ["MoLE-Flow-seed0", *HEADLINE_COLUMNS]
    text = _dom_text(experiment_url(server, experiment["experiment_id"]), tmp_path / "shared", wanted)
    assert all(w in text for w in wanted), text[-3000:]
    runs = _post(f"{server}/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment["experiment_id"]]})["runs"]
    run = next(r for r in runs if r["info"]["run_name"] == "MoLE-Flow-seed0")
    page = f"{server}/#/experiments/{experiment['experiment_id']}/runs/{run['info']['run_id']}?workflowType=machine_learning"
    text = _dom_text(page, tmp_path / "profile", ["Duration", "52.0s"])
    assert "Duration" in text and "52.0s" in text and "mvtec:synth" in text, text[-3000:]
    # the run's "Model metrics" tab: one chart per logged metric (the per-task ones as curves over the task index)
    charts = f"Model metrics ({len(run['data']['metrics'])})"
    page = (
        f"{server}/#/experiments/{experiment['experiment_id']}/runs/{run['info']['run_id']}/model-metrics"
        "?workflowType=machine_learning"
    )
    text = _dom_text(page, tmp_path / "profile", [charts])
    assert charts in text, text[-3000:]
