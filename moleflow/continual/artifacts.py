"""A run's pictures: sample anomaly maps and its accuracy-matrix heatmaps (drawn by :mod:`moleflow.heatmaps`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from moleflow.data.transforms import load_display_image  # noqa: E402
from moleflow.heatmaps import accuracy_heatmaps, as_matrix  # noqa: E402
from moleflow.io import atomic_path  # noqa: E402


def pick_samples(labels: np.ndarray, defects: list[str], count: int) -> list[int]:
    """Up to ``count`` test indices: one per defect type in turn, then a normal image."""
    by_defect: dict[str, list[int]] = {}
    for i, (label, defect) in enumerate(zip(labels, defects)):
        if label:
            by_defect.setdefault(defect, []).append(i)
    picks: list[int] = []
    while len(picks) < count and any(by_defect.values()):
        for defect in sorted(by_defect):
            if by_defect[defect] and len(picks) < count:
                picks.append(by_defect[defect].pop(0))
    normals = [i for i, label in enumerate(labels) if not label]
    if normals and len(picks) >= count and count > 1:
        picks[-1] = normals[0]
    return picks


def save_sample(
    path: Path,
    image_path: Path,
    resize: int,
    crop: int,
    amap: np.ndarray,
    mask: np.ndarray,
    score: float,
    title: str,
    resize_mode: str = "square",
) -> None:
    """Write one 3-panel PNG (image, overlay, ground truth) atomically."""
    image = load_display_image(image_path, resize, crop, resize_mode)
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.7))
    axes[0].imshow(image)
    axes[0].set_title(title, fontsize=8)
    axes[1].imshow(image)
    axes[1].imshow(amap, cmap="jet", alpha=0.45)
    axes[1].set_title(f"anomaly map (score {score:.1f})", fontsize=8)
    axes[2].imshow(mask, cmap="gray", vmin=0, vmax=1)
    axes[2].set_title("ground truth", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)


def save_accuracy_heatmaps(
    path: Path, matrices: dict[str, list[list[float | None]]], tasks: list[str], title: str
) -> None:
    """Write :func:`accuracy_heatmaps` of one run's matrices as a PNG, atomically."""
    fig = accuracy_heatmaps({metric: as_matrix(rows) for metric, rows in matrices.items()}, tasks, title)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
