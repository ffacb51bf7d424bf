"""``moleflow run-many``: several runs in one process give each run exactly what it gives alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moleflow.cli import main
from moleflow.config import load_config, load_profile
from moleflow.data.synth import SynthCounts, generate

COMPARED = (
    "status",
    "final",
    "accuracy_matrix",
    "accuracy_matrix_oracle",
    "forgetting",
    "routing_confusion",
    "per_task",
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(
        root, seed=0, size=64, categories=["cap", "tile"], counts=SynthCounts(train=4, test_good=2, test_per_defect=1)
    )
    return root


def _config(root: Path, cache: Path, *extra: str) -> dict:
    sets = [
        f"dataset.root={root}",
        f"features.cache_dir={cache}",
        "features.resize=64",
        "features.input_size=64",
        "features.embed_dim=16",
        "model.coupling_blocks=1",
        "model.lora_rank=2",
        "training.epochs=2",
        "evaluation.sample_images=0",
        "device=cpu",
        *extra,
    ]
    return load_config(None, sets, base=load_profile("cpu"))


def test_runs_in_one_process_equal_each_run_alone(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    configs = {
        str(tmp_path / "many" / "a"): _config(dataset, cache),
        str(tmp_path / "many" / "b"): _config(dataset, cache, "training.tail_weight=0.0", "seed=1"),
    }
    assert main(["run-many", "--runs-json", json.dumps(configs), "--quiet", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "[1/2 a] ok: 2/2 tasks" in out and "[2/2 b] ok: 2/2 tasks" in out
    for k, (folder, config) in enumerate(configs.items()):
        alone = tmp_path / f"alone{k}"
        (tmp_path / f"alone{k}.json").write_text(json.dumps({str(alone): config}))
        assert main(["run-many", "--runs-json", f"@{tmp_path / f'alone{k}.json'}", "--quiet", "--threads", "1"]) == 0
        together = json.loads((Path(folder) / "summary.json").read_text())
        single = json.loads((alone / "summary.json").read_text())
        for key in COMPARED:
            assert together[key] == single[key], (folder, key)
    capsys.readouterr()
    # a second call finds both runs finished and trains nothing
    assert main(["run-many", "--runs-json", json.dumps(configs), "--quiet"]) == 0
    assert capsys.readouterr().out.count("already finished (ok)") == 2


def test_a_failing_run_does_not_stop_the_others(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    good = _config(dataset, cache)
    broken = _config(tmp_path / "nowhere", cache)  # no dataset there: refused when its features are read
    configs = {str(tmp_path / "broken"): broken, str(tmp_path / "good"): good}
    assert main(["run-many", "--runs-json", json.dumps(configs), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "[1/2 broken] failed: " in captured.out and "[2/2 good] ok: 2/2 tasks" in captured.out
    assert captured.err.startswith("moleflow: error: 1 of 2 runs failed") and captured.err.count("\n") == 1
    assert not (tmp_path / "broken").exists()  # refused for its input: nothing of it stays


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "--runs-json is not valid JSON"),
        ("[1, 2]", "--runs-json must be one JSON object"),
        ("@/nonexistent/runs.json", "--runs-json: cannot read /nonexistent/runs.json"),
    ],
)
def test_bad_runs_json_is_one_line(text: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run-many", "--runs-json", text]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"moleflow: error: {message}") and err.count("\n") == 1, err


def test_a_long_task_reports_progress_without_a_terminal(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under Snakemake stderr is no terminal and progress bars are off: lines say how far each task is."""
    configs = {str(tmp_path / "long"): _config(dataset, tmp_path / "cache", "training.epochs=10")}
    assert main(["run-many", "--runs-json", json.dumps(configs), "--quiet"]) == 0
    out = capsys.readouterr().out
    for task, category in ((0, "cap"), (1, "tile")):
        lines = [line for line in out.splitlines() if f"task {task} ({category}): epoch" in line]
        assert [line.split("epoch ")[1].split(",")[0] for line in lines] == ["2/10", "4/10", "6/10", "8/10"], out
        assert all("steps/s" in line and " s, " in line for line in lines)
    assert "trained in" in out and "steps/s)" in out
