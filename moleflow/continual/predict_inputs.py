"""What predict checks of its inputs before it scores them: the image files, their size and mode against the
run's training images, and ``--normal`` images that are the run's own training images."""

from __future__ import annotations

import hashlib
from pathlib import Path

from moleflow.config import Config
from moleflow.data.layouts import IMAGE_EXTENSIONS, images_in, load_category
from moleflow.data.transforms import opened
from moleflow.errors import DatasetError, MoleflowError


def list_images(inputs: list[str]) -> list[Path]:
    """The image files named, and those directly inside the folders named, in order (folders sorted)."""
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = images_in(path)
            if not found:
                raise DatasetError(f"no image ({'/'.join(IMAGE_EXTENSIONS)}) in {path}")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise DatasetError(f"no such image or folder: {path}")
    return out


def training_images(config: Config, categories: list[str]) -> dict[str, list[Path]] | None:
    """Per category, the run's training image files, or ``None`` when its dataset is no longer where it was."""
    ds = config["dataset"]
    out: dict[str, list[Path]] = {}
    for category in categories:
        try:
            out[category] = [sample.image for sample in load_category(ds["kind"], Path(ds["root"]), category).train]
        except MoleflowError:
            return None
    return out


def training_formats(train: dict[str, list[Path]]) -> dict[str, tuple[set[tuple[int, int]], set[str]]]:
    """Per category, the ``(sizes, modes)`` of (up to eight of) its training images."""
    out: dict[str, tuple[set[tuple[int, int]], set[str]]] = {}
    for category, files in train.items():
        sizes, modes = set(), set()
        for file in files[:8]:
            try:
                with opened(file) as img:
                    sizes.add(img.size)
                    modes.add(img.mode)
            except DatasetError:  # the run's copy changed since; check against what reads
                continue
        if sizes:
            out[category] = (sizes, modes)
    return out


def _pixels(path: Path) -> tuple[tuple[int, int], str] | None:
    """The ``(size, mode)`` of an image from its header (nothing decoded), ``None`` when unreadable."""
    try:
        with opened(path) as img:
            return img.size, img.mode
    except DatasetError:
        return None


def pixel_digest(path: Path) -> str | None:
    """SHA-256 of an image's decoded pixels, size and mode: the same picture saved as PNG, BMP or TIFF (or
    re-encoded) has one digest; ``None`` when unreadable."""
    try:
        with opened(path) as img:
            img.load()
            sha = hashlib.sha256(f"{img.size}|{img.mode}|".encode())
            sha.update(img.tobytes())
            return sha.hexdigest()
    except DatasetError:
        return None


def training_duplicates(normal: list[Path], train: dict[str, list[Path]]) -> list[tuple[Path, str]]:
    """The ``--normal`` images whose decoded pixels equal one of the run's training images, with its category.

    Images are compared by their decoded pixels, not their bytes, so a training image saved again in another
    lossless format is found. Only training images of the same size and mode as some ``--normal`` image are
    decoded (each once), so the check costs one decode per such training image.
    """
    shapes = {path: _pixels(path) for path in normal}
    wanted = {shape for shape in shapes.values() if shape is not None}
    if not wanted:
        return []
    by_digest: dict[str, str] = {}
    for category, files in train.items():
        for file in files:
            if _pixels(file) in wanted:
                found = pixel_digest(file)
                if found is not None:
                    by_digest.setdefault(found, category)
    same = []
    for path in normal:
        found = pixel_digest(path) if shapes[path] is not None else None
        if found is not None and found in by_digest:
            same.append((path, by_digest[found]))
    return same


def check_images(
    paths: list[Path], formats: dict[str, tuple[set[tuple[int, int]], set[str]]], match: bool = False
) -> str | None:
    """Refuse, in one line, an image whose size or mode no training image of the run had; with ``match``
    (``--match-training``) accept them and return the note that says how many were adapted."""
    if not formats:
        return None
    sizes = set().union(*(s for s, _ in formats.values()))
    modes = set().union(*(m for _, m in formats.values()))
    advice = "; --match-training resizes and converts them as the training images were"
    other = 0
    for path in paths:
        with opened(path) as img:  # unreadable or too large: one line naming it
            size, mode = img.size, img.mode
        if size not in sizes and not match:
            raise DatasetError(
                f"{path}: size {size[0]}x{size[1]}, but the run trained on "
                f"{', '.join(f'{w}x{h}' for w, h in sorted(sizes))} images{advice}"
            )
        if mode not in modes and not match:
            raise DatasetError(f"{path}: mode {mode}, but the run trained on {', '.join(sorted(modes))} images{advice}")
        other += size not in sizes or mode not in modes
    if not other:
        return None
    return (
        f"note: --match-training: {other} of {len(paths)} images differ in size or mode from the run's training "
        f"images ({', '.join(f'{w}x{h}' for w, h in sorted(sizes))}, {', '.join(sorted(modes))}); they were resized, "
        "cropped and converted to RGB as the training images were"
    )


def refuse_training_normal(normal: list[Path], train: dict[str, list[Path]], allow: bool, notes: list[str]) -> None:
    """Refuse (or, with ``allow``, note) ``--normal`` images that are the run's own training images."""
    same = training_duplicates(normal, train)
    if not same:
        return
    first, category = same[0]
    text = (
        f"{len(same)} of the {len(normal)} --normal images are the run's own training images (e.g. {first}, "
        f"a {category} training image): their scores are low by construction, so a threshold from them flags "
        "normal images"
    )
    if not allow:
        raise MoleflowError(f"{text}; give held-out normal images, or --allow-training-normal to proceed")
    notes.append(f"note: {text} (proceeding: --allow-training-normal)")
