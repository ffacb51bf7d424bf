"""Packaging: the conda environment and pyproject agree; the console script exists."""

from __future__ import annotations

import re
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


def test_ci_runs_the_readmes_test_command() -> None:
    """`.ci/run` ends with exactly the README's test command (install, lint, format, types, workflow lint, tests)."""
    readme = (ROOT / "README.md").read_text()
    last = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()][-1]
    assert last.startswith("python -m pip install -e") and "python -m pytest" in last
    assert f"\n{last}\n" in readme
    for check in ("ruff check .", "ruff format --check .", "mypy", "snakemake --lint"):
        assert check in last


def test_config_readme_names_every_workflow_key() -> None:
    """config/README.md documents the workflow configuration: every key of its schema is named there."""
    schema = yaml.safe_load((ROOT / "moleflow" / "schemas" / "workflow.schema.yaml").read_text())
    readme = (ROOT / "config" / "README.md").read_text()
    keys = list(schema["properties"])
    study = schema["properties"]["studies"]["additionalProperties"]["properties"]
    dataset = schema["properties"]["datasets"]["additionalProperties"]["properties"]
    missing = [k for k in keys if f"`{k}" not in readme]
    missing += [k for k in [*study, *dataset] if f"`{k}`" not in readme]
    assert not missing, f"config/README.md does not name {missing}"


def test_the_readme_is_short_and_every_documentation_page_is_reachable_from_it() -> None:
    """The README stays a first screen (at most 250 lines) and links every page under docs/ and config/README.md."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    pages = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md"))
    unlinked = [p for p in [*pages, "config/README.md"] if f"]({p})" not in readme]
    assert not unlinked, f"the README does not link {unlinked}"
    for page in pages:  # and every relative link of a page points at a file that exists
        text = (ROOT / page).read_text()
        for target in re.findall(r"\]\(([^)#:]+\.(?:md|png|yaml|py))\)", text):
            assert (ROOT / page).parent.joinpath(target).resolve().exists(), (
                f"{page} links {target}, which does not exist"
            )
