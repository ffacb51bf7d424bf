"""The embedded default dataset: generated industrial-inspection images in the MVTec AD layout.

``generate(out, seed, size, categories)`` writes, per category::

    <out>/<category>/train/good/000.png ...
    <out>/<category>/test/good/000.png ...
    <out>/<category>/test/<defect>/000.png ...
    <out>/<category>/ground_truth/<defect>/000_mask.png ...

Normal images vary in pose (position, rotation), appearance (pattern phase,
colour), lighting (gain, offset, gradient) and sensor noise, so no per-pixel
threshold separates normal from defective. Masks are exact: a pixel is
anomalous where the defect changed its value by more than ``MASK_THRESHOLD``
(before lighting and noise, which are applied identically to both versions).
Every image is a pure function of ``(seed, category, split, defect, index)``:
generating a subset of categories gives the same files for those categories.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from moleflow.data.synth.category import Category
from moleflow.data.synth.draw import photometric, sensor_noise
from moleflow.data.synth.objects import CAP, PCB, SCREW
from moleflow.data.synth.textures import FABRIC, TILE, WOOD
from moleflow.errors import DatasetError
from moleflow.io import atomic_path, write_json_atomic

CATEGORIES: dict[str, Category] = {c.name: c for c in (FABRIC, WOOD, TILE, CAP, SCREW, PCB)}
MASK_THRESHOLD = 0.08
MIN_DEFECT_AREA = 0.002  # fraction of the image a defect must cover to be kept
DEFAULT_CATEGORIES: tuple[str, ...] = tuple(CATEGORIES)
MARKER = "synth.json"  # written into the output folder once every image is there


@dataclass(frozen=True)
class SynthCounts:
    """How many images to generate per category."""

    train: int = 40
    test_good: int = 10
    test_per_defect: int = 6


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    words = [seed] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng(words)


def render(category: Category, size: int, seed: int, split: str, defect: str, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one picture.

    Returns:
        ``(image, mask)``: uint8 ``(size, size, 3)`` and bool ``(size, size)``
        (all false for ``defect == "good"``).
    """
    rng = _rng(seed, category.name, split, defect, index)
    params = category.sample(rng, size)
    clean = category.draw(params, size)
    mask = np.zeros((size, size), dtype=bool)
    picture = clean
    if defect != "good":
        for _attempt in range(50):
            picture = category.defects[defect](rng, params, clean, size)
            mask = np.abs(picture - clean).max(axis=2) > MASK_THRESHOLD
            if mask.mean() >= MIN_DEFECT_AREA:
                break
        else:  # pragma: no cover - the defect parameters make this unreachable
            raise RuntimeError(f"could not place a visible {defect} on {category.name} #{index}")
    picture = sensor_noise(rng, photometric(rng, picture))
    if category.grayscale:
        picture = np.repeat(picture.mean(axis=2, keepdims=True), 3, axis=2)
    return (picture * 255 + 0.5).astype(np.uint8), mask


def _save_png(array: np.ndarray, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def generate(
    out: str | Path,
    seed: int = 0,
    size: int = 128,
    categories: list[str] | tuple[str, ...] | None = None,
    counts: SynthCounts = SynthCounts(),
) -> dict[str, dict[str, int]]:
    """Write the generated dataset under ``out``; return per-category image counts."""
    names = list(categories) if categories else list(DEFAULT_CATEGORIES)
    unknown = [n for n in names if n not in CATEGORIES]
    if unknown:
        raise DatasetError(f"unknown synthetic category {unknown[0]!r}; available: {', '.join(CATEGORIES)}")
    if size < 32:
        raise DatasetError(f"--size must be at least 32 pixels, got {size}")
    from moleflow.io import ensure_writable_dir

    out = ensure_writable_dir(out, "synth output folder")  # a file, or read-only: one line, before any image
    summary: dict[str, dict[str, int]] = {}
    for name in names:
        category = CATEGORIES[name]
        jobs = [("train", "good", counts.train), ("test", "good", counts.test_good)]
        jobs += [("test", defect, counts.test_per_defect) for defect in category.defects]
        for split, defect, n in jobs:
            for index in range(n):
                image, mask = render(category, size, seed, split, defect, index)
                if category.grayscale:
                    image = image[..., 0]
                _save_png(image, out / name / split / defect / f"{index:03d}.png")
                if defect != "good":
                    _save_png(mask.astype(np.uint8) * 255, out / name / "ground_truth" / defect / f"{index:03d}_mask.png")
        summary[name] = {
            "train": counts.train,
            "test_normal": counts.test_good,
            "test_anomalous": counts.test_per_defect * len(category.defects),
        }
    marker = {"seed": seed, "size": size, "counts": asdict(counts), "categories": summary}
    write_json_atomic(out / MARKER, marker)  # written last: the dataset is complete
    return summary
