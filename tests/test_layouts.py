"""Dataset layouts and ``moleflow data check``: counts and every bad-input case."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import make_mvtec, save

from moleflow.cli import main
from moleflow.data import check_dataset, load_category
from moleflow.data.transforms import load_image, load_mask


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_mvtec_counts_and_grayscale(mvtec_root: Path) -> None:
    counts = check_dataset("mvtec", mvtec_root)
    assert counts == {
        "bottle": {"train": 4, "test_normal": 2, "test_anomalous": 4, "masks": 4},
        "screw": {"train": 4, "test_normal": 2, "test_anomalous": 4, "masks": 4},
    }
    screw = load_category("mvtec", mvtec_root, "screw")
    image = load_image(screw.train[0].image, resize=32, crop=28)
    assert image.shape == (3, 28, 28) and np.allclose(image[0] * 0.229 + 0.485, image[1] * 0.224 + 0.456, atol=1e-5)
    anomalous = [s for s in screw.test if s.label == 1]
    assert all(s.mask is not None and s.mask.name == f"{s.image.stem}_mask.png" for s in anomalous)


def test_visa_split_csv_and_class_id_masks(visa_root: Path) -> None:
    counts = check_dataset("visa", visa_root, ["candle"])
    assert counts == {"candle": {"train": 4, "test_normal": 2, "test_anomalous": 3, "masks": 3}}
    candle = load_category("visa", visa_root, "candle")
    mask = load_mask(next(s.mask for s in candle.test if s.label == 1), resize=40, crop=40)
    assert mask.dtype == bool and mask.sum() > 0  # class id 1 is anomalous, not 255


def test_folder_layout_any_names_and_extensions(tmp_path: Path) -> None:
    root = make_mvtec(tmp_path / "own", {"my_widget": False})
    jpg = root / "my_widget" / "train" / "good" / "extra.jpg"
    save(jpg, np.zeros((40, 40, 3), dtype=np.uint8), fmt="JPEG")
    assert check_dataset("folder", root)["my_widget"]["train"] == 5
    assert check_dataset("mvtec", root)["my_widget"]["train"] == 4  # MVTec AD is PNG only


def test_check_cli_table_and_json(capsys: pytest.CaptureFixture[str], mvtec_root: Path) -> None:
    code, out, _ = run_cli(capsys, "data", "check", "--dataset", "mvtec", "--root", str(mvtec_root))
    table = [line.split() for line in out.strip().splitlines()]
    code_json, out_json, _ = run_cli(capsys, "data", "check", "--dataset", "mvtec", "--root", str(mvtec_root), "--json")
    counts = json.loads(out_json)
    # the table says what the JSON says: one row per category, its counts in the header's order
    assert code == 0 == code_json and table[0] == ["category", "train", "test_normal", "test_anomalous", "masks"]
    assert {row[0]: dict(zip(table[0][1:], map(int, row[1:]))) for row in table[1:]} == counts
    assert sorted(counts) == ["bottle", "screw"]
    code, out, _ = run_cli(
        capsys, "data", "check", "--dataset", "mvtec", "--root", str(mvtec_root), "--json", "--categories", "screw"
    )
    assert code == 0 and json.loads(out) == {"screw": {"train": 4, "test_normal": 2, "test_anomalous": 4, "masks": 4}}


def _break_missing_root(root: Path) -> Path:
    return root / "does-not-exist"


def _break_empty_train(root: Path) -> Path:
    for p in (root / "bottle" / "train" / "good").iterdir():
        p.unlink()
    return root / "bottle" / "train" / "good"


def _break_image_without_mask(root: Path) -> Path:
    mask = root / "bottle" / "ground_truth" / "crack" / "001_mask.png"
    mask.unlink()
    return root / "bottle" / "test" / "crack" / "001.png"


def _break_mask_without_image(root: Path) -> Path:
    image = root / "bottle" / "test" / "hole" / "000.png"
    image.unlink()
    return root / "bottle" / "ground_truth" / "hole" / "000_mask.png"


def _break_mask_size(root: Path) -> Path:
    mask = root / "bottle" / "ground_truth" / "hole" / "001_mask.png"
    save(mask, np.zeros((20, 40), dtype=np.uint8))
    return mask


def _break_truncated_image(root: Path) -> Path:
    image = root / "bottle" / "test" / "good" / "001.png"
    data = image.read_bytes()
    image.write_bytes(data[: len(data) // 2])
    return image


def _break_garbage_image(root: Path) -> Path:
    image = root / "bottle" / "train" / "good" / "002.png"
    image.write_bytes(b"not a png at all")
    return image


@pytest.mark.parametrize(
    "breaker, phrase",
    [
        (_break_missing_root, "dataset root not found"),
        (_break_empty_train, "empty train set"),
        (_break_image_without_mask, "anomalous image without its mask"),
        (_break_mask_without_image, "mask without its image"),
        (_break_mask_size, "differs from image size"),
        (_break_truncated_image, "unreadable or truncated image"),
        (_break_garbage_image, "unreadable or truncated image"),
    ],
)
def test_check_names_the_file_at_fault(
    capsys: pytest.CaptureFixture[str], mvtec_root: Path, breaker, phrase: str
) -> None:
    culprit = breaker(mvtec_root)
    root = culprit if breaker is _break_missing_root else mvtec_root
    code, out, err = run_cli(capsys, "data", "check", "--dataset", "mvtec", "--root", str(root))
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert phrase in lines[0] and str(culprit) in lines[0]


def test_check_missing_category(capsys: pytest.CaptureFixture[str], mvtec_root: Path) -> None:
    code, _, err = run_cli(
        capsys, "data", "check", "--dataset", "mvtec", "--root", str(mvtec_root), "--categories", "zipper"
    )
    assert code != 0 and "category not found" in err and str(mvtec_root / "zipper") in err


def test_visa_bad_inputs(capsys: pytest.CaptureFixture[str], visa_root: Path) -> None:
    (visa_root / "candle" / "Data" / "Masks" / "Anomaly" / "001.png").unlink()
    code, _, err = run_cli(
        capsys, "data", "check", "--dataset", "visa", "--root", str(visa_root), "--categories", "candle"
    )
    assert code != 0 and "anomalous image without its mask" in err and "001.JPG" in err
    shutil.rmtree(visa_root / "split_csv")
    code, _, err = run_cli(capsys, "data", "check", "--dataset", "visa", "--root", str(visa_root))
    assert code != 0 and "1cls.csv" in err and len(err.strip().splitlines()) == 1


def test_visa_orphan_mask(capsys: pytest.CaptureFixture[str], visa_root: Path) -> None:
    orphan = save(visa_root / "pcb1" / "Data" / "Masks" / "Anomaly" / "999.png", np.ones((40, 40), dtype=np.uint8))
    code, _, err = run_cli(
        capsys, "data", "check", "--dataset", "visa", "--root", str(visa_root), "--categories", "pcb1"
    )
    assert code != 0 and "mask without its image" in err and str(orphan) in err


def test_hidden_and_in_flight_files_are_ignored(mvtec_root: Path) -> None:
    save(mvtec_root / "bottle" / "train" / "good" / ".000.png.tmp1234.png", np.zeros((40, 40, 3), dtype=np.uint8))
    (mvtec_root / "bottle" / "test" / "crack" / ".001.png.partial.png").write_bytes(b"half")
    assert check_dataset("mvtec", mvtec_root, ["bottle"])["bottle"]["train"] == 4


def test_a_new_layout_is_one_registration(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A layout registered alone (here: MVTec's tree under ``<root>/images``) is accepted by the config, offered by
    the command line, read by ``data check``, built by the planner's smoke check and counted by its estimate."""
    from moleflow.config import load_config
    from moleflow.data.layouts import LAYOUTS, Layout, list_categories, register
    from moleflow.data.layouts.mvtec import MVTEC, mvtec_standin
    from moleflow.planning.estimate import published_counts
    from moleflow.planning.smoke import standin_tree

    def standin(root: Path, size: int, train: int) -> list[str]:
        return mvtec_standin(root / "images", size, train)

    register(
        Layout(
            name="nested",
            description="MVTec's tree under <root>/images",
            list_categories=lambda root: MVTEC.list_categories(root / "images"),
            load_category=lambda root, category: MVTEC.load_category(root / "images", category),
            looks_like=lambda root: (root / "images").is_dir(),
            standin=standin,
            published_counts={"bottle": (3, 2)},
        )
    )
    try:
        assert load_config(overrides=["dataset.kind=nested"])["dataset"]["kind"] == "nested"
        categories = standin_tree(tmp_path / "tree", "nested", 32, 2)
        assert categories == ["bottle", "screw"] and list_categories("nested", tmp_path / "tree") == categories
        code, out, _ = run_cli(
            capsys, "data", "check", "--dataset", "nested", "--root", str(tmp_path / "tree"), "--json"
        )
        assert code == 0 and set(json.loads(out)) == {"bottle", "screw"}
        assert published_counts("nested") == {"bottle": (3, 2)}
    finally:
        LAYOUTS.pop("nested", None)
    with pytest.raises(Exception, match="config key dataset.kind: 'nested' is not a dataset layout"):
        load_config(overrides=["dataset.kind=nested"])
