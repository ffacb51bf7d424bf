"""The three generated textures: ``fabric``, ``wood`` and ``tile``."""

from __future__ import annotations

import numpy as np

from moleflow.data.synth.category import Category, Params, crack, hole, point, scratch, stain
from moleflow.data.synth.draw import blend, blob_alpha, grid, polyline_alpha, smooth_noise

def _fabric_sample(rng: np.random.Generator, size: int) -> Params:
    return {
        "angle": rng.uniform(-0.14, 0.14),
        "period": rng.uniform(5.5, 7.0) * size / 128,
        "phase": rng.uniform(0, 50, 2),
        "color": np.array([0.33, 0.42, 0.62]) * rng.uniform(0.8, 1.2) + rng.normal(0, 0.04, 3),
        "fuzz": rng.integers(0, 2**31),
    }


def _fabric_hole(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    """A hole showing the backing, which is about as dark as the weave's shadows."""
    return hole(rng, {**p, "hole_color": p["color"] * 0.5}, image, size)


def _fabric_draw(p: Params, size: int) -> np.ndarray:
    y, x = grid(size)
    u = x * np.cos(p["angle"]) + y * np.sin(p["angle"]) + p["phase"][0]
    v = -x * np.sin(p["angle"]) + y * np.cos(p["angle"]) + p["phase"][1]
    period = p["period"]
    over = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    warp = 0.5 + 0.5 * np.cos(2 * np.pi * (u / period - np.floor(u / period) - 0.5) / 2) ** 2
    weft = 0.5 + 0.5 * np.cos(2 * np.pi * (v / period - np.floor(v / period) - 0.5) / 2) ** 2
    shade = np.where(over, warp, weft * 0.9)
    fuzz = smooth_noise(np.random.default_rng(p["fuzz"]), size, size // 3) * 0.04
    return np.clip(p["color"] * (0.55 + 0.45 * shade + fuzz)[..., None], 0, 1).astype(np.float32)


def _fabric_thread(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    """A pulled thread: a bright band along the weave direction."""
    s = size / 128
    cy, cx = point(rng, size, 0.3)
    along = p["angle"] + (np.pi / 2 if rng.random() < 0.5 else 0.0)
    half = rng.uniform(18, 30) * s
    points = np.array([[cy - half * np.sin(along), cx - half * np.cos(along)], [cy + half * np.sin(along), cx + half * np.cos(along)]])
    alpha = polyline_alpha(size, points, rng.uniform(3.0, 4.0) * s)
    return blend(image, np.clip(p["color"] * 1.45, 0, 1), alpha * 0.85)


FABRIC = Category("fabric", "texture", False, _fabric_sample, _fabric_draw, {"hole": _fabric_hole, "stain": stain, "thread": _fabric_thread})


# ---------------------------------------------------------------- wood
def _wood_sample(rng: np.random.Generator, size: int) -> Params:
    return {
        "angle": rng.uniform(-0.25, 0.25),
        "period": rng.uniform(9, 13) * size / 128,
        "phase": rng.uniform(0, 2 * np.pi),
        "turb": rng.integers(0, 2**31),
        "light": np.array([0.78, 0.58, 0.36]) + rng.normal(0, 0.03, 3),
        "dark": np.array([0.52, 0.33, 0.17]) + rng.normal(0, 0.03, 3),
    }


def _wood_defect_colors(p: Params) -> Params:
    return {**p, "crack_color": p["dark"] * 0.55, "hole_color": p["dark"] * 0.65, "scratch_color": np.clip(p["light"] * 1.12, 0, 1)}


def _wood_draw(p: Params, size: int) -> np.ndarray:
    y, x = grid(size)
    u = x * np.cos(p["angle"]) + y * np.sin(p["angle"])
    trng = np.random.default_rng(p["turb"])
    turbulence = smooth_noise(trng, size, 3) * 2.2 + smooth_noise(trng, size, 9) * 0.4
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * u / p["period"] + p["phase"] + turbulence)
    rings = rings**1.6
    grain = smooth_noise(trng, size, size // 2) * 0.03
    img = p["light"] * (1 - rings[..., None]) + p["dark"] * rings[..., None]
    return np.clip(img + grain[..., None], 0, 1).astype(np.float32)


WOOD = Category("wood", "texture", False, _wood_sample, _wood_draw, {
    "scratch": lambda rng, p, img, size: scratch(rng, _wood_defect_colors(p), img, size),
    "crack": lambda rng, p, img, size: crack(rng, _wood_defect_colors(p), img, size),
    "hole": lambda rng, p, img, size: hole(rng, _wood_defect_colors(p), img, size),
})


# ---------------------------------------------------------------- tile
def _tile_sample(rng: np.random.Generator, size: int) -> Params:
    return {
        "period": rng.uniform(28, 34) * size / 128,
        "offset": rng.uniform(0, 40, 2) * size / 128,
        "grout": rng.uniform(2.0, 3.0) * size / 128,
        "base": np.array([0.82, 0.8, 0.74]) + rng.normal(0, 0.02, 3),
        "tiles": rng.normal(0, 0.025, (16, 16)),
        "speckle": rng.integers(0, 2**31),
    }


def _tile_draw(p: Params, size: int) -> np.ndarray:
    y, x = grid(size)
    u, v = (x + p["offset"][1]) / p["period"], (y + p["offset"][0]) / p["period"]
    iu, iv = np.floor(u).astype(int) % 16, np.floor(v).astype(int) % 16
    du = np.minimum(u - np.floor(u), np.ceil(u) - u) * p["period"]
    dv = np.minimum(v - np.floor(v), np.ceil(v) - v) * p["period"]
    grout = np.clip((p["grout"] - np.minimum(du, dv)) + 0.5, 0, 1)
    srng = np.random.default_rng(p["speckle"])
    speckle = (smooth_noise(srng, size, size // 2) > 1.6).astype(np.float32) * -0.18
    tone = p["tiles"][iv, iu] + speckle + smooth_noise(srng, size, 6) * 0.015
    img = p["base"] + tone[..., None]
    img = blend(img, np.array([0.42, 0.40, 0.38]), grout)
    return np.clip(img, 0, 1).astype(np.float32)


def _tile_chip(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    """A chipped tile corner: a rough notch at a grout crossing showing the darker substrate."""
    period = p["period"]
    k = rng.integers(1, int(size / period) + 1, 2)
    center = (k[0] * period - p["offset"][0], k[1] * period - p["offset"][1])
    center = (float(np.clip(center[0], 10, size - 10)), float(np.clip(center[1], 10, size - 10)))
    alpha = blob_alpha(rng, size, center, rng.uniform(8, 11) * size / 128, roughness=0.45, edge=1.0)
    return blend(image, np.array([0.45, 0.38, 0.3]), alpha)


TILE = Category("tile", "texture", False, _tile_sample, _tile_draw, {"crack": lambda rng, p, img, size: crack(rng, {**p, "crack_color": 0.3}, img, size), "chip": _tile_chip, "contamination": stain})


