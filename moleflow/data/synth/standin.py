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


def _image(rng: np.random.Generator, size: int, gray: bool = False) -> np.ndarray:
    shape = (size, size) if gray else (size, size, 3)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _mask(size: int, value: int = 255) -> np.ndarray:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[size // 4 : size // 2, size // 3 : size // 2] = value
    return mask


def make_mvtec(root: Path, categories: dict[str, bool], size: int = 40, seed: int = 0) -> Path:
    """MVTec AD layout; ``categories`` maps name -> grayscale."""
    rng = np.random.default_rng(seed)
    for name, gray in categories.items():
        for i in range(4):
            save(root / name / "train" / "good" / f"{i:03d}.png", _image(rng, size, gray))
        for i in range(2):
            save(root / name / "test" / "good" / f"{i:03d}.png", _image(rng, size, gray))
        for defect in ("crack", "hole"):
            for i in range(2):
                save(root / name / "test" / defect / f"{i:03d}.png", _image(rng, size, gray))
                save(root / name / "ground_truth" / defect / f"{i:03d}_mask.png", _mask(size))
    return root


def make_visa(root: Path, categories: list[str], size: int = 40, seed: int = 0) -> Path:
    """VisA layout: JPG images, class-id masks (1, 2), split_csv/1cls.csv."""
    rng = np.random.default_rng(seed)
    rows = []
    for name in categories:
        for i in range(6):
            rel = f"{name}/Data/Images/Normal/{i:04d}.JPG"
            save(root / rel, _image(rng, size), fmt="JPEG")
            rows.append([name, "train" if i < 4 else "test", "normal", rel, ""])
        for i in range(3):
            rel = f"{name}/Data/Images/Anomaly/{i:03d}.JPG"
            mask_rel = f"{name}/Data/Masks/Anomaly/{i:03d}.png"
            save(root / rel, _image(rng, size), fmt="JPEG")
            save(root / mask_rel, _mask(size, value=1 + i % 2))
            rows.append([name, "test", "anomaly", rel, mask_rel])
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with (root / "split_csv" / "1cls.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(rows)
    return root
