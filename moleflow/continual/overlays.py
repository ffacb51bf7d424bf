"""Pictures of ``moleflow predict``'s results: the grey map, and the image with its map overlaid.

The grey map (``maps/<n>_<stem>.png``) is the measurement on one scale for every image
(``maps/scale.json``). The overlay (``overlays/<n>_<stem>.png``) is what a person looks
at: the image as the model saw it (resized and cropped), the map on the same scale in
a colour map blended over it, the routed task and the score in the top-left corner and,
where a threshold decided, the outline of the pixels whose map value exceeds it (the
map is the smoothed patch score, the image score the mean of the top-k patch scores,
so the outline surrounds the patches that made the decision). Pure functions: arrays
in, PNG bytes out.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

#: Weight of the colour map in the overlay (the image keeps the rest).
ALPHA = 0.45
#: Colour of the outline of the region above the threshold (RGB).
OUTLINE = (255, 255, 255)
#: Overlays of smaller inputs are enlarged by a whole factor to at least this side.
MIN_SIDE = 256


def scaled(amap: np.ndarray, low: float, high: float) -> np.ndarray:
    """``(S, S)`` map on ``[low, high] -> [0, 1]``, clipped."""
    return np.clip((amap - low) / max(high - low, 1e-12), 0.0, 1.0)


def grey_png(amap: np.ndarray, low: float, high: float) -> bytes:
    """An anomaly map as 8-bit grayscale PNG bytes, ``low -> 0`` and ``high -> 255``."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(255 * scaled(amap, low, high)).astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def region_edge(mask: np.ndarray) -> np.ndarray:
    """``(S, S)`` bool: the pixels of ``mask`` with a 4-neighbour outside it (the region's one-pixel outline)."""
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def overlay_png(
    image: np.ndarray,
    amap: np.ndarray,
    low: float,
    high: float,
    label: str,
    threshold: float | None = None,
    cmap: str = "jet",
) -> bytes:
    """PNG bytes of ``image`` ``(S, S, 3)`` uint8 with ``amap`` ``(S, S)`` overlaid.

    Args:
        image: the image as the model saw it (``load_display_image``).
        amap: its anomaly map, in the units of the image score.
        low, high: the shared scale (the colour map's ends).
        label: the text for the top-left corner (task and score).
        threshold: when given, the outline of ``amap > threshold`` is drawn.
        cmap: a matplotlib colour map name.
    """
    colour = colormaps[cmap](scaled(amap, low, high))[..., :3] * 255.0
    blended = (1.0 - ALPHA) * image.astype(np.float64) + ALPHA * colour
    if threshold is not None:
        blended[region_edge(amap > threshold)] = OUTLINE
    picture = Image.fromarray(np.round(blended).astype(np.uint8), mode="RGB")
    factor = -(-MIN_SIDE // picture.width)  # small inputs are enlarged (pixels kept square) so the label is legible
    if factor > 1:
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(picture)
    box = draw.textbbox((2, 1), label)
    draw.rectangle((0, 0, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
    draw.text((2, 1), label, fill=(255, 255, 255))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
