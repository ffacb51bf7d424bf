"""Dataset layouts: each turns a dataset copy on disk into per-category lists of :class:`Sample` records.

A layout is one module of this package that registers a :class:`Layout` (``register(Layout(...))``); the package
imports every module in its folder, so adding a layout is its module alone: ``dataset.kind`` accepts every
registered name (:data:`LAYOUTS`, checked when a config is validated), the command line offers them, the
planner's smoke check builds its stand-in tree with the layout's ``standin`` and the estimate reads its
``published_counts``. Shipped: ``mvtec`` and ``folder`` (:mod:`.mvtec`), ``visa`` (:mod:`.visa`).

Structural problems (a missing root or category, an empty train set, an anomalous image without its mask, a mask
without its image) raise :class:`~moleflow.errors.DatasetError` with one line naming the path at fault. Reading
the pixels is :mod:`moleflow.data.check`'s and :mod:`moleflow.data.transforms`' business.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from moleflow.data.layouts.base import IMAGE_EXTENSIONS, LAYOUTS, CategoryData, Layout, Sample, images_in, register
from moleflow.errors import DatasetError

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

MIN_TRAIN_IMAGES = 2  # the router's (and DNE's) covariance of one feature per training image


def layout(kind: str) -> Layout:
    """The layout ``kind`` names; an unknown one is a ``DatasetError`` listing the registered ones."""
    if kind not in LAYOUTS:
        raise DatasetError(f"unknown dataset kind {kind!r}; expected one of {', '.join(LAYOUTS)}")
    return LAYOUTS[kind]


def _require_root(root: Path) -> None:
    if not root.is_dir():
        raise DatasetError(f"dataset root not found: {root}")


def list_categories(kind: str, root: str | Path) -> list[str]:
    """Return the sorted category names present in a dataset copy."""
    root = Path(root)
    _require_root(root)
    return layout(kind).list_categories(root)


def looks_like(root: str | Path) -> str | None:
    """The registered layout a dataset copy looks like (its ``looks_like``), or ``None``."""
    return next((name for name, lay in LAYOUTS.items() if lay.looks_like(Path(root))), None)


def no_categories(kind: str, root: str | Path) -> DatasetError:
    """The error for a copy without categories of layout ``kind``, saying which layout it looks like."""
    guess = looks_like(root)
    hint = f"; it looks like a {guess} copy: set dataset.kind={guess}" if guess and guess != kind else ""
    return DatasetError(f"no category found under {root} for dataset.kind={kind}{hint}")


def load_category(kind: str, root: str | Path, category: str) -> CategoryData:
    """Read the sample lists of ``category`` in a dataset copy of layout ``kind``."""
    root = Path(root)
    _require_root(root)
    data = layout(kind).load_category(root, category)
    if len(data.train) < MIN_TRAIN_IMAGES:
        raise DatasetError(
            f"{len(data.train)} training image in category {category} ({data.train[0].image.parent}): a category "
            f"needs at least {MIN_TRAIN_IMAGES} (the router's covariance of its training images' features)"
        )
    return data


def load_categories(kind: str, root: str | Path, categories: list[str] | None = None) -> list[CategoryData]:
    """Load several categories (all present ones when ``categories`` is empty)."""
    names = list(categories) if categories else list_categories(kind, root)
    if not names:
        raise no_categories(kind, root)
    return [load_category(kind, root, name) for name in names]


__all__ = [
    "IMAGE_EXTENSIONS",
    "LAYOUTS",
    "CategoryData",
    "Layout",
    "Sample",
    "images_in",
    "layout",
    "list_categories",
    "load_categories",
    "load_category",
    "looks_like",
    "no_categories",
    "register",
]
