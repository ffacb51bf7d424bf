"""How hard a dataset is for a per-pixel detector.

The detector: the mean and standard deviation of every pixel over a category's
normal training images; a test image's score is its largest absolute z-score.
If this reaches a high image AUROC, the dataset can be solved by a per-pixel
threshold and says little about a method. The generated default must not be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from moleflow.data.layouts import load_category
from moleflow.data.transforms import open_image
from moleflow.metrics import image_auroc


def _pixels(path: Path, size: int) -> np.ndarray:
    img = open_image(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.float32) / 255.0


def pixel_zscore_auroc(kind: str, root: str | Path, category: str, size: int = 128) -> float:
    """Image AUROC of the per-pixel z-score detector on one category (images resized to ``size``)."""
    data = load_category(kind, root, category)
    train = np.stack([_pixels(s.image, size) for s in data.train])
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-3
    scores = [float((np.abs(_pixels(s.image, size) - mean) / std).max()) for s in data.test]
    return image_auroc(np.array([s.label for s in data.test]), np.array(scores))
