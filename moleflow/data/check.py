"""Validate a dataset copy before anyone launches GPU jobs.

:func:`check_dataset` reads the layout (see :mod:`moleflow.data.layouts`), then
decodes every image and mask to catch unreadable or truncated files and masks whose
size differs from their image. The first problem raises
:class:`~moleflow.errors.DatasetError` with one line naming the file at fault.
"""

from __future__ import annotations

from pathlib import Path


from moleflow.data.layouts import CategoryData, load_categories
from moleflow.data.transforms import open_image, opened
from moleflow.errors import DatasetError

COUNT_KEYS = ("train", "test_normal", "test_anomalous", "masks")


def _image_size(path: Path) -> tuple[int, int]:
    return open_image(path).size


def header_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header (no decoding)."""
    with opened(path) as img:
        return img.size


def require_same_size(mask: Path, mask_size: tuple[int, int], image_size: tuple[int, int]) -> None:
    """Refuse a mask whose size differs from its image's (the same rule for ``data check`` and a run)."""
    if mask_size != image_size:
        raise DatasetError(
            f"mask size {mask_size[0]}x{mask_size[1]} differs from image size {image_size[0]}x{image_size[1]}: {mask}"
        )


def check_category(data: CategoryData) -> dict[str, int]:
    """Decode every file of one category and return its counts.

    Returns:
        ``{"train", "test_normal", "test_anomalous", "masks"}`` image counts.
    """
    for sample in data.train:
        _image_size(sample.image)
    masks = 0
    for sample in data.test:
        size = _image_size(sample.image)
        if sample.mask is not None:
            require_same_size(sample.mask, _image_size(sample.mask), size)
            masks += 1
    return {
        "train": len(data.train),
        "test_normal": sum(1 for s in data.test if s.label == 0),
        "test_anomalous": sum(1 for s in data.test if s.label == 1),
        "masks": masks,
    }


def check_dataset(kind: str, root: str | Path, categories: list[str] | None = None) -> dict[str, dict[str, int]]:
    """Validate a dataset copy; return ``{category: counts}`` (see :func:`check_category`)."""
    return {data.category: check_category(data) for data in load_categories(kind, root, categories)}


def format_counts(counts: dict[str, dict[str, int]]) -> str:
    """Render per-category counts as an aligned text table."""
    width = max([len("category")] + [len(c) for c in counts])
    header = f"{'category':<{width}}  " + "  ".join(f"{k:>14}" for k in COUNT_KEYS)
    lines = [header]
    for category, row in counts.items():
        lines.append(f"{category:<{width}}  " + "  ".join(f"{row[k]:>14d}" for k in COUNT_KEYS))
    return "\n".join(lines)
