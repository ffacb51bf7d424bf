"""Probes that once ended in a traceback, or did something other than the docs say: each now a one-line error
naming the file, key or option, raised before the expensive work; SIGTERM handled as Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch
from tests_helpers import finished_run, one_line, run_args, synth, two_task_synth

from moleflow.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "config.yaml"


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width x height`` (RGB) with one empty data chunk: PIL opens it lazily and reads
    the size, so a decompression bomb costs the test nothing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return finished_run(tmp_path_factory.mktemp("inputs"))


# ------------------------------------------------------------------------------------------------ datasets
def test_a_category_with_one_training_image_is_refused_by_data_check_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = synth(tmp_path / "data", ["cap"], train=1, test_good=1, per_defect=1)
    err = one_line(capsys, main(["data", "check", "--dataset", "mvtec", "--root", str(data)]))
    assert "1 training image in category cap" in err and "needs at least 2" in err
    err = one_line(capsys, main(run_args(tmp_path / "run", data, tmp_path / "cache")))
    assert "1 training image in category cap" in err
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))  # before any feature


@pytest.mark.parametrize("where", ["data check", "run", "predict"])
def test_a_decompression_bomb_is_refused_in_one_line(
    where: str, trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if where == "predict":
        run, _ = trained
        bomb = _png_header(tmp_path / "bomb.png", 20000, 20000)
        err = one_line(capsys, main(["predict", "--run", str(run), str(bomb), "--out", str(tmp_path / "o")]))
    else:
        data = two_task_synth(tmp_path / "data")
        bomb = _png_header(data / "cap" / "train" / "good" / "000.png", 20000, 20000)
        args = (
            ["data", "check", "--dataset", "mvtec", "--root", str(data)]
            if where == "data check"
            else run_args(tmp_path / "run", data, tmp_path / "cache")
        )
        err = one_line(capsys, main(args))
    assert f"image too large: {bomb}" in err and "megapixels" in err


def test_an_image_above_the_stated_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    from moleflow.data.transforms import MAX_IMAGE_PIXELS, open_image
    from moleflow.errors import DatasetError

    big = _png_header(tmp_path / "big.png", 8000, 8000)  # under PIL's own bomb limit, above ours
    assert 8000 * 8000 > MAX_IMAGE_PIXELS
    with pytest.raises(DatasetError, match="8000x8000 \\(64 megapixels\\); images above 40 megapixels"):
        open_image(big)


def test_synth_into_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "afile"
    target.write_text("x")
    err = one_line(capsys, main(["synth", str(target)]))
    assert f"synth output folder: cannot write to {target}" in err
    err = one_line(capsys, main(["synth", str(target / "under")]))
    assert "synth output folder: cannot write to" in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_synth_into_a_read_only_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert "cannot write to" in one_line(capsys, main(["synth", str(folder)]))
    finally:
        folder.chmod(0o755)


# ------------------------------------------------------------------------------------------------ plan
def test_the_smoke_report_under_a_file_is_refused_before_any_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    start = time.perf_counter()
    err = one_line(capsys, main(["plan", str(CONFIG), "--smoke", "--json", str(blocker / "report.json")]))
    assert "--json: cannot write to" in err and time.perf_counter() - start < 30  # no group was checked
    err = one_line(capsys, main(["plan", str(CONFIG), "--smoke", "--json", str(tmp_path)]))
    assert f"--json: {tmp_path} is a folder, not a file" in err


@pytest.mark.parametrize("device", ["bogus", "cuda"])
def test_a_device_that_is_not_there_is_refused_before_any_check(
    device: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    err = one_line(capsys, main(["plan", str(CONFIG), "--smoke", "--device", device, "--studies", "order"]))
    assert err.startswith(f"moleflow: error: --device: {device}") or f"--device: {device!r}" in err


@pytest.mark.parametrize(
    "option",
    [["--json", "x.json"], ["--studies", "main"], ["--device", "cpu"], ["--jobs", "2"], ["--every-group"]],
)
def test_smoke_options_without_smoke_are_refused(option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line(capsys, main(["plan", str(CONFIG), *option]))
    assert f"{option[0]} only apply to the smoke check: add --smoke" in err


# ------------------------------------------------------------------------------------------------ configuration
def test_a_section_given_as_a_number_is_refused_naming_the_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("training: 5\n")
    err = one_line(
        capsys, main(["run", "--config", str(bad), "--set", "training.epochs=1", "--out", str(tmp_path / "r")])
    )
    assert f"{bad}: config key training: a section of keys" in err and not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------------------------ folders
@pytest.mark.parametrize("command", ["run", "predict"])
def test_a_folder_named_like_the_lock_is_refused(
    command: str, trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, data = trained
    out = tmp_path / "out"
    (out / ".lock").mkdir(parents=True)
    if command == "run":
        args = run_args(out, data, tmp_path / "cache")
    else:
        args = [
            "predict",
            "--run",
            str(run),
            str(sorted((data / "cap" / "test" / "good").glob("*.png"))[0]),
            "--out",
            str(out),
        ]
    err = one_line(capsys, main(args))
    assert f"cannot take its lock {out / '.lock'}" in err


def test_analysis_docs_at_a_file_is_refused_before_the_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from analysis_fixture import write_results

    from analysis.__main__ import main as analysis_main

    root = write_results(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    args = ["--config", str(root / "config.yaml"), "--results", str(root / "results"), "--docs", str(blocker)]
    err = one_line(capsys, analysis_main(args), prefix="analysis: error: ")
    assert f"--docs: cannot write to {blocker}" in err
    assert not (root / "results" / "tables").exists()  # refused before any table was written


# ------------------------------------------------------------------------------------------------ tracking
@pytest.mark.parametrize(
    ("descriptions", "message"),
    [
        ('{"nosuch (synth)": "x"}', "--descriptions-json describes 'nosuch (synth)', not among the experiments"),
        ('{"main (synth)": "a", "main (synth)": "b"}', "--descriptions-json gives 'main (synth)' more than once"),
    ],
)
def test_descriptions_of_unknown_or_repeated_experiments_are_refused(
    descriptions: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "track",
        "init",
        "--results",
        str(tmp_path),
        "--experiments",
        "main (synth)",
        "--descriptions-json",
        descriptions,
    ]
    assert message in one_line(capsys, main(args))


# ------------------------------------------------------------------------------------------------ signals, outcome
def test_the_joint_flow_prints_no_forgetting_as_n_a(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, data = trained
    assert main(run_args(tmp_path / "joint", data, tmp_path / "cache", "strategy.name=joint")) == 0
    out = capsys.readouterr().out
    assert "FM(I-AUROC) n/a" in out and "nan" not in out


def test_sigterm_stops_a_run_as_interrupted_and_a_rerun_resumes(tmp_path: Path) -> None:
    data = synth(tmp_path / "data", ["cap", "tile", "screw"], train=4, test_good=2, per_defect=1)
    args = run_args(tmp_path / "run", data, tmp_path / "cache", "training.epochs=3")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moleflow", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    progress = tmp_path / "run" / "checkpoints" / "progress.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not progress.is_file():
        time.sleep(0.1)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""  # still training after its first task
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM); a rerun resumes after the last finished task" in err
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "interrupted"
    assert main(args) == 0
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "ok"
    shutil.rmtree(tmp_path / "run")
