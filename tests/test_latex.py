"""Every LaTeX table compiles: a document that inputs all of them goes through pdflatex."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.__main__ import main as analysis_main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.service,
    pytest.mark.skipif(
        shutil.which("pdflatex") is None,
        reason="pdflatex not installed (.ci/run installs Debian's texlive-latex-recommended)",
    ),
]


def test_all_tables_compile(tmp_path: Path) -> None:
    import json

    import numpy as np
    import yaml
    from analysis_fixture import WORKFLOW, summary_of  # the fixture's run summaries

    from moleflow.planning import plan_runs

    rng = np.random.default_rng(0)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(WORKFLOW))
    for run in plan_runs(WORKFLOW).values():
        folder = tmp_path / "results" / "runs" / run.run_id
        folder.mkdir(parents=True)
        status = "diverged" if any(v == "M16 N2" for _, v in run.memberships) else "ok"
        (folder / "summary.json").write_text(json.dumps(summary_of(run, rng, status)))
    assert analysis_main(["--config", str(tmp_path / "config.yaml"), "--results", str(tmp_path / "results")]) == 0
    tables = sorted((tmp_path / "results" / "tables").glob("*.tex"))
    assert tables
    body = "\n".join(f"\\input{{{t.as_posix()}}}\n\\clearpage" for t in tables)
    doc = tmp_path / "all.tex"
    doc.write_text(
        "\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n\\usepackage{booktabs}\n"
        "\\usepackage{amssymb}\n\\usepackage{textcomp}\n\\begin{document}\n" + body + "\n\\end{document}\n"
    )
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,
    )  # TeX logs are not always UTF-8
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "all.pdf").stat().st_size > 1000
