"""What every dataset layout shares: the sample records, the image listing and the registry of layouts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class Sample:
    """One image of a category.

    Attributes:
        image: path of the image file.
        mask: path of the ground-truth mask, ``None`` for normal images.
        label: 0 for normal, 1 for anomalous.
        defect: ``"good"`` for normal images, else the defect type.
    """

    image: Path
    mask: Path | None
    label: int
    defect: str


@dataclass
class CategoryData:
    """The train (normal only) and test samples of one category."""

    category: str
    train: list[Sample] = field(default_factory=list)
    test: list[Sample] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        """Return the samples of split ``name`` (``"train"`` or ``"test"``)."""
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}; expected 'train' or 'test'")
        return self.train if name == "train" else self.test


def images_in(folder: Path, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """The image files directly in ``folder``, sorted (hidden and in-flight temporary files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in extensions and not p.name.startswith(".")  # skip hidden and in-flight temp files
    )


@dataclass(frozen=True)
class Layout:
    """A dataset layout: how a copy on disk is read, and what planning needs to know of it.

    Attributes:
        name: the value of ``dataset.kind``.
        description: one line (the layout's files, for the error that lists the layouts).
        list_categories: ``root -> sorted category names`` present in a copy.
        load_category: ``(root, category) -> CategoryData``; structural problems raise ``DatasetError``
            naming the path at fault.
        looks_like: whether a folder looks like a copy of this layout (to suggest it when another is set).
        standin: ``(root, size, train) -> categories``: writes a small noise-filled tree in this layout (the
            planner's smoke check runs each configuration on one), ``train`` training images per category.
        published_counts: category -> ``(train, test)`` images of the published dataset (the planner's
            estimate without the data); empty when there is no published dataset.
    """

    name: str
    description: str
    list_categories: Callable[[Path], list[str]]
    load_category: Callable[[Path, str], CategoryData]
    looks_like: Callable[[Path], bool]
    standin: Callable[[Path, int, int], list[str]]
    published_counts: dict[str, tuple[int, int]] = field(default_factory=dict)


#: ``dataset.kind`` -> its layout, filled as each layout module registers (in the order they are imported).
LAYOUTS: dict[str, Layout] = {}


def register(layout: Layout) -> Layout:
    """Make ``layout`` a valid ``dataset.kind``."""
    if layout.name in LAYOUTS:
        raise ValueError(f"dataset layout {layout.name!r} is registered twice")
    LAYOUTS[layout.name] = layout
    return layout
