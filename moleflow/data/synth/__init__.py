"""The embedded default dataset: generated industrial-inspection images in the MVTec AD layout.

Three textures (``fabric``, ``wood``, ``tile``) and three objects (``cap``, ``screw``,
``pcb``), each with its own defects and exact masks (:mod:`.generator`); the pixel
z-score baseline that shows the data is not trivially separable (:mod:`.difficulty`);
and the noise-filled stand-in trees in the real MVTec AD and VisA layouts that tests
and benchmarks plan on (:mod:`.standin`).
"""

from moleflow.data.synth.category import Category
from moleflow.data.synth.generator import CATEGORIES, DEFAULT_CATEGORIES, MARKER, SynthCounts, generate, render

__all__ = ["CATEGORIES", "DEFAULT_CATEGORIES", "MARKER", "Category", "SynthCounts", "generate", "render"]
