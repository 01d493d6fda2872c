"""Gradio's widget values as images: the editors' dicts (composite, background, layers), uploads judged by their
content, numpy arrays. The one place that knows what a Gradio image value looks like."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from annotators import open_image, to_rgb_array

UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")


def canvas_image(value: Any, what: str = "image") -> Image.Image | None:
    """The image inside a Gradio value: the editor's composite, or the image itself; None when empty."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("composite") if value.get("composite") is not None else value.get("background")
        if value is None:
            return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, (str, Path, bytes)):  # an upload: judged by content, only common photo formats
        return open_image(value, what=what, formats=UPLOAD_FORMATS)
    if isinstance(value, np.ndarray) and value.ndim == 3 and value.shape[2] == 4:
        return Image.fromarray(value.astype(np.uint8), "RGBA")  # keep transparency: drawings need it
    return Image.fromarray(to_rgb_array(value, what=what))



def editor_picture_and_mask(value: Any) -> tuple[Image.Image | None, Image.Image | None]:
    """From gr.ImageEditor's value: the picture (its background) and the mask (every painted layer's opaque
    pixels; None when nothing was painted). A plain image or upload is a picture without a mask."""
    if not isinstance(value, dict):
        picture = canvas_image(value, what="picture")
        return (None if picture is None else Image.fromarray(to_rgb_array(picture, what="picture"))), None
    background = value.get("background")
    if background is None:
        return None, None
    picture = Image.fromarray(to_rgb_array(canvas_image(background, what="picture"), what="picture"))
    painted = None
    for layer in value.get("layers") or []:
        array = np.asarray(canvas_image(layer, what="mask layer"))
        if array.ndim == 3 and array.shape[2] == 4:
            alpha = array[..., 3] > 0
            painted = alpha if painted is None else painted | alpha
    if painted is None or not painted.any():
        return picture, None
    return picture, Image.fromarray(painted.astype(np.uint8) * 255)
