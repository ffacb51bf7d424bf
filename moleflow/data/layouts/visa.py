"""VisA (``visa``): ``<root>/<category>/Data/Images/{Normal,Anomaly}/*.JPG``,
``<root>/<category>/Data/Masks/Anomaly/*.png``, split by ``<root>/split_csv/1cls.csv`` (header
``object,split,label,image,mask``; paths relative to ``<root>``). VisA masks hold class ids (1, 2, ...), not 255.
"""

from __future__ import annotations

import csv
from pathlib import Path

from moleflow.data.layouts.base import IMAGE_EXTENSIONS, CategoryData, Layout, Sample, images_in, register
from moleflow.errors import DatasetError

VISA_SPLIT_CSV = Path("split_csv") / "1cls.csv"
VISA_COLUMNS = ["object", "split", "label", "image", "mask"]
#: VisA's published 1cls split sizes (training images, test images) per category.
VISA_COUNTS: dict[str, tuple[int, int]] = {
    "candle": (900, 200),
    "capsules": (542, 160),
    "cashew": (450, 150),
    "chewinggum": (453, 150),
    "fryum": (450, 150),
    "macaroni1": (900, 200),
    "macaroni2": (900, 200),
    "pcb1": (904, 200),
    "pcb2": (901, 200),
    "pcb3": (905, 201),
    "pcb4": (904, 201),
    "pipe_fryum": (450, 150),
}


def list_visa(root: Path) -> list[str]:
    """The objects of the split file."""
    return sorted({row["object"] for row in _read_visa_csv(root)})


def visa_standin(root: Path, size: int, train: int) -> list[str]:
    """Two noise categories in VisA's layout (JPG, 1.5 times as wide as high, class-id masks)."""
    from moleflow.data.synth.standin import make_visa

    make_visa(root, ["candle", "pcb1"], size=size, train=train, aspect=1.5, test_normal=1, anomalous=2)
    return ["candle", "pcb1"]


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


VISA = register(
    Layout(
        name="visa",
        description="VisA: <category>/Data/Images/{Normal,Anomaly}/*.JPG split by split_csv/1cls.csv",
        list_categories=list_visa,
        load_category=_load_visa,
        looks_like=lambda root: (root / VISA_SPLIT_CSV).is_file(),
        standin=visa_standin,
        published_counts=VISA_COUNTS,
    )
)
