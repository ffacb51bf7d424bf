"""A run's pictures: sample anomaly maps and the accuracy-matrix heatmaps (the one drawing analysis uses too)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from moleflow.data.transforms import load_display_image  # noqa: E402
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


def save_sample(path: Path, image_path: Path, resize: int, crop: int, amap: np.ndarray, mask: np.ndarray,
                score: float, title: str) -> None:
    """Write one 3-panel PNG (image, overlay, ground truth) atomically."""
    image = load_display_image(image_path, resize, crop)
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


def as_matrix(rows: list[list[float | None]]) -> np.ndarray:
    """An accuracy matrix ``R[j][i]`` with ``None`` (task not trained yet) as NaN: ``(T, T)`` float."""
    return np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=float)


def _text_colour(rgba: tuple[float, float, float, float]) -> str:
    """Black on light cells, white on dark ones (relative luminance of the cell colour)."""
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.408 else "white"


def accuracy_heatmaps(matrices: dict[str, np.ndarray], tasks: list[str], title: str) -> plt.Figure:
    """One heatmap per metric of ``R[j, i]`` (rows: after training task ``j``), untrained cells blank.

    Drawn with matplotlib's ``imshow`` and fixed margins (no layout pass): every run
    writes one, so it is kept cheap (about a third of seaborn's heatmap with tight_layout).

    Args:
        matrices: panel title (a metric) -> ``(T, T)`` matrix, NaN where untrained.
        tasks: the ``T`` task names, in training order.
        title: the figure's title.
    """
    cmap = matplotlib.colormaps["viridis"]
    count = len(tasks)
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.3 * len(matrices), 3.3), squeeze=False)
    for ax, (label, values) in zip(axes[0], matrices.items()):
        ax.imshow(np.ma.masked_invalid(values), vmin=0.0, vmax=1.0, cmap=cmap)
        if count <= 8:
            for (j, i), v in np.ndenumerate(values):
                if not np.isnan(v):
                    ax.text(i, j, f"{v:.2f}", ha="center", va="center", fontsize=6, color=_text_colour(cmap(float(v))))
        ax.set_xticks(range(count), tasks, rotation=90)
        ax.set_yticks(range(count), tasks)
        ax.tick_params(labelsize=6, length=0)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("evaluated task", fontsize=8)
        ax.set_ylabel("after training task", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.27, top=0.86, wspace=0.5)
    return fig


def save_accuracy_heatmaps(path: Path, matrices: dict[str, list[list[float | None]]], tasks: list[str], title: str) -> None:
    """Write :func:`accuracy_heatmaps` of one run's matrices as a PNG, atomically."""
    fig = accuracy_heatmaps({metric: as_matrix(rows) for metric, rows in matrices.items()}, tasks, title)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
