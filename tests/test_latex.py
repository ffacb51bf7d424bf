"""Every LaTeX table compiles, and each fits a one-column article: no overfull box over 1 pt, bold that is bold
(never ``\\textbf`` around maths), the packages it needs named in its first line."""

from __future__ import annotations

import os
import re
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
    assert len(tables) >= 15
    body = "\n".join(f"\\input{{{t.as_posix()}}}\n\\clearpage" for t in tables)
    _compile(tmp_path / "all.tex", body)
    assert (tmp_path / "all.pdf").stat().st_size > 1000
    for table in tables:  # each alone: it fits the text width, and its bold is bold
        text = table.read_text()
        assert text.startswith("% Needs \\usepackage{booktabs,graphicx,amsmath,array}"), table.name
        assert "\\textbf{$" not in text and "\\textbf{\\(" not in text, table.name  # \textbf does not bolden maths
        log = _compile(tmp_path / f"one_{table.stem}.tex", f"\\input{{{table.as_posix()}}}")
        overfull = [float(v) for v in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]
        assert all(v <= 1.0 for v in overfull), (table.name, overfull)
        natural = re.search(rf"table {re.escape(table.stem)}: natural width ([\d.]+)pt of ([\d.]+)pt", log)
        assert natural is not None, table.name  # the table says its natural width (scaled only when wider)


def _compile(doc: Path, body: str) -> str:
    """pdflatex a one-column article (booktabs, graphicx, amsmath, array) around ``body``; its log."""
    doc.write_text(
        "\\documentclass{article}\n\\usepackage[utf8]{inputenc}\n\\usepackage{booktabs,graphicx,amsmath,array}\n"
        "\\usepackage{amssymb}\n\\usepackage{textcomp}\n\\begin{document}\n" + body + "\n\\end{document}\n"
    )
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
        cwd=doc.parent,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,
        env={**os.environ, "max_print_line": "10000"},  # TeX wraps its log at 79 characters otherwise
    )  # TeX logs are not always UTF-8
    assert result.returncode == 0, result.stdout[-3000:]
    return result.stdout
