"""MVTec AD as released (``mvtec``) and a user folder in its layout (``folder``).

* ``mvtec``: ``<root>/<category>/train/good/*.png``, ``test/{good,<defect>}/*.png``,
  ``ground_truth/<defect>/<stem>_mask.png``.
* ``folder``: the same layout with any category names and any common image extension; masks are
  ``<stem>_mask.<ext>`` or ``<stem>.<ext>``.
"""

from __future__ import annotations

from pathlib import Path

from moleflow.data.layouts.base import IMAGE_EXTENSIONS, CategoryData, Layout, Sample, images_in, register
from moleflow.errors import DatasetError

#: MVTec AD's published split sizes (training images, test images) per category.
MVTEC_COUNTS: dict[str, tuple[int, int]] = {
    "bottle": (209, 83),
    "cable": (224, 150),
    "capsule": (219, 132),
    "carpet": (280, 117),
    "grid": (264, 78),
    "hazelnut": (391, 110),
    "leather": (245, 124),
    "metal_nut": (220, 115),
    "pill": (267, 167),
    "screw": (320, 160),
    "tile": (230, 117),
    "toothbrush": (60, 42),
    "transistor": (213, 100),
    "wood": (247, 79),
    "zipper": (240, 151),
}


def list_mvtec_like(root: Path) -> list[str]:
    """Category folders: those with a ``train`` or ``test`` folder."""
    return sorted(p.name for p in root.iterdir() if (p / "train").is_dir() or (p / "test").is_dir())


def looks_like_mvtec(root: Path) -> bool:
    """A category folder holds ``train/good``."""
    return root.is_dir() and any((p / "train" / "good").is_dir() for p in root.iterdir() if p.is_dir())


def mvtec_standin(root: Path, size: int, train: int) -> list[str]:
    """Two noise categories (one grayscale) in MVTec's layout."""
    from moleflow.data.synth.standin import make_mvtec

    make_mvtec(root, {"bottle": False, "screw": True}, size=size, train=train, test_good=1, per_defect=1)
    return ["bottle", "screw"]


def _load_mvtec_like(
    root: Path, category: str, extensions: tuple[str, ...], mask_suffixes: tuple[str, ...]
) -> CategoryData:
    base = root / category
    if not base.is_dir():
        raise DatasetError(f"category not found: {base}")
    train_dir = base / "train" / "good"
    train = [Sample(p, None, 0, "good") for p in images_in(train_dir, extensions)]
    if not train:
        raise DatasetError(_empty_train_message(train_dir, extensions))
    test_dir = base / "test"
    if not test_dir.is_dir():
        raise DatasetError(f"test folder not found: {test_dir}")
    gt_dir = base / "ground_truth"
    test: list[Sample] = []
    for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir()):
        images = images_in(defect_dir, extensions)
        if defect_dir.name == "good":
            test.extend(Sample(p, None, 0, "good") for p in images)
            continue
        masks = {_mask_stem(m, mask_suffixes): m for m in images_in(gt_dir / defect_dir.name, extensions)}
        stems = {p.stem for p in images}
        for image in images:
            mask = masks.get(image.stem)
            if mask is None:
                raise DatasetError(
                    f"anomalous image without its mask: {image} (expected {gt_dir / defect_dir.name / (image.stem + mask_suffixes[0])}.*)"
                )
            test.append(Sample(image, mask, 1, defect_dir.name))
        for stem, mask in sorted(masks.items()):
            if stem not in stems:
                raise DatasetError(f"mask without its image: {mask} (no {defect_dir / stem}.* found)")
    if gt_dir.is_dir():
        for gt_defect in sorted(p for p in gt_dir.iterdir() if p.is_dir()):
            if not (test_dir / gt_defect.name).is_dir() and images_in(gt_defect, extensions):
                orphan = images_in(gt_defect, extensions)[0]
                raise DatasetError(f"mask without its image: {orphan} (no folder {test_dir / gt_defect.name})")
    return CategoryData(category, train, test)


def _empty_train_message(train_dir: Path, extensions: tuple[str, ...]) -> str:
    """Why a train folder gave no image: missing, empty, or holding files of other extensions (say which the layout reads)."""
    if not train_dir.is_dir():
        return f"empty train set: {train_dir} does not exist"
    others = sorted({p.suffix.lower() for p in train_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS})
    if others:
        count = sum(1 for p in train_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        return (f"empty train set: {train_dir} holds {count} {'/'.join(others)} image(s), but this layout reads only "
                f"{'/'.join(extensions)} (MVTec AD as released); dataset kind 'folder' reads any of "
                f"{'/'.join(IMAGE_EXTENSIONS)}")
    return f"empty train set: no images in {train_dir}"


def _mask_stem(mask: Path, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if suffix and mask.stem.endswith(suffix):
            return mask.stem[: -len(suffix)]
    return mask.stem


MVTEC = register(
    Layout(
        name="mvtec",
        description="MVTec AD as released: <category>/train/good/*.png, test/<defect>/*.png, ground_truth/<defect>/<stem>_mask.png",
        list_categories=list_mvtec_like,
        load_category=lambda root, category: _load_mvtec_like(root, category, (".png",), mask_suffixes=("_mask",)),
        looks_like=looks_like_mvtec,
        standin=mvtec_standin,
        published_counts=MVTEC_COUNTS,
    )
)
FOLDER = register(
    Layout(
        name="folder",
        description="MVTec's layout with any category names and image extension; masks <stem>_mask.<ext> or <stem>.<ext>",
        list_categories=list_mvtec_like,
        load_category=lambda root, category: _load_mvtec_like(
            root, category, IMAGE_EXTENSIONS, mask_suffixes=("_mask", "")
        ),
        looks_like=lambda root: False,  # any MVTec-like copy is suggested as mvtec
        standin=mvtec_standin,
    )
)
