"""The generated default dataset: layout, determinism, defects, difficulty."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from moleflow.cli import main
from moleflow.data import check_dataset, load_category
from moleflow.data.synth import CATEGORIES, DEFAULT_CATEGORIES, SynthCounts, generate
from moleflow.data.synth.difficulty import pixel_zscore_auroc

SMALL = SynthCounts(train=12, test_good=4, test_per_defect=3)


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, seed=3, size=64, counts=SMALL)
    return root


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.png")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_categories_mix_textures_and_objects() -> None:
    kinds = {c.kind for c in CATEGORIES.values()}
    assert len(DEFAULT_CATEGORIES) >= 6 and kinds == {"texture", "object"}
    assert all(len(c.defects) >= 2 for c in CATEGORIES.values())


def test_layout_is_mvtec_and_valid(synth_root: Path) -> None:
    counts = check_dataset("mvtec", synth_root)
    assert set(counts) == set(DEFAULT_CATEGORIES)
    for name, row in counts.items():
        n_defects = len(CATEGORIES[name].defects)
        assert row == {"train": 12, "test_normal": 4, "test_anomalous": 3 * n_defects, "masks": 3 * n_defects}
    screw = Image.open(next((synth_root / "screw" / "train" / "good").glob("*.png")))
    assert screw.mode == "L"  # a grayscale category, as in MVTec AD


def test_deterministic_for_a_seed(tmp_path: Path, synth_root: Path) -> None:
    again = tmp_path / "again"
    generate(again, seed=3, size=64, counts=SMALL)
    assert _digest(again) == _digest(synth_root)
    subset = tmp_path / "subset"
    generate(subset, seed=3, size=64, categories=["tile"], counts=SMALL)
    assert _digest(subset / "tile") == _digest(synth_root / "tile")
    other = tmp_path / "other"
    generate(other, seed=4, size=64, categories=["tile"], counts=SMALL)
    assert _digest(other / "tile") != _digest(synth_root / "tile")


def test_masks_mark_the_changed_pixels(synth_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each saved mask is exactly where the defect changed the clean picture by more than the threshold.

    The clean picture is redrawn from the image's own random stream (its first two draws, pose and appearance,
    come before the defect's); the defective picture is rendered again with lighting and noise switched off,
    in colour, so the change is measured on what the defect drew.
    """
    import dataclasses

    import moleflow.data.synth.generator as synth

    monkeypatch.setattr(synth, "photometric", lambda rng, image: image)
    monkeypatch.setattr(synth, "sensor_noise", lambda rng, image: image)
    checked = 0
    for name in DEFAULT_CATEGORIES:
        category = dataclasses.replace(CATEGORIES[name], grayscale=False)
        for sample in (s for s in load_category("mvtec", synth_root, name).test if s.label == 1):
            defect, index = sample.image.parent.name, int(sample.image.stem)
            assert sample.mask is not None
            saved = np.asarray(Image.open(sample.mask)) > 0
            picture, _ = synth.render(category, 64, 3, "test", defect, index)
            rng = synth._rng(3, name, "test", defect, index)
            clean = category.draw(category.sample(rng, 64), 64)
            change = np.abs(picture / 255.0 - clean).max(axis=2)
            decided = np.abs(change - synth.MASK_THRESHOLD) > 1.0 / 255  # away from the threshold's rounding band
            assert np.array_equal(saved[decided], change[decided] > synth.MASK_THRESHOLD), sample.mask
            assert saved.mean() >= synth.MIN_DEFECT_AREA and saved.mean() < 0.25, (sample.mask, saved.mean())
            checked += 1
    assert checked == 3 * sum(len(CATEGORIES[n].defects) for n in DEFAULT_CATEGORIES)


def test_normal_images_vary_so_no_per_pixel_threshold_solves_it(tmp_path: Path) -> None:
    root = tmp_path / "difficulty"
    generate(root, seed=0, size=64, counts=SynthCounts(train=24, test_good=8, test_per_defect=4))
    aurocs = {name: pixel_zscore_auroc("mvtec", root, name, size=64) for name in DEFAULT_CATEGORIES}
    assert np.mean(list(aurocs.values())) < 0.8, aurocs
    assert sum(a < 0.8 for a in aurocs.values()) >= 4, aurocs


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "synth",
            str(tmp_path / "d"),
            "--size",
            "48",
            "--categories",
            "cap",
            "pcb",
            "--train",
            "3",
            "--test-good",
            "1",
            "--test-defect",
            "1",
        ]
    )
    out = capsys.readouterr().out
    images = [p for p in (tmp_path / "d").rglob("*.png") if p.parts[-3] != "ground_truth"]  # masks are not images
    assert code == 0 and out.startswith(f"wrote {len(images)} images in 2 categories")
    assert sorted(p.name for p in (tmp_path / "d").iterdir() if p.is_dir()) == ["cap", "pcb"]
    assert len(list((tmp_path / "d" / "cap" / "train" / "good").glob("*.png"))) == 3
    assert len(list((tmp_path / "d" / "pcb" / "test" / "good").glob("*.png"))) == 1
    assert json.loads((tmp_path / "d" / "synth.json").read_text())["categories"]["cap"]["train"] == 3
    code = main(["data", "baseline", "--dataset", "mvtec", "--root", str(tmp_path / "d")])
    lines = capsys.readouterr().out.splitlines()
    values = [float(line.rsplit(" ", 1)[1]) for line in lines]
    assert code == 0 and [line.split(":")[0] for line in lines] == ["cap", "pcb", "mean"]
    assert all(0.0 <= v <= 1.0 for v in values) and values[2] == pytest.approx(np.mean(values[:2]), abs=1e-3)
    code = main(["synth", str(tmp_path / "e"), "--categories", "bottle"])
    assert code == 2 and "unknown synthetic category 'bottle'" in capsys.readouterr().err
