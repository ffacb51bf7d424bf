"""Packaging: the conda environment and pyproject agree; the console script exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normalise(spec: str) -> str:
    return spec.replace(" ", "").lower()


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_normalise(s) for s in project["dependencies"] + project["optional-dependencies"]["test"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = {_normalise(s) for s in pip_section if not s.startswith("-e")}
    assert conda == declared
    assert any(str(d).startswith("python>=3.11") for d in env["dependencies"] if isinstance(d, str))
    assert project["requires-python"] == ">=3.11"


def test_console_script_runs() -> None:
    exe = shutil.which("moleflow")
    cmd = [exe] if exe else [sys.executable, "-m", "moleflow"]
    result = subprocess.run([*cmd, "--help"], capture_output=True, text=True, check=True)
    listed = result.stdout.split("{", 1)[1].split("}", 1)[0].split(",")  # argparse's "{synth,data,...}"
    assert listed == ["synth", "data", "features", "run", "run-many", "predict", "track", "plan", "config"]
    version = subprocess.run([*cmd, "--version"], capture_output=True, text=True, check=True)
    from moleflow import __version__

    assert version.stdout.strip() == f"moleflow {__version__}"
    # the console script reaches the code: a bad argument is its one-line error and exit status 2
    bad = subprocess.run([*cmd, "config", "show", "--set", "nope.key=1"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == "moleflow: error: unknown config key 'nope'"
