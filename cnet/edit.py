"""Editing your own picture under ControlNet: the masks, canvases and conditions the editing modes need.

The pipelines are diffusers' (`StableDiffusionControlNetImg2ImgPipeline`, `...InpaintPipeline`, chosen by the
request's operation, cnet/operations.py); this module only prepares their inputs, with diffusers' own image helpers
where it has them (the mask blur, the paste-back):

- inpaint: `prepare_mask` (white = repaint; blurred for the pipeline, feathered inward only for the paste-back) and
  `keep_unmasked` (the result pasted onto the original through the mask: unmasked pixels stay exact);
- outpaint: `outpaint_canvas` (the picture on a larger canvas, the new border to inpaint);
- upscale: `tile_condition` (the tile ControlNet's map: the picture at the output size, optionally resampled down
  first, as the tile model's "tile_resample" preprocessor does) and `upscale_size`; the denoising itself runs tile by
  tile (cnet/tiles.py).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageChops

from .params import RequestError


class Masks(NamedTuple):
    for_pipeline: Image.Image  # blurred: diffusers binarises it for the latents and pastes a crop back through it
    for_composite: Image.Image  # feathered inward only: zero wherever the drawn mask is zero


def mask_channel(mask: Image.Image) -> Image.Image:
    """The mask as one grey channel: the alpha of a layer with transparency (its painted area), else the grey
    values (a black-and-white mask saved with an opaque alpha channel is read by its colours)."""
    if mask.mode in ("RGBA", "LA", "PA") or "transparency" in mask.info:
        alpha = mask.convert("RGBA").getchannel("A")
        if alpha.getextrema()[0] < 255:
            return alpha
    return mask.convert("L")


def prepare_mask(mask: Image.Image, size: tuple[int, int], blur: int) -> Masks:
    """The inpaint masks for a picture of `size`: `mask` as grayscale (an alpha channel counts as the painted
    area), resized with nearest neighbours, thresholded at half; blurred by `blur` px with diffusers'
    `VaeImageProcessor.blur`. The composite mask is the darker of the blurred and the sharp one, so a pixel the user
    did not paint is never changed by the paste-back."""
    from diffusers.image_processor import VaeImageProcessor

    sharp = mask_channel(mask).resize(size, Image.Resampling.NEAREST).point(lambda v: 255 if v >= 128 else 0)
    if not sharp.getbbox():
        raise RequestError("mask is empty: paint (white) the area to repaint")
    blurred = VaeImageProcessor.blur(sharp, blur) if blur else sharp
    return Masks(for_pipeline=blurred, for_composite=ImageChops.darker(blurred, sharp))


def mask_preview(picture: Image.Image, mask: Image.Image | None) -> Image.Image:
    """The picture with the area to repaint tinted red (the picture alone when there is no mask): what will run."""
    rgb = picture.convert("RGB")
    if mask is None:
        return rgb
    shaped = mask_channel(mask).resize(rgb.size, Image.Resampling.NEAREST).point(lambda v: 140 if v >= 128 else 0)
    return Image.composite(Image.new("RGB", rgb.size, (255, 0, 0)), rgb, shaped)


def keep_unmasked(images: list[Image.Image], picture: Image.Image, mask: Image.Image) -> list[Image.Image]:
    """Each result pasted onto `picture` (resized to the result's size) through `mask`, with diffusers'
    `VaeImageProcessor.apply_overlay`: where the mask is black the pixels are the picture's, exactly."""
    from diffusers.image_processor import VaeImageProcessor

    processor = VaeImageProcessor()
    out = []
    for image in images:
        base = picture if picture.size == image.size else picture.resize(image.size, Image.Resampling.LANCZOS)
        shaped = mask if mask.size == image.size else mask.resize(image.size, Image.Resampling.NEAREST)
        out.append(processor.apply_overlay(shaped, base, image))
    return out


def outpaint_canvas(picture: Image.Image, left: int = 0, right: int = 0, top: int = 0, bottom: int = 0,
                    overlap: int = 8) -> tuple[Image.Image, Image.Image]:
    """(canvas, mask) to outpaint: `picture` on a canvas extended by the given px on each side, the new border
    filled by repeating the edge pixels (colours for the model to start from) and masked white, `overlap` px into
    the picture so the seam is redrawn too. Each extension is rounded up so the canvas is a multiple of 8."""
    sides = {"left": left, "right": right, "top": top, "bottom": bottom}
    for name, value in sides.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2048:
            raise RequestError(f"{name}={value!r} must be a whole number of px in [0, 2048]")
    if not any(sides.values()):
        raise RequestError("left, right, top and bottom are all 0: give at least one side to extend")
    rgb = np.asarray(picture.convert("RGB"))
    h, w = rgb.shape[:2]
    right += (-(w + left + right)) % 8
    bottom += (-(h + top + bottom)) % 8
    canvas = np.pad(rgb, ((top, bottom), (left, right), (0, 0)), mode="edge")
    mask = np.full(canvas.shape[:2], 255, np.uint8)
    inner = overlap
    y0, x0 = top + (inner if top else 0), left + (inner if left else 0)
    y1, x1 = top + h - (inner if bottom else 0), left + w - (inner if right else 0)
    mask[y0:y1, x0:x1] = 0
    return Image.fromarray(canvas), Image.fromarray(mask)


def inpaint_condition(picture: Image.Image, mask: Image.Image, size: tuple[int, int]) -> tuple[Any, Image.Image]:
    """The inpaint ControlNet's condition (`control_v11p_sd15_inpaint`), as its authors make it: the picture in
    [0, 1] with the masked pixels set to -1, a 1x3xHxW tensor at the output `size`; and a picture of it to show
    (the masked area grey)."""
    import torch

    rgb = np.asarray(picture.convert("RGB").resize(size, Image.Resampling.LANCZOS), dtype=np.float32) / 255.0
    masked = np.asarray(mask.convert("L").resize(size, Image.Resampling.NEAREST)) > 127
    rgb[masked] = -1.0
    shown = np.where(masked[..., None], 0.5, rgb)
    tensor = torch.from_numpy(rgb.transpose(2, 0, 1)[None].copy())
    return tensor, Image.fromarray((shown * 255).round().astype(np.uint8))


def upscale_size(picture: Image.Image, factor: float) -> tuple[int, int]:
    """The output size of an upscale by `factor`, each side rounded down to a multiple of 8."""
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 1.0 <= factor <= 4.0:
        raise RequestError(f"factor={factor!r} must be a number in [1, 4]")
    return int(picture.width * factor) // 8 * 8, int(picture.height * factor) // 8 * 8


def tile_condition(picture: Image.Image, size: tuple[int, int], down_sampling: float = 1.0) -> Image.Image:
    """The tile ControlNet's map (`control_v11f1e_sd15_tile`) for an output of `size`: the picture resized to it,
    through the `tile_resample` annotator (shrunk by `down_sampling` first, when > 1, so the model re-invents more
    detail). Run at the exact output size: the annotators' usual 64-px rounding would shift the map."""
    from annotators import AnnotatorError, get_annotator

    annotator = get_annotator("tile_resample")
    try:
        params = annotator.resolve_params({"down_sampling_rate": down_sampling})
    except AnnotatorError as err:
        raise RequestError(str(err)) from None
    rgb = np.asarray(picture.convert("RGB").resize(size, Image.Resampling.BICUBIC))
    return Image.fromarray(annotator.run(None, rgb, params))
