"""Fitting a map or a picture of another shape to the output, as the A1111 extension's resize modes do.

- ``just_resize``: stretch to the output size (the aspect ratio changes);
- ``crop_and_resize`` (the default, as in the extension): scale until the output is covered, keep the centre, crop
  the rest;
- ``resize_and_fill``: scale until it fits inside, centre it, and fill the bands by stretching its edge rows or
  columns outward.

The resizing is diffusers' own (`VaeImageProcessor.resize` with ``default`` / ``crop`` / ``fill``).
"""

from __future__ import annotations

from PIL import Image

RESIZE_MODES = {"just_resize": "default", "crop_and_resize": "crop", "resize_and_fill": "fill"}


def fit(image: Image.Image, width: int, height: int, mode: str = "crop_and_resize") -> Image.Image:
    """`image` at `width` x `height` by resize mode `mode`; unchanged when it already has that size, and only cut
    (`trim_to`) when it is the remainder of rounding its sides down to multiples of 8."""
    from diffusers.image_processor import VaeImageProcessor

    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode={mode!r} is not one of {list(RESIZE_MODES)}")
    image = trim_to(image, width, height)
    if image.size == (width, height):
        return image
    fitted = VaeImageProcessor().resize(image, height, width, resize_mode=RESIZE_MODES[mode])
    return fitted.convert(image.mode) if fitted.mode != image.mode else fitted


def trim_to(image: Image.Image, width: int, height: int) -> Image.Image:
    """`image` cut (centred) to `width` x `height` when it is at most 7 px larger on each side, the remainder
    of rounding its sides down to multiples of 8: its pixels kept as they are, not resampled. Else unchanged."""
    dw, dh = image.width - width, image.height - height
    if (dw, dh) == (0, 0) or not (0 <= dw < 8 and 0 <= dh < 8):
        return image
    left, top = dw // 2, dh // 2
    return image.crop((left, top, left + width, top + height))


def pixel_perfect_resolution(image_size: tuple[int, int], output_size: tuple[int, int],
                             mode: str = "crop_and_resize") -> int:
    """The detect resolution (the short side the annotator sees) that makes the map come out at the output's scale,
    so it is not resampled again: as the extension's "pixel perfect", the short side times the larger of the two
    scale factors (the smaller one for resize_and_fill, which fits the whole picture inside); at least 64, the
    smallest resolution the annotators take."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize_mode={mode!r} is not one of {list(RESIZE_MODES)}")
    (raw_w, raw_h), (out_w, out_h) = image_size, output_size
    scales = (out_h / raw_h, out_w / raw_w)
    scale = min(scales) if mode == "resize_and_fill" else max(scales)
    return max(64, round(scale * min(raw_w, raw_h)))
