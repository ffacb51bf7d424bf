"""The six product categories of the generated dataset and their defects.

Three textures (``fabric``, ``wood``, ``tile``) and three objects (``cap``,
``screw``, ``pcb``). Each category draws a normal image from random pose and
appearance parameters; each defect changes that image (or redraws it with a part
missing or moved). The ground-truth mask is computed by the generator from the
difference between the normal and the defective picture, so it is exact.
Lengths are given for a 128-pixel image and scaled by ``size / 128``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from moleflow.data.synth_draw import (
    blend,
    blob_alpha,
    ellipse_alpha,
    grid,
    polyline_alpha,
    random_walk,
    smooth_noise,
)

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


def _point(rng: np.random.Generator, size: int, margin: float = 0.2) -> tuple[float, float]:
    return (rng.uniform(margin, 1 - margin) * size, rng.uniform(margin, 1 - margin) * size)


# ---------------------------------------------------------------- shared defects
def _scratch(rng: np.random.Generator, params: Params, image: np.ndarray, size: int, color: float = 0.95) -> np.ndarray:
    s = size / 128
    center = params.get("defect_center") or _point(rng, size, 0.3)
    angle = rng.uniform(0, np.pi)
    half = rng.uniform(14, 26) * s
    bend = rng.normal(0, 3 * s)
    t = np.linspace(-1, 1, 6)
    ys = center[0] + t * half * np.sin(angle) + bend * (1 - t**2) * np.cos(angle)
    xs = center[1] + t * half * np.cos(angle) - bend * (1 - t**2) * np.sin(angle)
    alpha = polyline_alpha(size, np.stack([ys, xs], 1), rng.uniform(2.5, 3.5) * s) * rng.uniform(0.75, 0.95)
    return blend(image, np.asarray(params.get("scratch_color", color)), alpha)


def _crack(rng: np.random.Generator, params: Params, image: np.ndarray, size: int) -> np.ndarray:
    """A jagged dark line; its colour is the category's shadow tone (``crack_color``)."""
    s = size / 128
    start = params.get("defect_center") or _point(rng, size, 0.3)
    points = random_walk(rng, start, rng.uniform(0, 2 * np.pi), steps=18, step=2.6 * s, jitter=0.45)
    alpha = polyline_alpha(size, points, rng.uniform(2.2, 3.2) * s)
    return blend(image, np.asarray(params.get("crack_color", 0.06)), alpha * 0.9)


def _stain(rng: np.random.Generator, params: Params, image: np.ndarray, size: int) -> np.ndarray:
    s = size / 128
    center = params.get("defect_center") or _point(rng, size, 0.25)
    alpha = blob_alpha(rng, size, center, rng.uniform(9, 13) * s, roughness=0.35, edge=2.5 * s)
    color = np.array(rng.choice([[0.35, 0.22, 0.08], [0.15, 0.35, 0.12], [0.55, 0.1, 0.1], [0.1, 0.1, 0.1]]), dtype=np.float32)
    return blend(image, color, alpha * rng.uniform(0.75, 0.9))


def _hole(rng: np.random.Generator, params: Params, image: np.ndarray, size: int) -> np.ndarray:
    """A hole showing what lies behind the surface (``hole_color``)."""
    s = size / 128
    center = params.get("defect_center") or _point(rng, size, 0.25)
    alpha = blob_alpha(rng, size, center, rng.uniform(7, 11) * s, roughness=0.3, edge=1.0 * s)
    return blend(image, np.asarray(params.get("hole_color", 0.03)), alpha)


# ---------------------------------------------------------------- fabric
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
    return _hole(rng, {**p, "hole_color": p["color"] * 0.5}, image, size)


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
    cy, cx = _point(rng, size, 0.3)
    along = p["angle"] + (np.pi / 2 if rng.random() < 0.5 else 0.0)
    half = rng.uniform(18, 30) * s
    points = np.array([[cy - half * np.sin(along), cx - half * np.cos(along)], [cy + half * np.sin(along), cx + half * np.cos(along)]])
    alpha = polyline_alpha(size, points, rng.uniform(3.0, 4.0) * s)
    return blend(image, np.clip(p["color"] * 1.45, 0, 1), alpha * 0.85)


FABRIC = Category("fabric", "texture", False, _fabric_sample, _fabric_draw, {"hole": _fabric_hole, "stain": _stain, "thread": _fabric_thread})


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
    "scratch": lambda rng, p, img, size: _scratch(rng, _wood_defect_colors(p), img, size),
    "crack": lambda rng, p, img, size: _crack(rng, _wood_defect_colors(p), img, size),
    "hole": lambda rng, p, img, size: _hole(rng, _wood_defect_colors(p), img, size),
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


TILE = Category("tile", "texture", False, _tile_sample, _tile_draw, {"crack": lambda rng, p, img, size: _crack(rng, {**p, "crack_color": 0.3}, img, size), "chip": _tile_chip, "contamination": _stain})


# ---------------------------------------------------------------- cap (object, seen from above)
def _cap_sample(rng: np.random.Generator, size: int) -> Params:
    return {
        "center": (size / 2 + rng.normal(0, 4) * size / 128, size / 2 + rng.normal(0, 4) * size / 128),
        "radius": rng.uniform(38, 42) * size / 128,
        "rotation": rng.uniform(0, 2 * np.pi),
        "color": np.array([0.78, 0.12, 0.12]) + rng.normal(0, 0.02, 3),
        "print": True,
    }


def _cap_draw(p: Params, size: int) -> np.ndarray:
    y, x = grid(size)
    cy, cx = p["center"]
    dy, dx = y - cy, x - cx
    r = np.hypot(dy, dx)
    theta = np.arctan2(dy, dx) - p["rotation"]
    img = np.full((size, size, 3), 0.2, dtype=np.float32) + (y / size * 0.05)[..., None]
    knurl = 1.0 + 0.03 * np.sin(48 * theta)
    body = np.clip((p["radius"] * knurl - r) + 0.5, 0, 1)
    shade = 1.05 - 0.35 * (r / p["radius"]) ** 2
    img = blend(img, p["color"] * shade[..., None], body)
    rim = np.clip(1.2 - np.abs(r - 0.8 * p["radius"]) / (1.2 * size / 128), 0, 1) * body
    img = blend(img, p["color"] * 0.55, rim)
    if p["print"]:
        s = size / 128
        lu = dx * np.cos(p["rotation"]) + dy * np.sin(p["rotation"])
        lv = -dx * np.sin(p["rotation"]) + dy * np.cos(p["rotation"])
        bar = np.clip(np.minimum(9 * s - np.abs(lu), 2.2 * s - np.abs(lv + 6 * s)) + 0.5, 0, 1)
        dot = np.clip(3.5 * s - np.hypot(lu, lv - 8 * s) + 0.5, 0, 1)
        img = blend(img, np.array([0.95, 0.92, 0.85]), np.maximum(bar, dot))
    return img


def _cap_on_body(rng: np.random.Generator, p: Params, size: int) -> tuple[float, float]:
    angle = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(0.2, 0.6) * p["radius"]
    return (p["center"][0] + dist * np.sin(angle), p["center"][1] + dist * np.cos(angle))


def _cap_missing_print(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    return _cap_draw({**p, "print": False}, size)


def _cap_scratch(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    return _scratch(rng, {"defect_center": _cap_on_body(rng, p, size)}, image, size, color=0.92)


def _cap_contamination(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    return _stain(rng, {"defect_center": _cap_on_body(rng, p, size)}, image, size)


CAP = Category("cap", "object", False, _cap_sample, _cap_draw, {"scratch": _cap_scratch, "missing_print": _cap_missing_print, "contamination": _cap_contamination})


# ---------------------------------------------------------------- screw (object, grayscale)
def _screw_sample(rng: np.random.Generator, size: int) -> Params:
    return {
        "center": (size / 2 + rng.normal(0, 5) * size / 128, size / 2 + rng.normal(0, 5) * size / 128),
        "angle": rng.uniform(0, 2 * np.pi),
        "length": rng.uniform(62, 68) * size / 128,
        "tip": 1.0,
        "damage": None,
    }


def _screw_draw(p: Params, size: int) -> np.ndarray:
    s = size / 128
    y, x = grid(size)
    dy, dx = y - p["center"][0], x - p["center"][1]
    u = dx * np.cos(p["angle"]) + dy * np.sin(p["angle"]) + p["length"] / 2
    v = -dx * np.sin(p["angle"]) + dy * np.cos(p["angle"])
    length = p["length"] * p["tip"]
    half_width = 6.5 * s * np.clip((p["length"] - u) / (10 * s), 0.15, 1.0)
    shaft = np.clip(np.minimum(half_width - np.abs(v), np.minimum(u - 10 * s, length - u)) + 0.5, 0, 1)
    head = np.clip(np.minimum(11 * s - np.abs(v), np.minimum(u, 10.5 * s - u)) + 0.5, 0, 1)
    pitch = 3.2 * s
    threads = 0.5 + 0.5 * np.sin(2 * np.pi * (u + 0.35 * v) / pitch)
    across = 1.0 - 0.5 * (v / (half_width + 1e-3)) ** 2
    metal = (0.35 + 0.4 * threads) * across
    if p["damage"] is not None:  # threads scraped flat: a bright, featureless patch
        du, dv, dl = p["damage"]
        flat = np.clip(dl - np.hypot(u - du, (v - dv) * 0.5), 0, 1)
        metal = metal * (1 - flat) + 0.92 * flat
    img = np.full((size, size), 0.86, dtype=np.float32)
    img = img * (1 - shaft) + metal * shaft
    slot = np.clip(1.6 * s - np.abs(v), 0, 1) * (np.abs(u - 5 * s) < 4 * s)
    head_tone = (0.55 - 0.15 * (np.abs(v) / (11 * s))) * (1 - slot) + 0.2 * slot
    img = img * (1 - head) + head_tone * head
    return np.repeat(img[..., None], 3, axis=2)


def _screw_broken_tip(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    return _screw_draw({**p, "tip": rng.uniform(0.72, 0.82)}, size)


def _screw_thread_damage(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    s = size / 128
    damage = (rng.uniform(0.35, 0.8) * p["length"], rng.uniform(-3, 3) * s, rng.uniform(7, 10) * s)
    return _screw_draw({**p, "damage": damage}, size)


def _screw_contamination(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    along = rng.uniform(0.3, 0.8) * p["length"] - p["length"] / 2
    cy = p["center"][0] + along * np.sin(p["angle"])
    cx = p["center"][1] + along * np.cos(p["angle"])
    alpha = blob_alpha(rng, size, (cy, cx), rng.uniform(7, 10) * size / 128, roughness=0.4, edge=1.5)
    return blend(image, 0.08, alpha * 0.9)


SCREW = Category("screw", "object", True, _screw_sample, _screw_draw, {"thread_damage": _screw_thread_damage, "broken_tip": _screw_broken_tip, "contamination": _screw_contamination})


# ---------------------------------------------------------------- pcb (object)
_LAYOUT_RNG_SEED = 20260101  # the board's design is fixed; only pose and lighting vary


def _pcb_layout() -> list[tuple[str, float, float, float, float]]:
    """Fixed board design: ``(kind, v0, u0, v1, u1)`` rectangles in board units ``[0, 1]``."""
    rng = np.random.default_rng(_LAYOUT_RNG_SEED)
    parts: list[tuple[str, float, float, float, float]] = []
    for row in (0.2, 0.45, 0.7):
        parts.append(("trace", row - 0.008, 0.08, row + 0.008, 0.92))
    for col in (0.3, 0.62):
        parts.append(("trace", 0.12, col - 0.008, 0.88, col + 0.008))
    parts.append(("ic", 0.3, 0.36, 0.58, 0.56))
    for v, u in [(0.13, 0.12), (0.13, 0.72), (0.78, 0.14), (0.78, 0.7), (0.52, 0.8)]:
        w, h = rng.uniform(0.08, 0.11), rng.uniform(0.05, 0.06)
        parts.append(("resistor", v, u, v + h, u + w))
    for v, u in [(0.35, 0.12), (0.6, 0.12)]:
        parts.append(("cap", v, u, v + 0.1, u + 0.1))
    return parts


_PCB_COLORS = {"trace": (0.78, 0.62, 0.25), "ic": (0.08, 0.08, 0.09), "resistor": (0.55, 0.42, 0.3), "cap": (0.6, 0.6, 0.62), "solder": (0.82, 0.82, 0.84)}


def _pcb_sample(rng: np.random.Generator, size: int) -> Params:
    return {
        "center": (size / 2 + rng.normal(0, 2.5) * size / 128, size / 2 + rng.normal(0, 2.5) * size / 128),
        "angle": rng.normal(0, 0.05),
        "scale": rng.uniform(0.8, 0.84) * size,
        "parts": _pcb_layout(),
        "board": np.array([0.1, 0.42, 0.2]) + rng.normal(0, 0.02, 3),
    }


def _pcb_draw(p: Params, size: int) -> np.ndarray:
    y, x = grid(size)
    dy, dx = y - p["center"][0], x - p["center"][1]
    u = (dx * np.cos(p["angle"]) + dy * np.sin(p["angle"])) / p["scale"] + 0.5
    v = (-dx * np.sin(p["angle"]) + dy * np.cos(p["angle"])) / p["scale"] + 0.5
    px = 1.0 / p["scale"]

    def rect(v0: float, u0: float, v1: float, u1: float) -> np.ndarray:
        return np.clip(np.minimum(np.minimum(u - u0, u1 - u), np.minimum(v - v0, v1 - v)) / px + 0.5, 0, 1)

    img = np.full((size, size, 3), 0.12, dtype=np.float32)
    img = blend(img, p["board"], rect(0.0, 0.0, 1.0, 1.0))
    for kind, v0, u0, v1, u1 in p["parts"]:
        img = blend(img, np.array(_PCB_COLORS[kind]), rect(v0, u0, v1, u1))
        if kind == "ic":
            for k in range(5):
                pin_u = u0 + (k + 0.5) * (u1 - u0) / 5
                for pin_v in (v0 - 0.03, v1):
                    img = blend(img, np.array(_PCB_COLORS["solder"]), rect(pin_v, pin_u - 0.012, pin_v + 0.03, pin_u + 0.012))
    return img


def _pcb_missing(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    movable = [i for i, part in enumerate(p["parts"]) if part[0] in ("resistor", "cap")]
    drop = movable[rng.integers(len(movable))]
    return _pcb_draw({**p, "parts": [part for i, part in enumerate(p["parts"]) if i != drop]}, size)


def _pcb_misplaced(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    movable = [i for i, part in enumerate(p["parts"]) if part[0] in ("resistor", "cap")]
    idx = movable[rng.integers(len(movable))]
    kind, v0, u0, v1, u1 = p["parts"][idx]
    shift_v, shift_u = rng.choice([-1, 1], 2) * rng.uniform(0.05, 0.08, 2)
    parts = list(p["parts"])
    parts[idx] = (kind, v0 + shift_v, u0 + shift_u, v1 + shift_v, u1 + shift_u)
    return _pcb_draw({**p, "parts": parts}, size)


def _pcb_solder_blob(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    alpha = ellipse_alpha(size, _point(rng, size, 0.25), (rng.uniform(6, 9) * size / 128, rng.uniform(4, 6) * size / 128), rng.uniform(0, np.pi))
    return blend(image, np.array(_PCB_COLORS["solder"]), alpha)


PCB = Category("pcb", "object", False, _pcb_sample, _pcb_draw, {"missing_component": _pcb_missing, "misplaced_component": _pcb_misplaced, "solder_blob": _pcb_solder_blob})

CATEGORIES: dict[str, Category] = {c.name: c for c in (FABRIC, WOOD, TILE, CAP, SCREW, PCB)}
