"""Strategies live in one place: the registry agrees with the schema, no module outside the strategies package
compares a strategy's name, and the contributing page's example strategy works as one new module."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest
from tests_helpers import tiny

from moleflow.config import schema
from moleflow.continual import run
from moleflow.continual.strategies import REGISTRY, STRATEGIES, memory_per_task, strategy_named

ROOT = Path(__file__).resolve().parents[1]
STRATEGY_PACKAGE = ROOT / "moleflow" / "continual" / "strategies"


def _schema_enum() -> list[str]:
    return list(schema()["properties"]["strategy"]["properties"]["name"]["enum"])


def test_the_registry_is_the_schema_enum() -> None:
    assert sorted(_schema_enum()) == sorted(STRATEGIES) == sorted(REGISTRY)
    for name in STRATEGIES:  # each name builds its own class, which carries that name
        assert strategy_named(name).name == name
    with pytest.raises(KeyError, match="'nope' is not a strategy"):
        strategy_named("nope")


def _constants(node: ast.AST) -> list[str]:
    """String constants of a comparison operand, including those inside a tuple, list or set."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return [c for element in node.elts for c in _constants(element)]
    return []


def name_comparisons(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of every comparison (``==``, ``!=``, ``in``, ``not in``) of something that mentions a
    strategy (``learner.strategy``, ``config["strategy"]["name"]``, a variable ``strategy``) with a strategy's
    name as a literal. (``model.subnet == "joint"`` compares another key's value that happens to read the same.)"""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any("strategy" in ast.unparse(o) for o in operands):
                for operand in operands:
                    found += [(node.lineno, c) for c in _constants(operand) if c in STRATEGIES]
    return found


def _package_sources() -> list[Path]:
    files = [*ROOT.glob("moleflow/**/*.py"), *ROOT.glob("analysis/**/*.py"), *ROOT.glob("workflow/**/*.py")]
    return [f for f in files if STRATEGY_PACKAGE not in f.parents]


def test_the_name_scanner_finds_a_planted_comparison() -> None:
    planted = (
        'if learner.strategy.name == "knn" or strategy in ("a", "joint") or "ewc" != cfg["strategy"]["name"]:\n'
        "    pass\n"
    )
    assert name_comparisons(planted) == [(1, "knn"), (1, "joint"), (1, "ewc")]
    unrelated = 'GROUP_ORDER = ("ours", "joint")\nif x == "other" or m["subnet"] == "joint":\n    pass\n'
    assert name_comparisons(unrelated) == []


def test_no_module_outside_the_strategies_compares_a_strategy_name() -> None:
    sources = _package_sources()
    assert len(sources) > 100  # the scan reads the package, the analysis and the workflow's helpers
    offenders = [
        f"{path.relative_to(ROOT)}:{line} compares {name!r}"
        for path in sources
        for line, name in name_comparisons(path.read_text())
    ]
    snakefile = (ROOT / "Snakefile").read_text()
    offenders += [
        f"Snakefile compares {m}" for m in re.findall(r"[=!]=\s*[\"'](\w+)[\"']", snakefile) if m in STRATEGIES
    ]
    assert offenders == []


def _example_module() -> str:
    """The example strategy's code block on the contributing page."""
    text = (ROOT / "docs" / "contributing.md").read_text()
    block = text.split("<!-- example-strategy -->", 1)[1]
    code = block.split("```python", 1)[1].split("```", 1)[0]
    return textwrap.dedent(code)


def test_the_contributing_example_strategy_is_one_module_and_one_registration(
    dataset: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moleflow.continual.train as train

    namespace: dict = {"__name__": "moleflow.continual.strategies.replay_last"}
    exec(compile(_example_module(), "replay_last.py", "exec"), namespace)  # the new module
    try:
        assert REGISTRY["replay_last"] is namespace["ReplayLast"]  # defining it registered it
        enum = schema()["properties"]["strategy"]["properties"]["name"]
        monkeypatch.setitem(enum, "enum", [*enum["enum"], "replay_last"])  # the one registration
        replayed: dict[int, set[int]] = {}
        training = [-1]
        real_objective, real_train = train._objective, train.train_task

        def traced_train(learner, task, *args, **kwargs):
            training[0] = task
            return real_train(learner, task, *args, **kwargs)

        def traced_objective(learner, task, *args, **kwargs):
            replayed.setdefault(training[0], set()).add(task)
            return real_objective(learner, task, *args, **kwargs)

        import moleflow.continual.experiment as experiment

        monkeypatch.setattr(experiment, "train_task", traced_train)
        monkeypatch.setattr(train, "_objective", traced_objective)
        config = tiny(dataset, cache, "strategy.name=replay_last", "strategy.replay_images=2")
        summary = run(config, tmp_path / "replay_last", progress=False, log=lambda *a: None)
        assert summary["status"] == "ok" and summary["strategy"] == "replay_last" and len(summary["final"]) == 3
        # task 2 rehearses task 1 only (Replay would rehearse tasks 0 and 1)
        assert replayed == {0: {0}, 1: {0, 1}, 2: {1, 2}}
        memory = memory_per_task(config, 16, 256, train_images=8)
        replay = memory_per_task({**config, "strategy": {**config["strategy"], "name": "replay"}}, 16, 256, 8)
        buffer = 2.0 * 2 * 256 * 16  # two float16 maps of 256 16-d patches
        assert replay["bytes_per_task"] - memory["bytes_per_task"] == buffer
        assert (memory["fixed_bytes"], replay["fixed_bytes"]) == (buffer, 0.0)
    finally:
        REGISTRY.pop("replay_last", None)
