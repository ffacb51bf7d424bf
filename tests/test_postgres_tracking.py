"""The multi-node setup: an MLflow tracking server backed by a real PostgreSQL on loopback.

Starts PostgreSQL (Debian's package; `.ci/run` installs it) in a temporary folder,
an `mlflow server` on it, and runs the workflow's own logging commands against the
server: the store is initialised once, then several runs log concurrently.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from tests_helpers import fake_summary

PG_BIN = next(
    (
        p
        for p in ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")
        if os.path.isfile(f"{p}/initdb")
    ),
    None,
) or (os.path.dirname(found) if (found := shutil.which("initdb")) else None)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.service,
    pytest.mark.skipif(
        PG_BIN is None, reason="PostgreSQL server binaries not installed (.ci/run installs Debian's postgresql)"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + cmd, check=True, capture_output=True, text=True, **kwargs)


@pytest.fixture
def postgres():
    # pytest's tmp_path lives under a root-only folder; the server runs as the postgres user
    base = Path(tempfile.mkdtemp(prefix="moleflow-pg-"))
    base.chmod(0o755)
    data = base / "pgdata"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
    port = _free_port()
    _as_postgres([f"{PG_BIN}/initdb", "-D", str(data), "-U", "postgres", "--auth=trust"])
    _as_postgres(
        [
            f"{PG_BIN}/pg_ctl",
            "-D",
            str(data),
            "-o",
            f"-p {port} -k {data} -h 127.0.0.1",
            "-w",
            "start",
            "-l",
            str(data / "log"),
        ]
    )
    try:
        _as_postgres([f"{PG_BIN}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"])
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"
    finally:
        _as_postgres([f"{PG_BIN}/pg_ctl", "-D", str(data), "-m", "fast", "stop"])
        shutil.rmtree(base, ignore_errors=True)


def _wait_http(url: str, seconds: float = 120.0) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds} s")


def test_logging_against_an_mlflow_server_backed_by_postgresql(postgres: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            postgres,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{uri}/health")
        cli = [sys.executable, "-m", "moleflow"]
        subprocess.run(
            [*cli, "track", "init", "--uri", uri, "--results", str(tmp_path), "--experiments", "main (mvtec)"],
            check=True,
            capture_output=True,
            env=env,
        )
        procs = []
        for i in range(4):
            run_dir = tmp_path / f"run{i}"
            run_dir.mkdir()
            (run_dir / "summary.json").write_text(json.dumps(fake_summary(i)))
            (run_dir / "tasks.csv").write_text("after_task,task\n0,0\n")
            procs.append(
                subprocess.Popen(
                    [
                        *cli,
                        "track",
                        "log",
                        "--uri",
                        uri,
                        "--run-dir",
                        str(run_dir),
                        "--experiment",
                        "main (mvtec)=MoLE-Flow",
                    ],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        outcomes = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err[-800:] for _, err in outcomes]
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("main (mvtec)")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        assert sorted(r.data.tags["config_hash"] for r in runs) == [f"hash{i:03d}" for i in range(4)]
        for r in runs:  # each writer's own numbers, not a neighbour's
            i = int(r.data.tags["config_hash"][4:])
            assert r.data.metrics["final.routed.image_auroc"] == pytest.approx(0.5 + i / 100, abs=1e-12)
            assert r.data.metrics["train_seconds"] == 1.0 and r.data.params["seed"] == str(i)
        assert {a.path for a in client.list_artifacts(runs[0].info.run_id)} >= {"summary.json", "tasks.csv"}
    finally:
        server.terminate()
        server.wait(timeout=30)
