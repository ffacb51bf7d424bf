"""What a generated product category is, and the defects several categories share.

Each category draws a normal image from random pose and appearance parameters; each
defect changes that image (or redraws it with a part missing or moved). The
ground-truth mask is computed by the generator from the difference between the
normal and the defective picture, so it is exact. Lengths are given for a 128-pixel
image and scaled by ``size / 128``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from moleflow.data.synth.draw import blend, blob_alpha, polyline_alpha, random_walk

Params = dict[str, Any]
DefectFn = Callable[[np.random.Generator, Params, np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class Category:
    """A generated product category.

    Attributes:
        name: folder name.
        kind: ``"texture"`` or ``"object"``.
        grayscale: whether the PNGs are written single-channel (as MVTec's screw).
        sample: ``(rng, size) -> params`` of a normal instance.
        draw: ``(params, size) -> image (H, W, 3)`` in ``[0, 1]``.
        defects: defect name -> ``(rng, params, image, size) -> defective image``.
    """

    name: str
    kind: str
    grayscale: bool
    sample: Callable[[np.random.Generator, int], Params]
    draw: Callable[[Params, int], np.ndarray]
    defects: dict[str, DefectFn]


def point(rng: np.random.Generator, size: int, margin: float = 0.2) -> tuple[float, float]:
    return (rng.uniform(margin, 1 - margin) * size, rng.uniform(margin, 1 - margin) * size)


# ---------------------------------------------------------------- shared defects
def scratch(rng: np.random.Generator, params: Params, image: np.ndarray, size: int, color: float = 0.95) -> np.ndarray:
    s = size / 128
    center = params.get("defect_center") or point(rng, size, 0.3)
    angle = rng.uniform(0, np.pi)
    half = rng.uniform(14, 26) * s
    bend = rng.normal(0, 3 * s)
    t = np.linspace(-1, 1, 6)
    ys = center[0] + t * half * np.sin(angle) + bend * (1 - t**2) * np.cos(angle)
    xs = center[1] + t * half * np.cos(angle) - bend * (1 - t**2) * np.sin(angle)
    alpha = polyline_alpha(size, np.stack([ys, xs], 1), rng.uniform(2.5, 3.5) * s) * rng.uniform(0.75, 0.95)
    return blend(image, np.asarray(params.get("scratch_color", color)), alpha)


def crack(rng: np.random.Generator, params: Params, image: np.ndarray, size: int) -> np.ndarray:
    """A jagged dark line; its colour is the category's shadow tone (``crack_color``)."""
    s = size / 128
    start = params.get("defect_center") or point(rng, size, 0.3)
    points = random_walk(rng, start, rng.uniform(0, 2 * np.pi), steps=18, step=2.6 * s, jitter=0.45)
    alpha = polyline_alpha(size, points, rng.uniform(2.2, 3.2) * s)
    return blend(image, np.asarray(params.get("crack_color", 0.06)), alpha * 0.9)


def stain(rng: np.random.Generator, params: Params, image: np.ndarray, size: int) -> np.ndarray:
    s = size / 128
    center = params.get("defect_center") or point(rng, size, 0.25)
    alpha = blob_alpha(rng, size, center, rng.uniform(9, 13) * s, roughness=0.35, edge=2.5 * s)
    color = np.array(rng.choice([[0.35, 0.22, 0.08], [0.15, 0.35, 0.12], [0.55, 0.1, 0.1], [0.1, 0.1, 0.1]]), dtype=np.float32)
    return blend(image, color, alpha * rng.uniform(0.75, 0.9))


def hole(rng: np.random.Generator, params: Params, image: np.ndarray, size: int) -> np.ndarray:
    """A hole showing what lies behind the surface (``hole_color``)."""
    s = size / 128
    center = params.get("defect_center") or point(rng, size, 0.25)
    alpha = blob_alpha(rng, size, center, rng.uniform(7, 11) * s, roughness=0.3, edge=1.0 * s)
    return blend(image, np.asarray(params.get("hole_color", 0.03)), alpha)


# ---------------------------------------------------------------- fabric
