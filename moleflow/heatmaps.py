"""The accuracy-matrix heatmaps, drawn for each run and for the analysis' figure.

No torch import: the analysis draws them without loading the model code.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
