"""Workflow: DAG planning time and job count of the paper's grid; the end-to-end time of a small workflow.

Planning: ``snakemake -n all_tables`` on ``config/paper.yaml`` with the dataset roots
pointing at stand-in trees of every MVTec AD and VisA category (noise in the real
layouts), with the greedy scheduler the profiles choose and with Snakemake's default
ILP scheduler, in the same process tree, so the ratio is the scheduler's cost.
End to end: the whole workflow (dataset, features, runs, MLflow, tables and figures)
on a small generated configuration; the embedded default itself (config/config.yaml)
takes longer than this suite's budget and is measured by the README's main command.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import Result
from moleflow.data.synth.standin import MVTEC_CATEGORIES, MVTEC_GRAYSCALE, VISA_CATEGORIES, make_mvtec, make_visa

ROOT = Path(__file__).resolve().parents[1]
SMALL = {
    "results": "results",
    "cache": "results/cache/features",
    "seeds": [0],
    "base": {
        "profile": "cpu",
        "set": {
            "training.epochs": 1,
            "features.resize": 64,
            "features.input_size": 64,
            "features.embed_dim": 16,
            "model.coupling_blocks": 1,
            "model.lora_rank": 2,
            "evaluation.sample_images": 1,
        },
    },
    "datasets": {
        "small": {
            "kind": "mvtec",
            "root": "data/small",
            "categories": ["cap", "tile"],
            "generate": {"seed": 0, "size": 64, "train": 6, "test_good": 2, "test_defect": 2},
        }
    },
    "studies": {
        "main": {"tables": ["T2", "T3", "T4", "T15", "T16"], "variants": [{"name": "MoLE-Flow"}]},
        "ablation": {
            "tables": ["T7"],
            "variants": [{"name": "MoLE-Flow"}, {"name": "w/o TAL", "set": {"training.tail_weight": 0.0}}],
        },
    },
}
SIZES: dict[str, dict[str, Any]] = {
    "smoke": {
        "mvtec": MVTEC_CATEGORIES[:5],  # the paper's pilot names five
        "visa": VISA_CATEGORIES[:2],
        "ilp": False,
    },
    "full": {"mvtec": MVTEC_CATEGORIES, "visa": VISA_CATEGORIES, "ilp": True},
}


def _snakemake(workdir: Path, *args: str) -> tuple[float, str]:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "all_tables",
        "-s",
        str(ROOT / "Snakefile"),
        "--configfile",
        "config.yaml",
        "--cores",
        "2",
        "--resources",
        "gpu=1",
        *args,
    ]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"snakemake failed in {workdir}:\n{(done.stdout + done.stderr)[-2000:]}")
    return seconds, done.stdout + done.stderr


def rule_counts(text: str) -> dict[str, int]:
    """Jobs per rule from the first job table of Snakemake's output (``--quiet rules``); the training
    jobs' rules (``train_<job>``, one per job) are summed as ``train``."""
    counts: dict[str, int] = {}
    for m in re.finditer(r"^(\w+)\s+(\d+)$", text, flags=re.MULTILINE):
        name = "train" if m.group(1).startswith("train_") else m.group(1)
        counts[name] = counts.get(name, 0) + int(m.group(2))
        if name == "total":
            break
    return counts


def run(scale: str = "full") -> Result:
    size = SIZES[scale]
    result = Result(
        "workflow",
        "Workflow planning and end-to-end time",
        ["what", "jobs", "training jobs", "seconds", "relative to greedy planning"],
        command=f"python -m benchmarks --only workflow --scale {scale}",
    )
    with tempfile.TemporaryDirectory(prefix="moleflow-bench-wf-") as tmp:
        work = Path(tmp)
        paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
        paper["datasets"]["mvtec"]["root"] = str(
            make_mvtec(work / "mvtec", {c: c in MVTEC_GRAYSCALE for c in size["mvtec"]}, size=16)
        )
        paper["datasets"]["visa"]["root"] = str(make_visa(work / "visa", list(size["visa"]), size=16))
        (work / "plan").mkdir()
        (work / "plan" / "config.yaml").write_text(yaml.safe_dump(paper))
        greedy, text = _snakemake(work / "plan", "-n", "--quiet", "rules", "--scheduler", "greedy")
        counts = rule_counts(text)
        result.add(
            "plan config/paper.yaml, greedy scheduler", counts.get("total", 0), counts.get("train", 0), greedy, 1.0
        )
        if size["ilp"]:
            ilp, text = _snakemake(work / "plan", "-n", "--quiet", "rules", "--scheduler", "ilp")
            counts = rule_counts(text)
            result.add(
                "plan config/paper.yaml, ILP scheduler",
                counts.get("total", 0),
                counts.get("train", 0),
                ilp,
                ilp / greedy,
            )
        (work / "small").mkdir()
        (work / "small" / "config.yaml").write_text(yaml.safe_dump(copy.deepcopy(SMALL)))
        e2e, text = _snakemake(work / "small")
        result.add(
            "end to end: a small generated workflow (2 runs, MLflow, tables, figures)",
            len(re.findall(r"Finished jobid", text)),
            2,
            e2e,
            e2e / greedy,
        )
    from moleflow.planning import plan_runs

    default_runs = len(plan_runs(yaml.safe_load((ROOT / "config" / "config.yaml").read_text())))
    result.notes.append(
        f"Stand-in trees with {len(size['mvtec'])} MVTec AD and {len(size['visa'])} VisA categories. Planning with -n "
        "builds the whole DAG and schedules all ready jobs once, so both schedulers take the same time here; the ILP "
        "scheduler's cost (about 0.12 s per job, measured for issue 4) is paid in a real run, which re-schedules after "
        "every finished job, and is why the profiles choose the greedy one. The embedded default "
        f"(config/config.yaml, {default_runs} runs) end to end: see README (its main command, measured on a fresh clone) "
        "and the breakdown by job kind below."
    )
    return result
