"""The three generated objects: ``cap``, ``screw`` and ``pcb``."""

from __future__ import annotations

import numpy as np

from moleflow.data.synth.category import Category, Params, point, scratch, stain
from moleflow.data.synth.draw import blend, blob_alpha, ellipse_alpha, grid

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
    return scratch(rng, {"defect_center": _cap_on_body(rng, p, size)}, image, size, color=0.92)


def _cap_contamination(rng: np.random.Generator, p: Params, image: np.ndarray, size: int) -> np.ndarray:
    return stain(rng, {"defect_center": _cap_on_body(rng, p, size)}, image, size)


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
    alpha = ellipse_alpha(size, point(rng, size, 0.25), (rng.uniform(6, 9) * size / 128, rng.uniform(4, 6) * size / 128), rng.uniform(0, np.pi))
    return blend(image, np.array(_PCB_COLORS["solder"]), alpha)


PCB = Category("pcb", "object", False, _pcb_sample, _pcb_draw, {"missing_component": _pcb_missing, "misplaced_component": _pcb_misplaced, "solder_blob": _pcb_solder_blob})
