"""``moleflow predict``: new images scored with a trained run equal the run's own evaluation of them."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moleflow.cli import main
from moleflow.data.synth import SynthCounts, generate

SETS = ["features.resize=64", "features.input_size=64", "features.embed_dim=16", "model.coupling_blocks=1",
        "model.lora_rank=2", "training.epochs=1", "evaluation.sample_images=0", "device=cpu"]


def _run_args(out: Path, root: Path, cache: Path, *extra: str) -> list[str]:
    sets = [f"dataset.root={root}", f"features.cache_dir={cache}", *SETS, *extra]
    return ["run", "--profile", "cpu", "--out", str(out), "--quiet", *[a for s in sets for a in ("--set", s)]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("predict")
    data = root / "data"
    generate(data, seed=0, size=64, categories=["cap", "tile"], counts=SynthCounts(train=4, test_good=2, test_per_defect=1))
    assert main(_run_args(root / "run", data, root / "cache")) == 0
    return root / "run", data


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_scores_equal_the_runs_own_evaluation(trained: tuple[Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from moleflow.continual.evaluate import score_rows
    from moleflow.continual.predict import load_run
    from moleflow.continual.settings import ScoreSettings
    from moleflow.features import FeatureStore

    run, data = trained
    folders = sorted(p for p in (data / "tile" / "test").iterdir() if p.is_dir())
    assert main(["predict", "--run", str(run), *map(str, folders), "--out", str(tmp_path / "out")]) == 0
    assert "scored" in capsys.readouterr().out
    rows = _csv(tmp_path / "out" / "scores.csv")
    # what the run's evaluation computes for the same images: the cached test features under the restored learner
    restored = load_run(run)
    test = FeatureStore(restored.config, progress=False).get("tile", "test")
    root = Path(restored.config["dataset"]["root"])
    images = [str(root / s) for s in (sample["image"] for sample in test.meta["samples"])]
    task = restored.categories.index("tile")
    expected = score_rows(restored.learner, task, test.patches, np.arange(len(images)), ScoreSettings.from_config(restored.config),
                          restored.device)
    by_image = {row["image"]: row for row in rows}
    assert sorted(by_image) == sorted(images)
    got = np.array([float(by_image[i]["score"]) for i in images])
    np.testing.assert_allclose(got, expected.image, rtol=1e-5, atol=1e-6)
    routed = restored.learner.router(__import__("torch").from_numpy(np.asarray(test.router))).numpy()
    assert [int(by_image[i]["task"]) for i in images] == list(routed)
    assert all(row["category"] == restored.categories[int(row["task"])] for row in rows)
    assert all(0.0 <= float(row["routing_confidence"]) <= 1.0 for row in rows)
    assert all(row["threshold"] == "" and row["anomalous"] == "" for row in rows)  # no threshold asked for
    maps = sorted((tmp_path / "out" / "maps").glob("*.png"))
    assert len(maps) == len(rows) and Image.open(maps[0]).size == (64, 64)
    assert json.loads((tmp_path / "out" / "maps" / "scale.json").read_text())["white"] > 0


def test_threshold_from_normal_images_and_a_fixed_task(trained: tuple[Path, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    run, data = trained
    normal = data / "cap" / "train" / "good"
    assert main(["predict", "--run", str(run), str(data / "cap" / "test" / "good"), "--out", str(tmp_path / "a"),
                 "--normal", str(normal), "--quantile", "1.0"]) == 0
    assert "above their threshold" in capsys.readouterr().out
    rows = _csv(tmp_path / "a" / "scores.csv")
    how = json.loads((tmp_path / "a" / "threshold.json").read_text())
    assert "normal images" in how["how"] and str(normal) in how["how"]
    for row in rows:
        if row["threshold"]:
            assert row["anomalous"] == str(float(row["score"]) > float(row["threshold"])).lower()
    assert main(["predict", "--run", str(run), str(data / "cap" / "test" / "good"), "--out", str(tmp_path / "b"),
                 "--task", "tile", "--threshold", "0"]) == 0
    rows = _csv(tmp_path / "b" / "scores.csv")
    assert {row["category"] for row in rows} == {"tile"} and {row["routing_confidence"] for row in rows} == {""}
    assert {row["threshold"] for row in rows} == {"0.000000"}


@pytest.mark.parametrize("change, message", [("size", "size 48x48, but the run trained on 64x64"),
                                             ("mode", "mode RGBA, but the run trained on")])
def test_an_image_unlike_the_training_images_is_refused_in_one_line(trained: tuple[Path, Path], tmp_path: Path,
                                                                    change: str, message: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run, data = trained
    image = Image.open(sorted((data / "cap" / "test" / "good").glob("*.png"))[0])
    odd = tmp_path / "odd.png"
    (image.resize((48, 48)) if change == "size" else image.convert("RGBA")).save(odd)
    assert main(["predict", "--run", str(run), str(odd), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moleflow: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--task", "wood"], "--task wood: the run's tasks are 0 cap, 1 tile"),
    (["--threshold", "1", "--normal", "."], "give --threshold or --normal, not both"),
    (["--quantile", "0"], "--quantile must lie in (0, 1]"),
])
def test_bad_predict_arguments_are_one_line(trained: tuple[Path, Path], tmp_path: Path, args: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    run, data = trained
    assert main(["predict", "--run", str(run), str(data / "cap" / "test" / "good"), "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moleflow: error: ") and message in err and err.count("\n") == 1, err


def test_a_run_with_one_task_says_there_is_no_forgetting(trained: tuple[Path, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, data = trained
    one = tmp_path / "one"
    shutil.copytree(data, one, ignore=shutil.ignore_patterns("tile"))
    assert main(_run_args(tmp_path / "run", one, tmp_path / "cache", "dataset.kind=folder")) == 0
    assert "no forgetting with one task" in capsys.readouterr().out
