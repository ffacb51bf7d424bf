"""Stand-in dataset trees: random pixels in the exact MVTec AD and VisA layouts.

For tests of the layout readers and for planning the paper's workflow without the
datasets (``benchmarks``, ``tests/test_workflow.py``): every file a reader looks at is
there, with the right names, formats and mask encodings, but the pictures are noise.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

MVTEC_CATEGORIES = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw",
                    "tile", "toothbrush", "transistor", "wood", "zipper")
MVTEC_GRAYSCALE = ("grid", "screw", "zipper")
VISA_CATEGORIES = ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2", "pcb3",
                   "pcb4", "pipe_fryum")


def save(path: Path, array: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)
    return path


def _image(rng: np.random.Generator, size: int, gray: bool = False, width: int | None = None) -> np.ndarray:
    shape = (size, width or size) if gray else (size, width or size, 3)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _mask(size: int, value: int = 255, width: int | None = None) -> np.ndarray:
    mask = np.zeros((size, width or size), dtype=np.uint8)
    mask[size // 4 : size // 2, size // 3 : size // 2] = value
    return mask


def make_mvtec(root: Path, categories: dict[str, bool], size: int = 40, seed: int = 0, train: int = 4,
               test_good: int = 2, per_defect: int = 2) -> Path:
    """MVTec AD layout; ``categories`` maps name -> grayscale; per category ``train`` normal training images,
    ``test_good`` normal test images and ``per_defect`` images of each of two defect types."""
    rng = np.random.default_rng(seed)
    for name, gray in categories.items():
        for i in range(train):
            save(root / name / "train" / "good" / f"{i:03d}.png", _image(rng, size, gray))
        for i in range(test_good):
            save(root / name / "test" / "good" / f"{i:03d}.png", _image(rng, size, gray))
        for defect in ("crack", "hole"):
            for i in range(per_defect):
                save(root / name / "test" / defect / f"{i:03d}.png", _image(rng, size, gray))
                save(root / name / "ground_truth" / defect / f"{i:03d}_mask.png", _mask(size))
    return root


def make_visa(root: Path, categories: list[str], size: int = 40, seed: int = 0, train: int = 4,
              aspect: float = 1.0, test_normal: int = 2, anomalous: int = 3) -> Path:
    """VisA layout: JPG images (``size`` high, ``aspect`` times as wide), class-id masks (1, 2), split_csv/1cls.csv;
    per category ``train`` normal training images, ``test_normal`` normal and ``anomalous`` anomalous test images."""
    rng = np.random.default_rng(seed)
    width = round(size * aspect)
    rows = []
    for name in categories:
        for i in range(train + test_normal):
            rel = f"{name}/Data/Images/Normal/{i:04d}.JPG"
            save(root / rel, _image(rng, size, width=width), fmt="JPEG")
            rows.append([name, "train" if i < train else "test", "normal", rel, ""])
        for i in range(anomalous):
            rel = f"{name}/Data/Images/Anomaly/{i:03d}.JPG"
            mask_rel = f"{name}/Data/Masks/Anomaly/{i:03d}.png"
            save(root / rel, _image(rng, size, width=width), fmt="JPEG")
            save(root / mask_rel, _mask(size, value=1 + i % 2, width=width))
            rows.append([name, "test", "anomaly", rel, mask_rel])
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with (root / "split_csv" / "1cls.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(rows)
    return root
