"""User drawings to the scribble ControlNet's input: white strokes on black, whatever the canvas style.

Canvases differ: gr.Sketchpad gives black strokes on a transparent RGBA layer, paint programs give black on white,
some tools white on black, and people draw in colour. We find the background (the transparent pixels, or else the
dominant border colour) and call everything clearly different from it a stroke. A drawing whose strokes are darker
than its background is the usual "inverted" case and comes out fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .images import ImageInput, ImageInputError, open_image, to_rgb_array

# Colour distance (0-441) above which a pixel counts as a stroke: well above JPEG noise, below any visible stroke.
STROKE_DISTANCE = 48.0


@dataclass(frozen=True)
class Scribble:
    """The converted map (HxWx3 uint8, white on black) and what was found in the input."""

    map: np.ndarray
    inverted: bool  # the input had dark strokes on a light background
    from_alpha: bool  # strokes were found from transparency
    coverage: float  # share of pixels that are strokes


def scribble_from_drawing(source: ImageInput, *, what: str = "drawing") -> Scribble:
    """Convert any canvas to white strokes on black; raise ImageInputError if nothing was drawn."""
    rgba = _rgba(source, what)
    alpha = rgba[:, :, 3]
    if alpha.min() < 250 and alpha.max() > 0:
        # Transparent canvas: what is painted is the stroke, whatever its colour.
        strokes = alpha > 127
        from_alpha = True
        inverted = bool(_luma(rgba[:, :, :3])[strokes].mean() < 128) if strokes.any() else False
    else:
        rgb = rgba[:, :, :3].astype(np.float32)
        background = _border_colour(rgb)
        strokes = np.linalg.norm(rgb - background, axis=2) > STROKE_DISTANCE
        if strokes.mean() > 0.5:
            # The "background" we sampled is mostly strokes (e.g. a drawing that fills its border): swap roles.
            strokes = ~strokes
        from_alpha = False
        inverted = bool(_luma(background[None, None, :])[0, 0] > 128)
    if not strokes.any():
        raise ImageInputError(f"{what}: the drawing is empty; draw some strokes first")
    out = np.zeros(strokes.shape + (3,), np.uint8)
    out[strokes] = 255
    return Scribble(out, inverted=inverted, from_alpha=from_alpha, coverage=float(strokes.mean()))


def _rgba(source: ImageInput, what: str) -> np.ndarray:
    if isinstance(source, np.ndarray) and source.ndim == 3 and source.shape[2] == 4:
        return source.astype(np.uint8)
    if not isinstance(source, np.ndarray):
        image = open_image(source, what=what)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            return np.asarray(image.convert("RGBA"))
    rgb = to_rgb_array(source, what=what)
    return np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)


def _border_colour(rgb: np.ndarray) -> np.ndarray:
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]])
    return np.median(border, axis=0)


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
