"""The documentation's generated page: a results folder's headline tables, verdict counts and picture.

``python -m analysis --results results --docs docs/generated`` writes ``default.md`` (and
``claims_effects.png`` beside it) from what the analysis wrote under ``results/tables`` and
``results/figures``, with where it came from: the code's commit, the date, the number of runs
and the digest of the plan. The README and the pages of ``docs/`` link to it instead of
copying numbers, so a number in the documentation is always one a run produced.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from moleflow.errors import MoleflowError
from moleflow.io import write_text_atomic

#: The tables the page shows, by file stem prefix, with a heading each (one per dataset where the stem has one).
SHOWN = (
    ("T3_image_auroc", "Tables 3/5: image AUROC per category (main study)"),
    ("T4_pixel_ap", "Tables 4/6: pixel AP per category (main study)"),
    ("T1_dilemma", "Table 1: the isolation-efficiency dilemma (five-task pilot)"),
    ("T14_strategies", "Table 14: training strategies (five-task pilot)"),
    ("T7_ablation", "Table 7: ablations"),
)
VERDICTS = ("supported", "contradicted", "inconclusive", "not tested here")


def _commit(where: Path) -> str:
    """The checkout's commit (with ``+changes`` when the tree differs from it), or ``unknown``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def verdict_counts(claims: pd.DataFrame) -> dict[str, int]:
    """How many claims each verdict has, in the order of :data:`VERDICTS` (every verdict listed, 0 included)."""
    counts = claims["Verdict"].value_counts()
    return {v: int(counts.get(v, 0)) for v in VERDICTS}


def page(results: Path, commit: str, date: str, runs_commit: str = "unknown") -> str:
    """The Markdown of the generated page for ``results`` (its tables already written by the analysis); ``commit``:
    the code that wrote it, ``runs_commit``: the checkout the results folder lies in (the code that made the runs)."""
    tables = results / "tables"
    claims_file = tables / "claims.csv"
    if not claims_file.is_file():
        raise MoleflowError(f"--docs: {claims_file} does not exist: run the analysis on {results} first")
    claims = pd.read_csv(claims_file)
    runs = pd.read_csv(results / "runs.csv", usecols=["run_id", "status"]).drop_duplicates("run_id")
    plan = results / "plan.json"
    digest = hashlib.sha256(plan.read_bytes()).hexdigest()[:12] if plan.is_file() else "none"
    counts = verdict_counts(claims)
    lines = [
        "# Generated: the embedded default's numbers",
        "",
        f"Written by `python -m analysis --results {results.name} --docs docs/generated` at commit {commit} on "
        f"{date}, from {len(runs)} runs made at commit {runs_commit} ({(runs['status'] == 'ok').sum()} finished ok; "
        f"plan digest {digest}). "
        "Do not edit: regenerate. The tables are the analysis's own Markdown files (`results/tables/`), unchanged.",
        "",
        "## Claims audit",
        "",
        f"{len(claims)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".",
        "",
        "| id | claim | family | verdict | evidence |",
        "|---|---|---|---|---|",
    ]
    for row in claims.itertuples(index=False):
        cells = [row.row, row.Claim, row.Family, row.Verdict, row.Harness if isinstance(row.Harness, str) else "--"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    lines += [
        "",
        "![Every tested effect of the audit with its 95% interval, beside the paper's value](claims_effects.png)",
        "",
    ]
    for prefix, heading in SHOWN:
        for path in sorted(tables.glob(f"{prefix}*.md")):
            lines += [f"## {heading}" + (f" ({path.stem[len(prefix) + 1 :]})" if path.stem != prefix else ""), ""]
            lines += [path.read_text().strip(), ""]
    return "\n".join(lines)


def write_docs(
    results: str | Path,
    out: str | Path,
    commit: str | None = None,
    date: str | None = None,
    runs_commit: str | None = None,
) -> Path:
    """Write ``out/default.md`` and ``out/claims_effects.png`` from ``results``; return the page's path."""
    results, out = Path(results), Path(out)
    commit = commit or _commit(Path(__file__).resolve().parents[1])  # the checkout of the code writing the page
    runs_commit = runs_commit or _commit(results.resolve().parent)
    date = date or datetime.now(UTC).strftime("%Y-%m-%d")
    text = page(results, commit, date, runs_commit)
    out.mkdir(parents=True, exist_ok=True)
    figure = results / "figures" / "claims_effects.png"
    if figure.is_file():
        shutil.copyfile(figure, out / "claims_effects.png")
    target = out / "default.md"
    write_text_atomic(target, text + "\n")
    return target
