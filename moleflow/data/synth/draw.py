"""Drawing primitives for the generated dataset: smooth noise, blobs, polylines.

All functions work on float32 arrays in ``[0, 1]`` of shape ``(H, W)`` (alpha maps)
or ``(H, W, 3)`` (images) and take an explicit ``numpy.random.Generator`` so that
every picture is a pure function of its seed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(y, x)``, each ``(size, size)`` float32."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    return np.meshgrid(coords, coords, indexing="ij")


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth value noise ``(size, size)`` with roughly ``cells`` features per side, zero mean, unit std."""
    coarse = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    out = np.asarray(img, dtype=np.float32)
    return (out - out.mean()) / (out.std() + 1e-6)


def blob_alpha(
    rng: np.random.Generator, size: int, center: tuple[float, float], radius: float, roughness: float = 0.25, edge: float = 1.5
) -> np.ndarray:
    """Soft alpha ``(size, size)`` of an irregular blob (radius perturbed by a few sinusoids)."""
    y, x = grid(size)
    dy, dx = y - center[0], x - center[1]
    theta = np.arctan2(dy, dx)
    dist = np.hypot(dy, dx)
    boundary = np.ones_like(theta)
    for k in range(2, 6):
        boundary += roughness / k * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    return np.clip((radius * boundary - dist) / edge + 0.5, 0.0, 1.0)


def ellipse_alpha(
    size: int, center: tuple[float, float], radii: tuple[float, float], angle: float, edge: float = 1.0
) -> np.ndarray:
    """Soft alpha ``(size, size)`` of a rotated ellipse (``radii`` = (along, across))."""
    y, x = grid(size)
    dy, dx = y - center[0], x - center[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    r = np.sqrt((u / radii[0]) ** 2 + (v / radii[1]) ** 2)
    return np.clip((1.0 - r) * min(radii) / edge + 0.5, 0.0, 1.0)


def polyline_alpha(size: int, points: np.ndarray, width: float, edge: float = 0.8) -> np.ndarray:
    """Soft alpha ``(size, size)`` of a polyline through ``points`` ``(K, 2)`` as ``(y, x)``."""
    y, x = grid(size)
    dist = np.full((size, size), np.inf, dtype=np.float32)
    for (y0, x0), (y1, x1) in zip(points[:-1], points[1:]):
        vy, vx = y1 - y0, x1 - x0
        length2 = vy * vy + vx * vx + 1e-9
        t = np.clip(((y - y0) * vy + (x - x0) * vx) / length2, 0.0, 1.0)
        dist = np.minimum(dist, np.hypot(y - (y0 + t * vy), x - (x0 + t * vx)))
    return np.clip((width / 2.0 - dist) / edge + 0.5, 0.0, 1.0)


def random_walk(
    rng: np.random.Generator, start: tuple[float, float], angle: float, steps: int, step: float, jitter: float
) -> np.ndarray:
    """Points ``(steps + 1, 2)`` of a jagged path (a crack) from ``start`` heading ``angle``."""
    points = [np.array(start, dtype=np.float32)]
    heading = angle
    for _ in range(steps):
        heading += rng.normal(0.0, jitter)
        points.append(points[-1] + step * np.array([np.sin(heading), np.cos(heading)], dtype=np.float32))
    return np.stack(points)


def blend(image: np.ndarray, color: np.ndarray | float, alpha: np.ndarray) -> np.ndarray:
    """Alpha-blend ``color`` (RGB or gray) over ``image`` ``(H, W, 3)`` with alpha ``(H, W)``."""
    a = alpha[..., None]
    return image * (1.0 - a) + np.asarray(color, dtype=np.float32) * a


def photometric(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Random lighting (gain, offset, linear gradient) applied to ``image`` ``(H, W, 3)``."""
    size = image.shape[0]
    y, x = grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = ((np.cos(angle) * x + np.sin(angle) * y) / size - 0.5) * rng.uniform(0.0, 0.10)
    gain = rng.uniform(0.92, 1.08)
    offset = rng.uniform(-0.03, 0.03)
    return image * gain + offset + ramp[..., None]


def sensor_noise(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Add Gaussian sensor noise of a random level and clip to ``[0, 1]``."""
    sigma = rng.uniform(0.01, 0.025)
    return np.clip(image + rng.normal(0.0, sigma, image.shape).astype(np.float32), 0.0, 1.0)
