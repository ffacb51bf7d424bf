"""Bad input found by trying the CLI as a new user would: each is refused in one line, before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import make_visa
from PIL import Image
from tests_helpers import RUN_SETS, one_line, run_args, two_task_synth

from moleflow.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_task_synth(tmp_path_factory.mktemp("synth"))


def test_a_mask_of_another_size_is_refused_by_a_run_as_by_data_check(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "copy"
    import shutil

    shutil.copytree(dataset, root)
    mask = sorted((root / "tile" / "ground_truth").glob("*/*.png"))[0]
    Image.open(mask).resize((48, 48)).save(mask)
    err = one_line(capsys, main(["data", "check", "--dataset", "mvtec", "--root", str(root)]))
    assert str(mask) in err and "differs from image size" in err
    err = one_line(capsys, main(run_args(tmp_path / "run", root, tmp_path / "cache")))
    assert str(mask) in err and "mask size 48x48 differs from image size 64x64" in err
    assert not (tmp_path / "run").exists()  # a new run refused for its input leaves no directory behind


def test_no_category_under_the_root_says_which_layout_it_looks_like(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    visa = make_visa(tmp_path / "visa", ["candle"])
    err = one_line(capsys, main(run_args(tmp_path / "run", visa, tmp_path / "cache", "dataset.kind=mvtec")))
    assert f"no category found under {visa} for dataset.kind=mvtec" in err and "set dataset.kind=visa" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = one_line(capsys, main(run_args(tmp_path / "run2", empty, tmp_path / "cache")))
    assert f"no category found under {empty}" in err and "looks like" not in err
    for command in (
        ["features", "extract", "--profile", "cpu", "--root", str(empty), "--quiet"],
        ["data", "check", "--dataset", "mvtec", "--root", str(empty)],
        ["data", "baseline", "--dataset", "mvtec", "--root", str(empty)],
    ):
        err = one_line(capsys, main(command))
        assert f"no category found under {empty}" in err, command


@pytest.mark.parametrize("case", ["under_a_file", "a_file", "proc"])
def test_an_unusable_out_is_refused_before_any_work(
    dataset: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = {"under_a_file": blocker / "run", "a_file": blocker, "proc": Path("/proc/moleflow-run")}[case]
    cache = tmp_path / "cache"
    err = one_line(capsys, main(run_args(out, dataset, cache)))
    assert f"--out: cannot write to {out}" in err
    assert not cache.exists()  # refused before any feature was extracted


def test_an_unusable_cache_dir_is_refused_before_any_work(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for cache in (blocker / "cache", Path("/proc/moleflow-cache")):
        err = one_line(capsys, main(run_args(tmp_path / "run", dataset, cache)))
        assert f"features.cache_dir: cannot write to {cache}" in err
        assert not (tmp_path / "run").exists()
        err = one_line(
            capsys,
            main(
                [
                    "features",
                    "extract",
                    "--profile",
                    "cpu",
                    "--root",
                    str(dataset),
                    "--set",
                    f"features.cache_dir={cache}",
                    "--quiet",
                ]
            ),
        )
        assert f"features.cache_dir: cannot write to {cache}" in err


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "inf"])
def test_every_number_must_be_finite(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line(capsys, main(["config", "show", "--profile", "cpu", "--set", f"training.lr={value}"]))
    assert "training.lr" in err


def test_where_the_cache_lives_is_not_part_of_a_run_and_a_refusal_names_the_keys(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(run_args(out, dataset, tmp_path / "cache_a")) == 0
    first = json.loads((out / "summary.json").read_text())
    assert json.loads((out / "status.json").read_text())["status"] == "ok"
    # the same run with the cache elsewhere (and another device spelling) is the same run: accepted
    capsys.readouterr()
    assert main(run_args(out, dataset, tmp_path / "cache_b", "device=auto")) == 0
    said = capsys.readouterr().out
    # accepted as the run already there: resumed after its last task, nothing trained again
    assert "resuming after task 1 (tile)" in said and "trained in" not in said
    again = json.loads((out / "summary.json").read_text())
    assert again["config_hash"] == first["config_hash"] and again["config"]["features"]["cache_dir"] == str(
        tmp_path / "cache_b"
    )
    assert again["accuracy_matrix"] == first["accuracy_matrix"]
    cache_c = tmp_path / "cache_c"
    err = one_line(capsys, main(run_args(out, dataset, cache_c, "training.epochs=2", "model.lora_rank=3")))
    assert "holds a run of another configuration (differing in model.lora_rank, training.epochs)" in err
    assert not cache_c.exists() or not any(cache_c.iterdir())  # refused before any feature was extracted
    assert yaml.safe_load((out / "config.yaml").read_text())["training"]["epochs"] == 1  # the record is kept


def test_a_jpeg_tree_read_as_mvtec_names_the_extensions(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MVTec AD as released is PNG; a JPEG copy read as `mvtec` says so and names the `folder` kind."""
    import shutil

    root = tmp_path / "jpeg"
    shutil.copytree(dataset, root)
    for png in (root / "cap" / "train" / "good").glob("*.png"):
        Image.open(png).convert("RGB").save(png.with_suffix(".jpg"))
        png.unlink()
    err = one_line(capsys, main(["data", "check", "--dataset", "mvtec", "--root", str(root), "--categories", "cap"]))
    assert "holds 4 .jpg image(s), but this layout reads only .png" in err and "'folder' reads any of" in err
    err = one_line(capsys, main(run_args(tmp_path / "run", root, tmp_path / "cache", "dataset.categories=[cap]")))
    assert "holds 4 .jpg image(s)" in err and not (tmp_path / "run").exists()


def test_a_refused_run_leaves_an_existing_run_directory_alone(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only a directory the refused run created itself is removed: a finished run's folder stays, marked failed."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    out = tmp_path / "run"
    assert main(run_args(out, copy, tmp_path / "cache")) == 0
    shutil.rmtree(copy / "tile")  # the same run again, its dataset gone
    capsys.readouterr()
    err = one_line(capsys, main(run_args(out, copy, tmp_path / "cache")))
    assert str(copy) in err
    assert (out / "summary.json").is_file() and (out / "checkpoints" / "progress.json").is_file()
    assert json.loads((out / "status.json").read_text())["status"] == "failed"


def test_every_timing_is_inside_timings(dataset: Path, tmp_path: Path) -> None:
    assert main(run_args(tmp_path / "run", dataset, tmp_path / "cache")) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert all("seconds" not in key for task in summary["per_task"] for key in task)
    assert len(summary["timings"]["training_per_task"]) == 2
    assert summary["timings"]["training"] == pytest.approx(sum(summary["timings"]["training_per_task"]))


def test_a_list_without_brackets_is_refused_with_the_right_spelling(capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line(capsys, main(["config", "show", "--profile", "cpu", "--set", "dataset.categories=cap,pcb"]))
    assert "config key dataset.categories" in err and "write a list in brackets: dataset.categories=[cap,pcb]" in err
    assert main(["config", "show", "--profile", "cpu", "--set", "dataset.categories=[cap,pcb]"]) == 0
    assert "- cap\n  - pcb" in capsys.readouterr().out


def test_version_and_the_run_shortcuts(dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from moleflow import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"moleflow {__version__}"
    sets = [f"features.cache_dir={tmp_path / 'cache'}", *RUN_SETS]
    assert (
        main(
            [
                "run",
                "--profile",
                "cpu",
                "--dataset",
                "folder",
                "--root",
                str(dataset),
                "--out",
                str(tmp_path / "run"),
                "--quiet",
                *[a for s in sets for a in ("--set", s)],
            ]
        )
        == 0
    )
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["dataset"]["kind"] == "folder" and config["dataset"]["root"] == str(dataset)


def test_every_option_of_every_command_has_help() -> None:
    import argparse

    from moleflow.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "moleflow")
    assert not missing, missing
