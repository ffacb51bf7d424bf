"""``moleflow predict``: new images scored with a trained run equal the run's own evaluation of them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests_helpers import category_test_folders, csv_rows, finished_run, run_args

from moleflow.cli import main
from moleflow.data.synth import SynthCounts, generate


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return finished_run(tmp_path_factory.mktemp("predict"))


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Normal images of the same generator with another seed: held out from the run, as a threshold needs."""
    root = tmp_path_factory.mktemp("held") / "data"
    generate(
        root, seed=1, size=64, categories=["cap", "tile"], counts=SynthCounts(train=5, test_good=1, test_per_defect=1)
    )
    return root


def test_predicted_scores_reproduce_the_runs_routed_auroc(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scored from the image files alone, every test image's score gives back the I-AUROC the run recorded."""
    from sklearn.metrics import roc_auc_score

    run, data = trained
    summary = json.loads((run / "summary.json").read_text())
    folders = category_test_folders(data, "cap") + category_test_folders(data, "tile")
    assert main(["predict", "--run", str(run), *folders, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    rows = csv_rows(tmp_path / "out" / "scores.csv")
    assert out.startswith(f"scored {len(rows)} images ({len(rows)} backbone passes)")
    assert len(rows) == sum(len(list(Path(f).glob("*.png"))) for f in folders) > 0
    for category in ("cap", "tile"):
        mine = [r for r in rows if Path(r["image"]).parts[-4] == category]
        labels = [int(Path(r["image"]).parent.name != "good") for r in mine]
        auroc = roc_auc_score(labels, [float(r["score"]) for r in mine])
        assert auroc == pytest.approx(summary["final"][category]["routed"]["image_auroc"], abs=1e-12), category
    assert all(row["category"] == summary["tasks"][int(row["task"])] for row in rows)
    assert all(row["threshold"] == "" and row["anomalous"] == "" for row in rows)  # no threshold asked for
    maps = sorted((tmp_path / "out" / "maps").glob("*.png"))
    overlays = sorted((tmp_path / "out" / "overlays").glob("*.png"))
    assert [p.name for p in maps] == [p.name for p in overlays] and len(maps) == len(rows)
    assert Image.open(maps[0]).size == (64, 64) and Image.open(maps[0]).mode == "L"
    assert Image.open(overlays[0]).size == (256, 256) and Image.open(overlays[0]).mode == "RGB"
    scale = json.loads((tmp_path / "out" / "maps" / "scale.json").read_text())
    assert scale["black"] < scale["white"]


def test_routing_confidence_is_one_minus_the_distance_ratio(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """``1 - d1 / d2`` from the squared Mahalanobis distances to the run's prototypes, computed here with numpy."""
    from moleflow.continual.predict import load_run
    from moleflow.features import FeatureStore

    run, data = trained
    assert (
        main(["predict", "--run", str(run), *category_test_folders(data, "tile"), "--out", str(tmp_path / "out")]) == 0
    )
    by_image = {row["image"]: row for row in csv_rows(tmp_path / "out" / "scores.csv")}
    restored = load_run(run)
    test = FeatureStore(restored.config, progress=False).get("tile", "test")
    root = Path(restored.config["dataset"]["root"])
    router = {name: buffer.numpy() for name, buffer in restored.learner.router.named_buffers()}
    for image, x in zip(
        (str(root / s["image"]) for s in test.meta["samples"]), np.asarray(test.router, dtype=np.float64)
    ):
        d = sorted((x - router[f"mean_{t}"]) @ router[f"precision_{t}"] @ (x - router[f"mean_{t}"]) for t in range(2))
        assert float(by_image[image]["routing_confidence"]) == pytest.approx(1 - d[0] / d[1], abs=2e-6), image
        nearest = int(
            np.argmin(
                [(x - router[f"mean_{t}"]) @ router[f"precision_{t}"] @ (x - router[f"mean_{t}"]) for t in range(2)]
            )
        )
        assert int(by_image[image]["task"]) == nearest


def test_threshold_is_the_quantile_of_held_out_normal_scores_per_task(
    trained: tuple[Path, Path], held_out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained
    normal = held_out / "cap" / "train" / "good"
    # the normal images' own scores, as predict gives them
    assert main(["predict", "--run", str(run), str(normal), "--out", str(tmp_path / "n")]) == 0
    normal_rows = csv_rows(tmp_path / "n" / "scores.csv")
    images = category_test_folders(data, "cap") + category_test_folders(data, "tile")
    assert (
        main(
            [
                "predict",
                "--run",
                str(run),
                *images,
                "--out",
                str(tmp_path / "a"),
                "--normal",
                str(normal),
                "--quantile",
                "0.5",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    rows = csv_rows(tmp_path / "a" / "scores.csv")
    record = json.loads((tmp_path / "a" / "threshold.json").read_text())
    assert "0.5 quantile" in record["how"] and str(normal) in record["how"]
    assert sorted(record["per_task"]) == sorted({r["category"] for r in normal_rows})
    for category in {r["category"] for r in normal_rows}:
        scores = [float(r["score"]) for r in normal_rows if r["category"] == category]
        expected = float(np.quantile(scores, 0.5))
        assert record["per_task"][category] == pytest.approx(expected, rel=1e-6)
    decided = [r for r in rows if r["threshold"]]
    assert decided and all(r["anomalous"] in ("true", "false") for r in decided)
    for row in rows:  # every row with a threshold carries the decision; the others none
        if row["threshold"]:
            assert row["anomalous"] == str(float(row["score"]) > float(row["threshold"])).lower()
        else:
            assert row["anomalous"] == "" and row["category"] not in record["per_task"]
    flagged = sum(r["anomalous"] == "true" for r in rows)
    assert f"{flagged} of {len(decided)} decided images above their threshold" in captured.out
    if len(decided) < len(rows):  # tile's images: no normal image was routed to tile
        assert (
            f"{len(rows) - len(decided)} of {len(rows)} images were routed to a task no --normal image" in captured.err
        )


def test_a_fixed_threshold_and_task_by_name_or_index(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = trained
    images = category_test_folders(data, "cap")
    assert (
        main(
            [
                "predict",
                "--run",
                str(run),
                *images,
                "--out",
                str(tmp_path / "b"),
                "--task",
                "tile",
                "--threshold",
                "150",
            ]
        )
        == 0
    )
    assert (
        main(["predict", "--run", str(run), *images, "--out", str(tmp_path / "c"), "--task", "1", "--threshold", "150"])
        == 0
    )
    by_name, by_index = csv_rows(tmp_path / "b" / "scores.csv"), csv_rows(tmp_path / "c" / "scores.csv")
    assert by_name == by_index
    assert {row["category"] for row in by_name} == {"tile"} and {row["routing_confidence"] for row in by_name} == {""}
    assert {row["threshold"] for row in by_name} == {"150.000000"}
    assert [row["anomalous"] for row in by_name] == [str(float(row["score"]) > 150).lower() for row in by_name]


def test_a_run_with_one_task_says_there_is_no_forgetting(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, data = trained
    one = tmp_path / "one"
    shutil.copytree(data, one, ignore=shutil.ignore_patterns("tile"))
    assert main(run_args(tmp_path / "run", one, tmp_path / "cache", "dataset.kind=folder")) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["tasks"] == ["cap"] and summary["forgetting"]["image_auroc"]["fm"] is None
    assert last.startswith("ok: 1/1 tasks; mean routed I-AUROC ") and "; no forgetting with one task -> " in last
    assert f"I-AUROC {summary['mean']['routed']['image_auroc']:.3f}" in last


def test_a_reused_out_holds_only_the_new_results(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = trained
    out = tmp_path / "o"
    assert main(["predict", "--run", str(run), *category_test_folders(data, "cap"), "--out", str(out)]) == 0
    assert len(list((out / "maps").glob("*.png"))) == 5
    assert main(["predict", "--run", str(run), str(data / "tile" / "test" / "good"), "--out", str(out)]) == 0
    rows = csv_rows(out / "scores.csv")
    names = sorted(f"{k:04d}_{Path(r['image']).stem}.png" for k, r in enumerate(rows))
    assert (
        sorted(p.name for p in (out / "maps").glob("*.png"))
        == names
        == sorted(p.name for p in (out / "overlays").iterdir())
    )
    assert not list(out.glob(".predict-*"))


def test_overlays_outline_the_region_above_the_threshold(trained: tuple[Path, Path], tmp_path: Path) -> None:
    from moleflow.continual.overlays import OUTLINE, overlay_png, region_edge

    mask = np.zeros((6, 6), dtype=bool)
    mask[1:4, 2:5] = True
    edge = region_edge(mask)
    assert edge.sum() == 8 and not edge[2, 3] and edge[1, 2] and not edge[~mask].any()  # the ring, not the inside
    image = np.full((64, 64, 3), 100, dtype=np.uint8)
    amap = np.zeros((64, 64))
    amap[20:40, 20:40] = 5.0
    with_line = np.asarray(Image.open(__import__("io").BytesIO(overlay_png(image, amap, 0.0, 5.0, "x", threshold=2.0))))
    without = np.asarray(Image.open(__import__("io").BytesIO(overlay_png(image, amap, 0.0, 5.0, "x"))))
    white = np.all(with_line == OUTLINE, axis=-1) & ~np.all(without == OUTLINE, axis=-1)
    factor = with_line.shape[0] // 64
    rows, cols = np.nonzero(white)
    assert rows.min() // factor == 20 and rows.max() // factor == 39 and cols.min() // factor == 20
    run, data = trained  # and through predict: an image decided anomalous carries the outline
    assert (
        main(
            [
                "predict",
                "--run",
                str(run),
                *category_test_folders(data, "cap"),
                "--out",
                str(tmp_path / "o"),
                "--threshold=-1e9",
            ]
        )
        == 0
    )
    picture = np.asarray(Image.open(sorted((tmp_path / "o" / "overlays").glob("*.png"))[0]))
    # every pixel is above that threshold: the region is the whole image, its outline the image's border
    assert picture.shape == (256, 256, 3) and np.all(picture[-1, 100:200] == OUTLINE)
    assert not np.all(picture[100:150, 100:150] == OUTLINE)
