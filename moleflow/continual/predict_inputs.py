"""What predict checks of its inputs before it scores them: the image files, their size and mode against the
run's training images, and ``--normal`` images that are the run's own training images."""

from __future__ import annotations

import hashlib
from pathlib import Path

from PIL import Image

from moleflow.config import Config
from moleflow.data.layouts import IMAGE_EXTENSIONS, images_in, load_category
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
                with Image.open(file) as img:
                    sizes.add(img.size)
                    modes.add(img.mode)
            except (OSError, SyntaxError, ValueError):  # the run's copy changed since; check against what reads
                continue
        if sizes:
            out[category] = (sizes, modes)
    return out


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def training_duplicates(normal: list[Path], train: dict[str, list[Path]]) -> list[tuple[Path, str]]:
    """The ``--normal`` images whose bytes equal one of the run's training images, with its category.

    Only training files of the same byte size are hashed, so the check costs little.
    """
    by_size: dict[int, list[tuple[Path, str]]] = {}
    for category, files in train.items():
        for file in files:
            try:
                by_size.setdefault(file.stat().st_size, []).append((file, category))
            except OSError:
                continue
    found, known = [], {}
    for path in normal:
        candidates = by_size.get(path.stat().st_size, [])
        if not candidates:
            continue
        digest = _digest(path)
        for file, category in candidates:
            if file not in known:
                known[file] = _digest(file)
            if known[file] == digest:
                found.append((path, category))
                break
    return found


def check_images(paths: list[Path], formats: dict[str, tuple[set[tuple[int, int]], set[str]]]) -> None:
    """Refuse, in one line, an image whose size or mode no training image of the run had."""
    if not formats:
        return
    sizes = set().union(*(s for s, _ in formats.values()))
    modes = set().union(*(m for _, m in formats.values()))
    for path in paths:
        try:
            with Image.open(path) as img:
                size, mode = img.size, img.mode
        except (OSError, SyntaxError, ValueError) as exc:
            raise DatasetError(f"unreadable image: {path} ({exc})") from None
        if size not in sizes:
            raise DatasetError(
                f"{path}: size {size[0]}x{size[1]}, but the run trained on "
                f"{', '.join(f'{w}x{h}' for w, h in sorted(sizes))} images"
            )
        if mode not in modes:
            raise DatasetError(f"{path}: mode {mode}, but the run trained on {', '.join(sorted(modes))} images")


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
