"""Every benchmark runs once at its smallest size, so that none can rot. Timings are never asserted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tests_helpers import per_task_by_formula

from benchmarks import BENCHMARKS
from benchmarks.__main__ import main
from benchmarks.common import markdown


@pytest.mark.parametrize("name", [n for n in BENCHMARKS if n != "workflow"])
def test_benchmark_runs_at_smoke_scale(name: str) -> None:
    result = BENCHMARKS[name]("smoke")
    assert result.rows and all(len(row) == len(result.columns) for row in result.rows)
    assert result.command.startswith("python -m benchmarks") and result.notes
    text = markdown(result)
    assert text.count("\n|") >= len(result.rows) + 1 and "nan" not in text.lower()


def test_feature_cache_counts_one_backbone_pass_per_training_image() -> None:
    result = BENCHMARKS["feature_cache"]("smoke")
    passes = dict(zip(result.column("features"), result.column("backbone passes / training image")))
    assert passes["cached, cold (extraction counted)"] == 1.0
    assert passes["cached, warm (a second run)"] == 0.0
    assert passes["re-extracted every epoch"] == 2.0  # the smoke scale trains 2 epochs


def test_params_table_matches_a_closed_formula() -> None:
    from moleflow.config import load_config
    from moleflow.continual.strategies import parameter_counts

    result = BENCHMARKS["params"]("smoke")
    for rank, dia, base, per_task, pct, *_ in result.rows:
        assert per_task == per_task_by_formula(32, 6, rank, dia), (rank, dia)
        assert math.isclose(pct, 100 * per_task / base)
    # the paper's configuration (D = 768, 6 blocks, rank 64, DIA 2): the README's 3,706,368 and 1,932,288 per task
    paper = parameter_counts(load_config(), 768)
    assert paper["per_task"] == per_task_by_formula(768, 6, 64, 2) == 3_706_368
    assert paper["per_task_without_dia"] == per_task_by_formula(768, 6, 64, 0) == 1_932_288


@pytest.mark.slow
def test_workflow_benchmark_plans_the_paper_grid() -> None:
    result = BENCHMARKS["workflow"]("smoke")
    assert result.rows[0][2] == 515  # the paper's run jobs


def test_cli_writes_the_results_file(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    assert main(["--only", "params", "--scale", "smoke", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Benchmarks") and "| torch |" in text and "## Parameters and memory per task" in text


def test_flop_count_of_a_depthwise_convolution_backward_is_per_group() -> None:
    """torch's formula counts a grouped convolution's weight gradient as dense; ours: each gradient = the forward."""
    import torch

    from benchmarks.common import count_flops

    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    forward = count_flops(lambda: conv(x))
    assert forward == 2 * 2 * 5 * 5 * 8 * 9  # batch x positions x channels x taps, a multiply-add = 2
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward  # forward + input and weight gradients


def test_reduced_schedule_rule_keeps_the_shortest_level_within_tolerance_of_the_reference() -> None:
    from benchmarks.select_reduced import choose

    # a longer level than the reference never becomes the reference, however high it scores
    assert choose({3: 0.790, 4: 0.8170, 6: 0.8225, 8: 0.841}) == (6, 6)  # 4 is more than 0.005 below: kept at 6
    assert choose({3: 0.790, 4: 0.8180, 6: 0.8225, 8: 0.841}) == (6, 4)  # 4 within 0.005
    assert choose({3: 0.830, 4: 0.8180, 6: 0.8225}) == (6, 3)  # a shorter level scoring higher qualifies
    assert choose({3: 0.80, 4: 0.81}, reference_epochs=6) == (4, 4)  # the reference level failed: the longest left


def test_a_mutation_record_knows_which_of_its_files_changed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import hashlib

    import benchmarks.mutation as mutation

    (tmp_path / "pkg").mkdir()
    for name, text in (("a.py", b"x = 1\n"), ("b.py", b"y = 2\n"), ("table.csv", b"v\n1\n")):
        (tmp_path / "pkg" / name).write_bytes(text)
    monkeypatch.setattr(mutation, "PARTS", {"p": (["pkg/*"], [])})
    monkeypatch.setattr(mutation, "ROOT", tmp_path)
    digests = mutation.sources_digests("p", tmp_path)
    assert digests == {f"pkg/{n}": hashlib.sha256((tmp_path / "pkg" / n).read_bytes()).hexdigest()
                       for n in ("a.py", "b.py", "table.csv")}  # fmt: skip
    rec = {"commit": "abc", "sources": dict(digests)}
    assert mutation.changed_files(rec, "p") == []
    (tmp_path / "pkg" / "b.py").write_bytes(b"y = 3\n")
    (tmp_path / "pkg" / "c.py").write_bytes(b"z = 0\n")
    assert mutation.changed_files(rec, "p") == ["pkg/b.py", "pkg/c.py"]  # an edit and a new module
    assert mutation.dotted("analysis/audit/__init__.py") == "analysis.audit"
    assert mutation.dotted("analysis/audit/designs.py") == "analysis.audit.designs"


def test_every_mutation_part_names_modules_and_judging_tests_that_exist() -> None:
    """A renamed module or test file would leave a part mutating nothing or judged by nothing, silently."""
    import glob

    import benchmarks.mutation as mutation

    root = mutation.ROOT
    for part, (modules, tests) in mutation.PARTS.items():
        for pattern in modules:
            assert glob.glob(pattern, root_dir=root), f"{part}: {pattern} matches no module"
        for entry in tests:
            path, _, test = entry.removeprefix("--deselect=").partition("::")
            assert (root / path).is_file(), f"{part}: {path} is not a test file"
            if test:
                assert f"def {test}(" in (root / path).read_text(), f"{part}: {entry} names no test"


def test_the_mutation_report_dates_a_module_run_whole_again_by_that_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json

    import benchmarks.mutation as mutation

    monkeypatch.setattr(mutation, "RECORDS", tmp_path)
    monkeypatch.setattr(mutation, "EQUIVALENT", tmp_path / "none.yaml")
    record = {
        "part": "p", "commit": "old", "date": "2026-01-01", "survivors": [],
        "modules": {"pkg/a.py": {"killed": 3, "not checked": 1}, "pkg/b.py": {"killed": 2, "survived": 2}},
        "run_whole": {"pkg/a.py": {"commit": "new", "date": "2026-02-02"}},
        "rejudged": {"commit": "new", "date": "2026-02-02", "mutants": 5},
    }  # fmt: skip
    (tmp_path / "p.json").write_text(json.dumps(record))
    lines = {line.split("|")[2].strip(): line for line in mutation.report().splitlines() if line.startswith("| p |")}
    assert lines["`pkg/a.py`"].endswith("| 3 | 3 | 100.0% | 0 | 1 | run whole at new, 2026-02-02 |")
    assert lines["`pkg/b.py`"].endswith(
        "| 2 | 4 | 50.0% | 0 | 0 | old, 2026-01-01; survivors re-judged at new, 2026-02-02 |"
    )
    assert "All parts: 5 of 7 judged mutants killed (71.4%)." in mutation.report()
