"""`detect()`: a photo (or a drawing) in, the condition map a ControlNet expects out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .images import DEFAULT_MAX_SIDE, ImageInput, fit_map, output_size, resize_to_resolution, to_rgb_array
from .registry import AnnotatorError, ModelCache, get_annotator

_CACHE = ModelCache()


@dataclass(frozen=True)
class Loading:
    """Where an annotator's weights come from and where it runs: `weights` overrides the location (a Hub repo or a
    local folder with the same file names), `device` the automatic choice, `cache` the process-wide model cache."""

    weights: str | None = None
    device: str | None = None
    cache: ModelCache | None = None


def detect(name: str, image: ImageInput, *, detect_resolution: int | None = None, width: int | None = None,
           height: int | None = None, image_resolution: int | None = None, loading: Loading | None = None,
           max_side: int = DEFAULT_MAX_SIDE, **params: Any) -> Image.Image:
    """Run annotator `name` on `image` (PIL, numpy, path or bytes) and return an RGB PIL map.

    The detector sees the image with its short side at `detect_resolution` (the annotator's default: 512, or 384
    for depth/normal), sides rounded to multiples of 64 as the original apps did. The map keeps that size unless
    `width`/`height` (multiples of 8; the aspect ratio is kept by centre-cropping) or `image_resolution` is given.
    `loading` says where model weights come from and where they run (`Loading`); `params` are the annotator's own.
    Every image made on the way is at most `max_side` px on a side (a panorama's short side shrinks instead), and
    images more elongated than 16:1 are refused, so a 74-byte 1000x1 PNG cannot become a 512000x512 map.
    """
    annotator = get_annotator(name)
    resolved = annotator.resolve_params(params)
    detect_resolution = _check_side("detect_resolution", detect_resolution or annotator.detect_resolution, 1,
                                    max_side)
    for field, value in (("width", width), ("height", height), ("image_resolution", image_resolution)):
        if value is not None:
            _check_side(field, value, 8 if field != "image_resolution" else 1, max_side)

    model = None
    if annotator.needs_weights:
        from common.models import pick_device

        loading = loading or Loading()
        models = loading.cache if loading.cache is not None else _CACHE
        model = models.get(annotator, annotator.weights_location(loading.weights), pick_device(loading.device))

    if annotator.takes_drawing:
        drawn = annotator.run(model, image, resolved)
        detected = _binarise(resize_to_resolution(drawn, detect_resolution, max_side))
    else:
        rgb = resize_to_resolution(to_rgb_array(image, what=f"{name} input"), detect_resolution, max_side)
        detected = fit_map(annotator.run(model, rgb, resolved), *rgb.shape[:2])
    out_h, out_w = output_size(*detected.shape[:2], width=width, height=height, image_resolution=image_resolution,
                               max_side=max_side)
    result = fit_map(detected, out_h, out_w, annotator.interpolation)
    if annotator.takes_drawing:
        result = _binarise(result)
    return Image.fromarray(result)


def annotator_model(name: str, loading: Loading | None = None) -> Any:
    """The loaded model of annotator `name` (from the process-wide cache), for callers that need more than its map
    (the pose editor reads OpenPose's keypoints)."""
    from common.models import pick_device

    annotator = get_annotator(name)
    if not annotator.needs_weights:
        raise AnnotatorError(f"annotator={name!r} has no model")
    loading = loading or Loading()
    models = loading.cache if loading.cache is not None else _CACHE
    return models.get(annotator, annotator.weights_location(loading.weights), pick_device(loading.device))


def _binarise(strokes: np.ndarray) -> np.ndarray:
    # Resizing blurs stroke edges; keep thin strokes (anything touched) and make the map binary again.
    return np.where(strokes > 32, 255, 0).astype(np.uint8)


def _check_side(field: str, value: Any, multiple: int, max_side: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 64 <= value <= max_side:
        raise AnnotatorError(f"{field}={value!r} must be a whole number in [64, {max_side}]")
    if value % multiple:
        raise AnnotatorError(f"{field}={value} must be a multiple of {multiple}")
    return value


__all__ = ["detect"]
