"""The main command's breakdown (benchmarks/breakdown.py): the repeated task-0 training it reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.breakdown import repeated_task0


def _run(results: Path, run_id: str, fingerprints: dict | None, losses: list, seconds: list[float]) -> None:
    folder = results / "runs" / run_id
    folder.mkdir(parents=True)
    per_task = [] if fingerprints is None else [{"fingerprints": fingerprints, "epoch_losses": losses}]
    summary = {"per_task": per_task, "timings": {"training_per_task": seconds}}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_repeated_task0_counts_all_but_one_run_of_each_identical_prefix_at_the_groups_mean(tmp_path: Path) -> None:
    same = {"base": "aa", "tasks": ["b0"]}
    _run(tmp_path, "r1", same, [3.0, 2.0], [4.0, 9.0])
    _run(tmp_path, "r2", same, [3.0, 2.0], [6.0, 1.0])
    _run(tmp_path, "r3", same, [3.0, 2.0], [5.0])
    # the same tensors after other losses, other tensors after the same losses: other prefixes
    _run(tmp_path, "r4", same, [3.0, 2.5], [7.0])
    _run(tmp_path, "r5", {"base": "ab", "tasks": ["b0"]}, [3.0, 2.0], [8.0])
    # a pair of its own, and runs that train no flow (no fingerprints; nothing trained)
    _run(tmp_path, "r6", {"base": "cc", "tasks": ["d0"]}, [1.0], [2.0, 2.0])
    _run(tmp_path, "r7", {"base": "cc", "tasks": ["d0"]}, [1.0], [4.0])
    _run(tmp_path, "k1", None, [], [0.1])
    _run(tmp_path, "k2", None, [], [0.1])
    _run(tmp_path, "z1", {"base": "", "tasks": []}, [], [0.0])
    _run(tmp_path, "z2", {"base": "", "tasks": []}, [], [0.0])
    runs, seconds = repeated_task0(tmp_path)
    assert runs == 2 + 1
    assert seconds == pytest.approx(2 * 5.0 + 1 * 3.0)


def test_repeated_task0_is_nothing_without_repeats(tmp_path: Path) -> None:
    _run(tmp_path, "r1", {"base": "aa"}, [1.0], [4.0])
    _run(tmp_path, "r2", {"base": "ab"}, [1.0], [4.0])
    assert repeated_task0(tmp_path) == (0, 0.0)
