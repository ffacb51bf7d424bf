"""What predict refuses, each in one line, and what it keeps: bad thresholds and arguments, the run's own training images as normal images, images unlike the training ones, a run folder that breaks its own record, an unusable --out, a full disk, a second process; an unfinished run serves its finished tasks and a moved dataset is said."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image
from tests_helpers import category_test_folders, csv_rows, finished_run

from moleflow.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return finished_run(tmp_path_factory.mktemp("predict"))


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_threshold_is_refused(
    trained: tuple[Path, Path], tmp_path: Path, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained
    assert (
        main(
            [
                "predict",
                "--run",
                str(run),
                *category_test_folders(data, "cap"),
                "--out",
                str(tmp_path / "o"),
                f"--threshold={value}",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err == f"moleflow: error: --threshold must be a finite number, got {float(value)}\n"
    assert not (tmp_path / "o").exists()


def test_the_runs_training_images_are_refused_as_normal_images(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained
    normal = data / "cap" / "train" / "good"
    args = [
        "predict",
        "--run",
        str(run),
        *category_test_folders(data, "cap"),
        "--out",
        str(tmp_path / "o"),
        "--normal",
        str(normal),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "4 of the 4 --normal images are the run's own training images" in err
    assert "--allow-training-normal" in err and not (tmp_path / "o").exists()
    assert main([*args, "--allow-training-normal"]) == 0  # proceeds, and says so
    assert "(proceeding: --allow-training-normal)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [("size", "size 48x48, but the run trained on 64x64"), ("mode", "mode RGBA, but the run trained on")],
)
def test_an_image_unlike_the_training_images_is_refused_in_one_line(
    trained: tuple[Path, Path], tmp_path: Path, change: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained
    image = Image.open(sorted((data / "cap" / "test" / "good").glob("*.png"))[0])
    odd = tmp_path / "odd.png"
    (image.resize((48, 48)) if change == "size" else image.convert("RGBA")).save(odd)
    assert main(["predict", "--run", str(run), str(odd), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moleflow: error: ") and err.count("\n") == 1 and message in err, err
    assert "--match-training resizes and converts them" in err and not (tmp_path / "out").exists()


def test_match_training_scores_another_cameras_image_as_training_did(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--match-training accepts an image of another mode and size, says so, and scores it as the training transform
    sees it: an RGBA copy of a test image scores exactly as the image itself; a 48x48 copy is scored too."""
    run, data = trained
    original = sorted((data / "cap" / "test" / "good").glob("*.png"))[0]
    image = Image.open(original)
    image.convert("RGBA").save(tmp_path / "rgba.png")
    image.resize((48, 48)).save(tmp_path / "small.png")
    shutil.copy(original, tmp_path / "same.png")
    args = ["predict", "--run", str(run), "--task", "cap", "--out", str(tmp_path / "out"), "--match-training"]
    assert (
        main(
            [*args[:3], str(tmp_path / "same.png"), str(tmp_path / "rgba.png"), str(tmp_path / "small.png"), *args[3:]]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert "--match-training: 2 of 3 images differ in size or mode" in err, err
    scores = {Path(row["image"]).name: float(row["score"]) for row in csv_rows(tmp_path / "out" / "scores.csv")}
    assert scores["rgba.png"] == scores["same.png"] and len(scores) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "wood"], "--task wood: the run's tasks are 0 cap, 1 tile"),
        (["--threshold", "1", "--normal", "."], "give --threshold or --normal, not both"),
        (["--quantile", "0"], "--quantile must lie in (0, 1]"),
    ],
)
def test_bad_predict_arguments_are_one_line(
    trained: tuple[Path, Path], tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained
    assert (
        main(["predict", "--run", str(run), str(data / "cap" / "test" / "good"), "--out", str(tmp_path / "o"), *args])
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("moleflow: error: ") and message in err and err.count("\n") == 1, err


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


@pytest.mark.parametrize(
    "how, message",
    [
        (
            "blocks",
            "config.yaml was changed after training (model.coupling_blocks differs from the configuration it was "
            "trained with)",
        ),
        ("embed_dim", "config.yaml was changed after training (features.embed_dim differs"),
        ("truncated checkpoint", "checkpoints/task_1.pt is damaged (truncated or not a torch checkpoint)"),
        ("missing checkpoint", "checkpoints/task_1.pt is missing, though progress.json records 2 finished tasks"),
        ("truncated progress", "checkpoints/progress.json is damaged (the record of the finished tasks:"),
        ("missing progress", "checkpoints/progress.json is missing"),
    ],
)
def test_a_run_folder_that_breaks_its_own_record_is_refused_in_one_line(
    trained: tuple[Path, Path], tmp_path: Path, how: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An edited config scored a good image with random blocks (exit 0) before: now the folder is checked first."""
    run, data = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _damage(copy, how)
    assert main(["predict", "--run", str(copy), *category_test_folders(data, "cap"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moleflow: error: --run: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("status", ["running", "failed", "interrupted"])
def test_an_unfinished_run_serves_its_finished_tasks_and_says_so(
    trained: tuple[Path, Path], tmp_path: Path, status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    progress = json.loads((copy / "checkpoints" / "progress.json").read_text())
    progress["completed"] = 1  # as the run was after its first task
    (copy / "checkpoints" / "progress.json").write_text(json.dumps(progress))
    (copy / "status.json").write_text(json.dumps({"status": status, "message": ""}))
    assert (
        main(["predict", "--run", str(copy), *category_test_folders(data, "tile"), "--out", str(tmp_path / "o")]) == 0
    )
    err = capsys.readouterr().err
    assert err == f"note: run {copy} is {status}, with 1 of 2 tasks finished; images are routed among those only: cap\n"
    assert {row["category"] for row in csv_rows(tmp_path / "o" / "scores.csv")} == {"cap"}


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_out_that_cannot_be_a_folder_is_refused_before_any_work(
    trained: tuple[Path, Path],
    tmp_path: Path,
    where: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import moleflow.continual.predict as predict

    run, data = trained
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "sub"
    monkeypatch.setattr(predict, "load_run", lambda *a: pytest.fail("the run was loaded before --out was checked"))
    assert main(["predict", "--run", str(run), *category_test_folders(data, "cap"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"moleflow: error: --out: cannot write to {out} (") and err.count("\n") == 1


def test_a_moved_dataset_is_said_instead_of_silently_skipping_the_checks(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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
        assert err == (
            f"note: the run's dataset is no longer at {saved['dataset']['root']}: the images' size and mode "
            "could not be checked against its training images\n"
        )
    finally:
        shutil.move(str(moved), str(data))


def test_a_full_disk_keeps_the_previous_outputs_and_says_where(
    trained: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    import moleflow.continual.predict as predict

    run, data = trained
    out = tmp_path / "o"
    assert main(["predict", "--run", str(run), *category_test_folders(data, "cap"), "--out", str(out)]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    calls = []

    def fill_up(*args):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return b"png"

    monkeypatch.setattr(predict, "grey_png", fill_up)
    assert main(["predict", "--run", str(run), *category_test_folders(data, "tile"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"moleflow: error: no space left on the device of {out} (writing it failed; nothing half-written was kept)\n"
    )
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before and not list(out.glob(".predict-*"))


def test_a_second_process_on_the_same_out_is_refused_naming_the_first(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from moleflow.lock import folder_lock

    run, data = trained
    out = tmp_path / "o"
    out.mkdir()
    with folder_lock(out, "--out"):  # another holder: the kernel's lock is per open file, so this process counts
        assert main(["predict", "--run", str(run), *category_test_folders(data, "cap"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"moleflow: error: --out {out} is in use by process {os.getpid()} on ") and err.count("\n") == 1
    )
    assert main(["predict", "--run", str(run), *category_test_folders(data, "cap"), "--out", str(out)]) == 0  # released
