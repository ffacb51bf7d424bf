"""Continual runs on other data than the default tree: twin categories that the router confuses, a seeded random task order, the VisA layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests_helpers import (
    tiny,
)

from moleflow.continual import Learner, run
from moleflow.continual.evaluate import score_rows
from moleflow.continual.settings import ScoreSettings, TrainSettings
from moleflow.continual.tasks import load_tasks
from moleflow.continual.train import train_task
from moleflow.data.synth import SynthCounts, generate
from moleflow.features import FeatureStore

CATEGORIES = ["cap", "tile", "screw"]  # the conftest dataset's


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cap`` and ``cap_twin`` (the same product from another generator seed) and ``tile``: the router must err."""
    root = tmp_path_factory.mktemp("twins")
    generate(
        root, seed=0, size=64, categories=["cap", "tile"], counts=SynthCounts(train=8, test_good=3, test_per_defect=2)
    )
    other = tmp_path_factory.mktemp("twin-source")
    generate(other, seed=5, size=64, categories=["cap"], counts=SynthCounts(train=8, test_good=3, test_per_defect=2))
    (other / "cap").rename(root / "cap_twin")
    return root


def test_misrouted_images_are_scored_by_the_task_they_were_routed_to(twins: Path, cache: Path, tmp_path: Path) -> None:
    from moleflow.continual.evaluate import evaluate_task, metrics_of

    config = tiny(twins, cache, "dataset.categories=[cap,cap_twin,tile]")
    device = torch.device("cpu")
    tasks = load_tasks(config, FeatureStore(config, progress=False))
    learner = Learner.from_config(config, tasks[0].train.patches.shape[-1])
    for task, data in enumerate(tasks):
        learner.add_task(np.asarray(data.train.router))
        assert train_task(learner, task, data.train.patches, TrainSettings.from_config(config), device).status == "ok"
    misrouted = 0
    expected: dict[str, dict] = {}
    for task, data in enumerate(tasks):
        ev = evaluate_task(learner, task, data, ScoreSettings.from_config(config), device)
        n = len(data.test.labels)
        image = np.empty(n)
        maps = np.empty((n, 64, 64), dtype=np.float32)
        for k in range(n):  # each image alone, under the adapters the router chose for it
            alone = score_rows(
                learner,
                int(ev.routed_to[k]),
                data.test.patches,
                np.array([k]),
                ScoreSettings.from_config(config),
                device,
            )
            assert alone.maps is not None
            image[k], maps[k] = alone.image[0], alone.maps[0]
        np.testing.assert_allclose(ev.routed_scores.image, image, rtol=1e-5, atol=1e-5)
        assert ev.routed_scores.maps is not None
        np.testing.assert_allclose(ev.routed_scores.maps, maps, rtol=1e-5, atol=1e-4)
        wrong = ev.routed_to != task
        misrouted += int(wrong.sum())
        assert data.category != "tile" or not wrong.any()  # the distinct product is never confused
        assert set(ev.routed_to[wrong]) <= {0, 1}  # the twins are confused with each other only
        routed = metrics_of(
            np.asarray(data.test.labels),
            np.asarray(data.test.masks),
            type(ev.routed_scores)(image, maps),
            config["scoring"]["aupro_fpr_limit"],
        )
        # maps agree to 1e-4 (one image's float sums against a batch's); pixel AP ranks 4,096 pixels per image,
        # among them near-ties that such a difference can reorder: 1e-5 is still far below any reported digit
        assert routed == pytest.approx(ev.routed, abs=1e-5)
        if not wrong.any():
            assert ev.routed == ev.oracle
        expected[data.category] = routed
    assert misrouted > 0
    summary = run(config, tmp_path / "twins", progress=False, log=lambda *a: None)
    assert summary["routing_accuracy"] < 1.0
    confusion = np.array(summary["routing_confusion"])
    assert confusion[0, 1] + confusion[1, 0] == misrouted and confusion[2, 2] == confusion[2].sum()
    for category, metrics in expected.items():
        assert summary["final"][category]["routed"] == pytest.approx(metrics, abs=1e-5), category  # as above
    assert any(summary["final"][c]["routed"] != summary["final"][c]["oracle"] for c in ("cap", "cap_twin"))
    # forgetting is read from the routed matrix (what a user gets), by hand: FM = mean over i < T-1 of
    # max_{l < T-1} R[l][i] - R[T-1][i]; the paper's: mean of R[i][i] - R[T-1][i]
    for metric in ("image_auroc", "pixel_ap"):
        R = np.array(summary["accuracy_matrix"][metric], dtype=float)
        fm = np.mean([max(R[j, i] for j in range(i, 2)) - R[2, i] for i in range(2)])
        paper = np.mean([R[i, i] - R[2, i] for i in range(2)])
        assert summary["forgetting"][metric]["fm"] == pytest.approx(fm, abs=1e-12)
        assert summary["forgetting"][metric]["paper"] == pytest.approx(paper, abs=1e-12)
    # the oracle matrix (each image scored by its own task) differs under misrouting, and so does its forgetting
    assert summary["accuracy_matrix"] != summary["accuracy_matrix_oracle"]
    assert any(
        summary["forgetting"][m]["fm"] != summary["forgetting_oracle"][m]["fm"] for m in ("image_auroc", "pixel_ap")
    )


@pytest.mark.slow
def test_a_seeded_random_order_runs_the_sequence_it_drew(dataset: Path, cache: Path, tmp_path: Path) -> None:
    """``task_order: random`` draws a permutation from ``order_seed``; the run equals the same sequence given."""
    from moleflow.continual.tasks import task_order

    draws = {seed: task_order(tiny(dataset, cache, "task_order=random", f"order_seed={seed}")) for seed in range(6)}
    assert all(sorted(order) == sorted(CATEGORIES) for order in draws.values())
    assert len({tuple(order) for order in draws.values()}) > 1  # the seed matters
    assert draws[3] == task_order(tiny(dataset, cache, "task_order=random", "order_seed=3"))  # and fixes the order
    seed = next(s for s, order in draws.items() if order != sorted(CATEGORIES))  # not the alphabetical one
    drawn = run(
        tiny(dataset, cache, "task_order=random", f"order_seed={seed}"),
        tmp_path / "random",
        progress=False,
        log=lambda *a: None,
    )
    listed = ",".join(draws[seed])
    given = run(
        tiny(dataset, cache, "task_order=given", f"dataset.categories=[{listed}]"),
        tmp_path / "given",
        progress=False,
        log=lambda *a: None,
    )
    assert drawn["status"] == "ok" and drawn["tasks"] == draws[seed] == given["tasks"]
    for key in ("final", "accuracy_matrix", "accuracy_matrix_oracle", "routing_confusion"):
        assert drawn[key] == given[key], key


def _as_visa(mvtec: Path, visa: Path) -> Path:
    """The MVTec-layout tree ``mvtec`` rewritten in the VisA layout: JPG images, class-id masks, split_csv/1cls.csv."""
    import csv

    from PIL import Image

    rows = []
    for category in sorted(p.name for p in mvtec.iterdir() if p.is_dir()):
        pictures = [("train", "good", p) for p in sorted((mvtec / category / "train" / "good").glob("*.png"))]
        pictures += [
            ("test", d.name, p) for d in sorted((mvtec / category / "test").iterdir()) for p in sorted(d.glob("*.png"))
        ]
        defects = sorted({d for _, d, _ in pictures if d != "good"})
        for k, (split, defect, path) in enumerate(pictures):
            kind = "Normal" if defect == "good" else "Anomaly"
            image = f"{category}/Data/Images/{kind}/{k:04d}.JPG"
            (visa / image).parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).convert("RGB").save(visa / image, format="JPEG", quality=95)
            mask = ""
            if defect != "good":
                mask = f"{category}/Data/Masks/Anomaly/{k:04d}.png"
                (visa / mask).parent.mkdir(parents=True, exist_ok=True)
                binary = (
                    np.asarray(Image.open(mvtec / category / "ground_truth" / defect / f"{path.stem}_mask.png")) > 0
                )
                Image.fromarray((binary * (1 + defects.index(defect))).astype(np.uint8)).save(visa / mask)
            rows.append([category, split, "normal" if defect == "good" else "anomaly", image, mask])
    (visa / "split_csv").mkdir(parents=True)
    with (visa / "split_csv" / "1cls.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["object", "split", "label", "image", "mask"], *rows])
    return visa


def test_visa_through_features_run_and_summary(dataset: Path, cache: Path, tmp_path: Path) -> None:
    from moleflow.data import check_dataset

    visa = _as_visa(dataset, tmp_path / "visa")
    assert check_dataset("visa", visa) == check_dataset("mvtec", dataset)
    config = tiny(visa, cache, "dataset.kind=visa")
    mvtec_config = tiny(dataset, cache)
    for category in CATEGORIES:  # the same test images: the same labels and the same (binarised) masks
        got = FeatureStore(config, progress=False).get(category, "test")
        want = FeatureStore(mvtec_config, progress=False).get(category, "test")
        assert sorted(np.asarray(got.labels)) == sorted(np.asarray(want.labels))
        assert sorted(m.sum() for m in np.asarray(got.masks)) == sorted(m.sum() for m in np.asarray(want.masks))
    summary = run(config, tmp_path / "run", progress=False, log=lambda *a: None)
    assert (
        summary["status"] == "ok"
        and summary["tasks"] == sorted(CATEGORIES)
        and summary["config"]["dataset"]["kind"] == "visa"
    )
    for category, result in summary["final"].items():
        assert all(np.isfinite(v) and 0.0 <= v <= 1.0 for mode in result.values() for v in mode.values()), category
    assert summary["routing_accuracy"] == 1.0 and summary["forgetting"]["image_auroc"]["fm"] == 0.0
