"""The SLURM profile, for real: a single-node SLURM cluster on this machine runs a small workflow.

Starts munge, slurmctld and slurmd (Debian's `slurm-wlm` and `munge`; `.ci/run` installs
them) with a node that has two partitions, `cpu` and `gpu`, and one generic GPU resource
(a `gres` backed by /dev/null: SLURM only counts it), then runs `all_tables` on the tiny
workflow through `workflow/profiles/slurm` unchanged. Checks that every job went through
sbatch, that run and feature jobs landed in the `gpu` partition with one GPU each (the
profile's `set-resources`), and that the results and the MLflow runs are complete.

The jobstep plugin strips `SLURM_CONF` from the job's environment before `srun`, so the
cluster's config must sit where a real node keeps it, /etc/slurm/slurm.conf. The test
writes it there only when no file is there (a real cluster node is never touched) and
removes it afterwards; it is skipped when not root or the binaries are missing.
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
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests_helpers import TINY

ROOT = Path(__file__).resolve().parents[1]

ETC = Path("/etc/slurm")
BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")

pytestmark = [
    pytest.mark.service,
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(b) is None for b in BINARIES),
        reason="SLURM not installed (.ci/run installs Debian's slurm-wlm and munge)",
    ),
    pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="starting SLURM daemons needs root"),
    pytest.mark.skipif(
        (ETC / "slurm.conf").exists(), reason="/etc/slurm/slurm.conf exists: not touching a real cluster"
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(base: Path, host: str) -> str:
    return (
        "\n".join(
            [
                "ClusterName=moleflowtest",
                f"SlurmctldHost={host}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                f"AuthInfo=socket={base}/munge.socket",
                "CredType=cred/munge",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                f"StateSaveLocation={base}/state",
                f"SlurmdSpoolDir={base}/spool",
                f"SlurmctldPidFile={base}/slurmctld.pid",
                f"SlurmdPidFile={base}/slurmd.pid",
                f"SlurmctldLogFile={base}/slurmctld.log",
                f"SlurmdLogFile={base}/slurmd.log",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "JobAcctGatherType=jobacct_gather/none",
                "AccountingStorageType=accounting_storage/none",
                "SchedulerType=sched/backfill",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "ReturnToService=2",
                "MpiDefault=none",
                # the profile asks for 32 GB and 4 CPUs per GPU; the node's configured size is what counts
                "SlurmdParameters=config_overrides",
                "MinJobAge=600",
                "GresTypes=gpu",
                f"NodeName={host} CPUs=8 RealMemory=64000 Gres=gpu:1 State=UNKNOWN",
                f"PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
                f"PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP OverSubscribe=YES",
            ]
        )
        + "\n"
    )


@pytest.fixture
def slurm_cluster() -> Iterator[dict[str, str]]:
    host = socket.gethostname().split(".")[0]
    base = Path(tempfile.mkdtemp(prefix="moleflow-slurm-"))
    for sub in ("state", "spool"):
        (base / sub).mkdir()
    key = base / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    ETC.mkdir(parents=True, exist_ok=True)
    (ETC / "slurm.conf").write_text(_slurm_conf(base, host))
    (ETC / "gres.conf").write_text(f"NodeName={host} Name=gpu File=/dev/null\n")
    env = {**os.environ, "SLURM_CONF": str(ETC / "slurm.conf")}
    try:
        subprocess.run(
            [
                "munged",
                "-f",
                f"--socket={base}/munge.socket",
                f"--key-file={key}",
                f"--pid-file={base}/munged.pid",
                f"--log-file={base}/munged.log",
                f"--seed-file={base}/munged.seed",
            ],
            check=True,
            env=env,
        )
        subprocess.run(["slurmctld", "-f", str(ETC / "slurm.conf")], check=True, env=env)
        subprocess.run(["slurmd", "-f", str(ETC / "slurm.conf"), "-N", host], check=True, env=env)
        deadline = time.time() + 60
        while time.time() < deadline:
            state = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=env).stdout
            if state.strip().startswith("idle"):
                break
            time.sleep(1)
        else:
            pytest.fail(f"the SLURM node did not come up: {state!r}; see {base}/slurmctld.log")
        yield env
    finally:
        subprocess.run(["scontrol", "shutdown"], capture_output=True, env=env)
        subprocess.run(["munged", "--stop", f"--socket={base}/munge.socket"], capture_output=True)
        for name in ("slurm.conf", "gres.conf"):
            (ETC / name).unlink(missing_ok=True)
        time.sleep(1)
        shutil.rmtree(base, ignore_errors=True)


def _jobs(env: dict[str, str]) -> list[dict[str, str]]:
    """Every job the controller still remembers (MinJobAge keeps finished ones), as key=value dicts."""
    text = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, env=env).stdout
    return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in text.splitlines() if line.strip()]


def test_workflow_through_the_slurm_profile(slurm_cluster: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(TINY))
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "all_tables",
        "-s",
        str(ROOT / "Snakefile"),
        "--configfile",
        "config.yaml",
        "--workflow-profile",
        str(ROOT / "workflow" / "profiles" / "slurm"),
        "--jobs",
        "4",
        # a single node without slurmdbd: no sacct, no accounts; poll squeue soon
        "--slurm-status-command",
        "squeue",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "2",
    ]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env=slurm_cluster)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]

    jobs = _jobs(slurm_cluster)
    assert all(j["JobState"] == "COMPLETED" for j in jobs), [(j["JobId"], j["JobState"]) for j in jobs]
    gpu_jobs = [j for j in jobs if j["Partition"] == "gpu"]
    # 2 feature jobs (cap, tile) + 1 training job (both runs: runs_per_job 2), each with one GPU
    assert len(gpu_jobs) == 3 and all("gres:gpu:1" in j.get("TresPerJob", "") for j in gpu_jobs), gpu_jobs
    assert len([j for j in jobs if j["Partition"] == "cpu"]) == 3  # synth and one MLflow job per study (main, ablation)

    runs = sorted((tmp_path / "results" / "runs").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "summary.json").read_text())["status"] == "ok"
    logged = {
        p.parent.name: json.loads(p.read_text())["runs"]
        for p in (tmp_path / "results" / "mlflow" / "logged").glob("*/tiny.json")
    }
    assert sorted(logged) == ["ablation", "main"] and {r for runs_ in logged.values() for r in runs_} == {
        r.name for r in runs
    }
    assert "T7_ablation_tiny" in (tmp_path / "results" / "tables" / "index.csv").read_text()
