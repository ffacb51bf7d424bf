"""Image and mask loading with the paper's preprocessing.

Images: resize (Lanczos) the shorter side to ``resize`` keeping the aspect ratio
(``mode="short_side"``, the authors' loaders) or the whole image to ``resize x resize``
(``mode="square"``), then centre crop ``crop x crop``, RGB (grayscale PNGs are replicated to three channels),
normalised with the backbone's own mean and standard deviation (default: ImageNet's). Masks follow the same geometry with nearest-neighbour
resampling and are binarised with ``> 0`` (VisA masks hold class ids, not 255).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from moleflow.errors import DatasetError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


#: The largest image read (width x height): 40 megapixels, about 120 MB decoded as RGB (MVTec AD's largest is
#: 1 MP, VisA's 1.6 MP). Larger files are refused from their header, before any decoding.
MAX_IMAGE_PIXELS = 40_000_000


def too_large(path: str | Path, size: tuple[int, int]) -> DatasetError:
    return DatasetError(
        f"image too large: {path} is {size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.0f} megapixels); images above "
        f"{MAX_IMAGE_PIXELS // 1_000_000} megapixels are refused before decoding (resize it first)"
    )


@contextlib.contextmanager
def opened(path: str | Path) -> Iterator[Image.Image]:
    """``Image.open(path)``, not decoded yet, refused in one line when unreadable or above :data:`MAX_IMAGE_PIXELS`.

    Raises:
        DatasetError: naming the file (a truncated or unknown file, a decompression bomb, an image too large).
    """
    try:
        with Image.open(path) as img:
            if img.size[0] * img.size[1] > MAX_IMAGE_PIXELS:
                raise too_large(path, img.size)
            yield img
    except Image.DecompressionBombError as exc:
        raise DatasetError(
            f"image too large: {path} ({str(exc).split('.')[0]}); images above {MAX_IMAGE_PIXELS // 1_000_000} "
            "megapixels are refused before decoding"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL raises OSError for truncated files
        raise DatasetError(f"unreadable or truncated image: {path} ({exc})") from None


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image; raise ``DatasetError`` naming a bad or too large file."""
    with opened(path) as img:
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise DatasetError(f"unreadable or truncated image: {path} ({exc})") from None
        return img.copy()


def resized_size(width: int, height: int, resize: int, mode: str) -> tuple[int, int]:
    """``(width, height)`` after resizing: ``square`` gives ``(resize, resize)``; ``short_side``
    scales the shorter side to ``resize`` and the other by the same factor (rounded)."""
    if mode == "square" or width == height:
        return resize, resize
    if mode != "short_side":
        raise ValueError(f"resize mode must be 'short_side' or 'square', got {mode!r}")
    if width < height:
        return resize, max(resize, round(height * resize / width))
    return max(resize, round(width * resize / height)), resize


def _resize(img: Image.Image, resize: int, mode: str, resample: Image.Resampling) -> Image.Image:
    return img.resize(resized_size(*img.size, resize, mode), resample)


def _center_crop(img: Image.Image, crop: int) -> Image.Image:
    width, height = img.size
    left = (width - crop) // 2
    top = (height - crop) // 2
    return img.crop((left, top, left + crop, top + crop))


def _rgb_cropped(path: str | Path, resize: int, crop: int, mode: str) -> Image.Image:
    """The image at ``path`` as RGB, resized (Lanczos, ``mode``) and centre-cropped to ``crop x crop``."""
    return _center_crop(_resize(open_image(path).convert("RGB"), resize, mode, Image.Resampling.LANCZOS), crop)


def load_image(
    path: str | Path, resize: int, crop: int,
    mean: tuple[float, ...] | np.ndarray = IMAGENET_MEAN, std: tuple[float, ...] | np.ndarray = IMAGENET_STD,
    mode: str = "square",
) -> np.ndarray:
    """Load an image as a float32 array ``(3, crop, crop)``, normalised per channel as ``(x - mean) / std``."""
    arr = np.asarray(_rgb_cropped(path, resize, crop, mode), dtype=np.float32) / 255.0
    arr = np.divide(arr - np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32), dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_display_image(path: str | Path, resize: int, crop: int, mode: str = "square") -> np.ndarray:
    """Load an image for plots: uint8 ``(crop, crop, 3)``, same geometry as ``load_image``."""
    return np.asarray(_rgb_cropped(path, resize, crop, mode), dtype=np.uint8)


def load_mask(path: str | Path | None, resize: int, crop: int, mode: str = "square") -> np.ndarray:
    """Load a ground-truth mask as bool ``(crop, crop)``; ``None`` gives an all-false mask."""
    if path is None:
        return np.zeros((crop, crop), dtype=bool)
    img = open_image(path)
    if img.mode not in ("L", "1", "P", "I", "I;16"):
        img = img.convert("L")
    img = _resize(img, resize, mode, Image.Resampling.NEAREST)
    return np.asarray(_center_crop(img, crop)) > 0
