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


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Normal images of the same generator with another seed: held out from the run, as a threshold needs."""
    root = tmp_path_factory.mktemp("held") / "data"
    generate(root, seed=1, size=64, categories=["cap", "tile"], counts=SynthCounts(train=5, test_good=1, test_per_defect=1))
    return root


def _test_folders(data: Path, category: str) -> list[str]:
    return [str(p) for p in sorted((data / category / "test").iterdir()) if p.is_dir()]


def test_predicted_scores_reproduce_the_runs_routed_auroc(trained: tuple[Path, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Scored from the image files alone, every test image's score gives back the I-AUROC the run recorded."""
    from sklearn.metrics import roc_auc_score

    run, data = trained
    summary = json.loads((run / "summary.json").read_text())
    folders = _test_folders(data, "cap") + _test_folders(data, "tile")
    assert main(["predict", "--run", str(run), *folders, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    rows = _csv(tmp_path / "out" / "scores.csv")
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
    assert main(["predict", "--run", str(run), *_test_folders(data, "tile"), "--out", str(tmp_path / "out")]) == 0
    by_image = {row["image"]: row for row in _csv(tmp_path / "out" / "scores.csv")}
    restored = load_run(run)
    test = FeatureStore(restored.config, progress=False).get("tile", "test")
    root = Path(restored.config["dataset"]["root"])
    router = {name: buffer.numpy() for name, buffer in restored.learner.router.named_buffers()}
    for image, x in zip((str(root / s["image"]) for s in test.meta["samples"]), np.asarray(test.router, dtype=np.float64)):
        d = sorted((x - router[f"mean_{t}"]) @ router[f"precision_{t}"] @ (x - router[f"mean_{t}"]) for t in range(2))
        assert float(by_image[image]["routing_confidence"]) == pytest.approx(1 - d[0] / d[1], abs=2e-6), image
        nearest = int(np.argmin([(x - router[f"mean_{t}"]) @ router[f"precision_{t}"] @ (x - router[f"mean_{t}"])
                                 for t in range(2)]))
        assert int(by_image[image]["task"]) == nearest


def test_threshold_is_the_quantile_of_held_out_normal_scores_per_task(trained: tuple[Path, Path], held_out: Path,
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run, data = trained
    normal = held_out / "cap" / "train" / "good"
    # the normal images' own scores, as predict gives them
    assert main(["predict", "--run", str(run), str(normal), "--out", str(tmp_path / "n")]) == 0
    normal_rows = _csv(tmp_path / "n" / "scores.csv")
    images = _test_folders(data, "cap") + _test_folders(data, "tile")
    assert main(["predict", "--run", str(run), *images, "--out", str(tmp_path / "a"), "--normal", str(normal),
                 "--quantile", "0.5"]) == 0
    captured = capsys.readouterr()
    rows = _csv(tmp_path / "a" / "scores.csv")
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
        assert f"{len(rows) - len(decided)} of {len(rows)} images were routed to a task no --normal image" in captured.err


def test_a_fixed_threshold_and_task_by_name_or_index(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = trained
    images = _test_folders(data, "cap")
    assert main(["predict", "--run", str(run), *images, "--out", str(tmp_path / "b"), "--task", "tile",
                 "--threshold", "150"]) == 0
    assert main(["predict", "--run", str(run), *images, "--out", str(tmp_path / "c"), "--task", "1",
                 "--threshold", "150"]) == 0
    by_name, by_index = _csv(tmp_path / "b" / "scores.csv"), _csv(tmp_path / "c" / "scores.csv")
    assert by_name == by_index
    assert {row["category"] for row in by_name} == {"tile"} and {row["routing_confidence"] for row in by_name} == {""}
    assert {row["threshold"] for row in by_name} == {"150.000000"}
    assert [row["anomalous"] for row in by_name] == [str(float(row["score"]) > 150).lower() for row in by_name]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_threshold_is_refused(trained: tuple[Path, Path], tmp_path: Path, value: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    run, data = trained
    assert main(["predict", "--run", str(run), *_test_folders(data, "cap"), "--out", str(tmp_path / "o"),
                 f"--threshold={value}"]) == 2
    err = capsys.readouterr().err
    assert err == f"moleflow: error: --threshold must be a finite number, got {float(value)}\n"
    assert not (tmp_path / "o").exists()


def test_the_runs_training_images_are_refused_as_normal_images(trained: tuple[Path, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    run, data = trained
    normal = data / "cap" / "train" / "good"
    args = ["predict", "--run", str(run), *_test_folders(data, "cap"), "--out", str(tmp_path / "o"), "--normal", str(normal)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "4 of the 4 --normal images are the run's own training images" in err
    assert "--allow-training-normal" in err and not (tmp_path / "o").exists()
    assert main([*args, "--allow-training-normal"]) == 0  # proceeds, and says so
    assert "(proceeding: --allow-training-normal)" in capsys.readouterr().err


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
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["tasks"] == ["cap"] and summary["forgetting"]["image_auroc"]["fm"] is None
    assert last.startswith("ok: 1/1 tasks; mean routed I-AUROC ") and "; no forgetting with one task -> " in last
    assert f"I-AUROC {summary['mean']['routed']['image_auroc']:.3f}" in last


def _edit_config(run: Path, key: str, old: str, new: str) -> None:
    path = run / "config.yaml"
    text = path.read_text()
    assert f"{key}: {old}\n" in text
    path.write_text(text.replace(f"{key}: {old}\n", f"{key}: {new}\n", 1))


def _damage(run: Path, how: str) -> None:
    ckpt = run / "checkpoints"
    if how == "blocks":
        _edit_config(run, "coupling_blocks", "1", "2")
    elif how == "embed_dim":
        _edit_config(run, "embed_dim", "16", "8")
    elif how == "truncated checkpoint":
        data = (ckpt / "task_1.pt").read_bytes()
        (ckpt / "task_1.pt").write_bytes(data[: len(data) // 2])
    elif how == "missing checkpoint":
        (ckpt / "task_1.pt").unlink()
    elif how == "truncated progress":
        text = (ckpt / "progress.json").read_text()
        (ckpt / "progress.json").write_text(text[: len(text) // 2])
    elif how == "missing progress":
        (ckpt / "progress.json").unlink()


@pytest.mark.parametrize("how, message", [
    ("blocks", "config.yaml was changed after training (model.coupling_blocks differs from the configuration it was "
               "trained with)"),
    ("embed_dim", "config.yaml was changed after training (features.embed_dim differs"),
    ("truncated checkpoint", "checkpoints/task_1.pt is damaged (truncated or not a torch checkpoint)"),
    ("missing checkpoint", "checkpoints/task_1.pt is missing, though progress.json records 2 finished tasks"),
    ("truncated progress", "checkpoints/progress.json is damaged (the record of the finished tasks:"),
    ("missing progress", "checkpoints/progress.json is missing"),
])
def test_a_run_folder_that_breaks_its_own_record_is_refused_in_one_line(
        trained: tuple[Path, Path], tmp_path: Path, how: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An edited config scored a good image with random blocks (exit 0) before: now the folder is checked first."""
    run, data = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _damage(copy, how)
    assert main(["predict", "--run", str(copy), *_test_folders(data, "cap"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moleflow: error: --run: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("status", ["running", "failed", "interrupted"])
def test_an_unfinished_run_serves_its_finished_tasks_and_says_so(trained: tuple[Path, Path], tmp_path: Path, status: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run, data = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    progress = json.loads((copy / "checkpoints" / "progress.json").read_text())
    progress["completed"] = 1  # as the run was after its first task
    (copy / "checkpoints" / "progress.json").write_text(json.dumps(progress))
    (copy / "status.json").write_text(json.dumps({"status": status, "message": ""}))
    assert main(["predict", "--run", str(copy), *_test_folders(data, "tile"), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert err == f"note: run {copy} is {status}, with 1 of 2 tasks finished; images are routed among those only: cap\n"
    assert {row["category"] for row in _csv(tmp_path / "o" / "scores.csv")} == {"cap"}


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_out_that_cannot_be_a_folder_is_refused_before_any_work(trained: tuple[Path, Path], tmp_path: Path, where: str,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    import moleflow.continual.predict as predict

    run, data = trained
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "sub"
    monkeypatch.setattr(predict, "load_run", lambda *a: pytest.fail("the run was loaded before --out was checked"))
    assert main(["predict", "--run", str(run), *_test_folders(data, "cap"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"moleflow: error: --out: cannot write to {out} (") and err.count("\n") == 1


def test_a_reused_out_holds_only_the_new_results(trained: tuple[Path, Path], tmp_path: Path) -> None:
    run, data = trained
    out = tmp_path / "o"
    assert main(["predict", "--run", str(run), *_test_folders(data, "cap"), "--out", str(out)]) == 0
    assert len(list((out / "maps").glob("*.png"))) == 5
    assert main(["predict", "--run", str(run), str(data / "tile" / "test" / "good"), "--out", str(out)]) == 0
    rows = _csv(out / "scores.csv")
    names = sorted(f"{k:04d}_{Path(r['image']).stem}.png" for k, r in enumerate(rows))
    assert sorted(p.name for p in (out / "maps").glob("*.png")) == names == sorted(p.name for p in (out / "overlays").iterdir())
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
    assert main(["predict", "--run", str(run), *_test_folders(data, "cap"), "--out", str(tmp_path / "o"),
                 "--threshold=-1e9"]) == 0
    picture = np.asarray(Image.open(sorted((tmp_path / "o" / "overlays").glob("*.png"))[0]))
    # every pixel is above that threshold: the region is the whole image, its outline the image's border
    assert picture.shape == (256, 256, 3) and np.all(picture[-1, 100:200] == OUTLINE)
    assert not np.all(picture[100:150, 100:150] == OUTLINE)


def test_a_moved_dataset_is_said_instead_of_silently_skipping_the_checks(trained: tuple[Path, Path], tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run, data = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    text = (copy / "config.yaml").read_text()
    saved = __import__("yaml").safe_load(text)
    images = tmp_path / "images"
    shutil.copytree(data / "cap" / "test" / "good", images)
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    shutil.rmtree(data)
    try:
        assert main(["predict", "--run", str(copy), str(images), "--out", str(tmp_path / "o")]) == 0
        err = capsys.readouterr().err
        assert err == (f"note: the run's dataset is no longer at {saved['dataset']['root']}: the images' size and mode "
                       "could not be checked against its training images\n")
    finally:
        shutil.move(str(moved), str(data))


def test_a_full_disk_keeps_the_previous_outputs_and_says_where(trained: tuple[Path, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    import moleflow.continual.predict as predict

    run, data = trained
    out = tmp_path / "o"
    assert main(["predict", "--run", str(run), *_test_folders(data, "cap"), "--out", str(out)]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    calls = []

    def fill_up(*args):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return b"png"

    monkeypatch.setattr(predict, "grey_png", fill_up)
    assert main(["predict", "--run", str(run), *_test_folders(data, "tile"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"moleflow: error: no space left on the device of {out} (writing it failed; nothing half-written was kept)\n"
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before and not list(out.glob(".predict-*"))


def test_a_second_process_on_the_same_out_is_refused_naming_the_first(trained: tuple[Path, Path], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from moleflow.lock import folder_lock

    run, data = trained
    out = tmp_path / "o"
    out.mkdir()
    with folder_lock(out, "--out"):  # another holder: the kernel's lock is per open file, so this process counts
        assert main(["predict", "--run", str(run), *_test_folders(data, "cap"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"moleflow: error: --out {out} is in use by process {os.getpid()} on ") and err.count("\n") == 1
    assert main(["predict", "--run", str(run), *_test_folders(data, "cap"), "--out", str(out)]) == 0  # released
