"""Dataset layouts: MVTec AD, VisA and a user folder in MVTec layout.

Each layout turns a dataset copy on disk into per-category lists of
:class:`Sample` records. Structural problems (a missing root or category, an
empty train set, an anomalous image without its mask, a mask without its image)
raise :class:`~moleflow.errors.DatasetError` with one line naming the path at
fault. Reading the pixels is :mod:`moleflow.data.check`'s and
:mod:`moleflow.data.transforms`' business.

Layouts, as released:

* ``mvtec``: ``<root>/<category>/train/good/*.png``, ``test/{good,<defect>}/*.png``,
  ``ground_truth/<defect>/<stem>_mask.png``.
* ``visa``: ``<root>/<category>/Data/Images/{Normal,Anomaly}/*.JPG``,
  ``<root>/<category>/Data/Masks/Anomaly/*.png``, split by
  ``<root>/split_csv/1cls.csv`` (header ``object,split,label,image,mask``; paths
  relative to ``<root>``). VisA masks hold class ids (1, 2, ...), not 255.
* ``folder``: the MVTec layout with any category names and any common image
  extension; masks are ``<stem>_mask.<ext>`` or ``<stem>.<ext>``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from moleflow.errors import DatasetError

DatasetKind = Literal["mvtec", "visa", "folder"]
DATASET_KINDS: tuple[str, ...] = ("mvtec", "visa", "folder")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VISA_SPLIT_CSV = Path("split_csv") / "1cls.csv"
VISA_COLUMNS = ["object", "split", "label", "image", "mask"]


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


def _require_root(root: Path) -> None:
    if not root.is_dir():
        raise DatasetError(f"dataset root not found: {root}")


def list_categories(kind: str, root: str | Path) -> list[str]:
    """Return the sorted category names present in a dataset copy."""
    root = Path(root)
    _require_root(root)
    if kind in ("mvtec", "folder"):
        return sorted(p.name for p in root.iterdir() if (p / "train").is_dir() or (p / "test").is_dir())
    if kind == "visa":
        return sorted({row["object"] for row in _read_visa_csv(root)})
    raise DatasetError(f"unknown dataset kind {kind!r}; expected one of {', '.join(DATASET_KINDS)}")


def looks_like(root: str | Path) -> str | None:
    """The layout a dataset copy looks like (``visa`` when it has ``split_csv/1cls.csv``, ``mvtec``
    when a category folder holds ``train/good``), or ``None``."""
    root = Path(root)
    if (root / VISA_SPLIT_CSV).is_file():
        return "visa"
    if root.is_dir() and any((p / "train" / "good").is_dir() for p in root.iterdir() if p.is_dir()):
        return "mvtec"
    return None


def no_categories(kind: str, root: str | Path) -> DatasetError:
    """The error for a copy without categories of layout ``kind``, saying which layout it looks like."""
    guess = looks_like(root)
    hint = f"; it looks like a {guess} copy: set dataset.kind={guess}" if guess and guess != kind else ""
    return DatasetError(f"no category found under {root} for dataset.kind={kind}{hint}")


MIN_TRAIN_IMAGES = 2  # the router's (and DNE's) covariance of one feature per training image


def load_category(kind: str, root: str | Path, category: str) -> CategoryData:
    """Read the sample lists of ``category`` in a dataset copy of layout ``kind``."""
    root = Path(root)
    _require_root(root)
    if kind == "mvtec":
        data = _load_mvtec_like(root, category, (".png",), mask_suffixes=("_mask",))
    elif kind == "folder":
        data = _load_mvtec_like(root, category, IMAGE_EXTENSIONS, mask_suffixes=("_mask", ""))
    elif kind == "visa":
        data = _load_visa(root, category)
    else:
        raise DatasetError(f"unknown dataset kind {kind!r}; expected one of {', '.join(DATASET_KINDS)}")
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


def _read_visa_csv(root: Path) -> list[dict[str, str]]:
    path = root / VISA_SPLIT_CSV
    if not path.is_file():
        raise DatasetError(f"VisA split file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or [c.strip() for c in reader.fieldnames] != VISA_COLUMNS:
            raise DatasetError(f"bad header in {path}: expected {','.join(VISA_COLUMNS)}, got {reader.fieldnames}")
        return [{k.strip(): (v or "").strip() for k, v in row.items()} for row in reader]


def _load_visa(root: Path, category: str) -> CategoryData:
    rows = [r for r in _read_visa_csv(root) if r["object"] == category]
    base = root / category
    if not rows or not base.is_dir():
        raise DatasetError(f"category not found: {base}" if not base.is_dir() else f"category {category!r} not in {root / VISA_SPLIT_CSV}")
    data = CategoryData(category)
    referenced_masks: set[Path] = set()
    for row in rows:
        image = root / row["image"]
        if not image.is_file():
            raise DatasetError(f"image listed in {root / VISA_SPLIT_CSV} not found: {image}")
        anomalous = row["label"].lower() in ("anomaly", "anomalous", "1", "bad")
        if row["split"] not in ("train", "test"):
            raise DatasetError(f"bad split {row['split']!r} for {image} in {root / VISA_SPLIT_CSV}")
        mask: Path | None = None
        if anomalous:
            if not row["mask"] or not (root / row["mask"]).is_file():
                raise DatasetError(f"anomalous image without its mask: {image}" + (f" (missing {root / row['mask']})" if row["mask"] else ""))
            mask = root / row["mask"]
            referenced_masks.add(mask.resolve())
        sample = Sample(image, mask, int(anomalous), "anomaly" if anomalous else "good")
        if row["split"] == "train":
            if anomalous:
                raise DatasetError(f"anomalous image in the train split: {image}")
            data.train.append(sample)
        else:
            data.test.append(sample)
    if not data.train:
        raise DatasetError(f"empty train set for {category!r} in {root / VISA_SPLIT_CSV}")
    image_stems = {s.image.stem for s in data.test if s.label == 1}
    for mask in images_in(base / "Data" / "Masks" / "Anomaly", IMAGE_EXTENSIONS):
        if mask.resolve() not in referenced_masks and mask.stem not in image_stems:
            raise DatasetError(f"mask without its image: {mask}")
    return data
