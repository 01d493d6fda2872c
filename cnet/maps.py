"""A unit's condition map from a photo: the one rule the CLI and the app share (sizes, pixel perfect, resize mode).

The annotators are controlnet-aux's and the project's own (annotators/); this module only decides at which
resolution and size a map is made, so a map detected by `python -m cnet` and by the app come out the same.
"""

from __future__ import annotations

from typing import Any

from PIL import Image


def detect_map(annotator: str, photo: Any, *, size: tuple[int | None, int | None] = (None, None),
               resize_mode: str = "crop_and_resize", pixel_perfect: bool = False,
               detect_resolution: int | None = None, max_side: int | None = None,
               params: dict[str, Any] | None = None) -> Image.Image:
    """Run `annotator` on `photo` (a PIL image, or a path the annotator opens itself, so a drawing keeps its
    transparency). In the crop mode the map is made at `size` (width, height; centre-cropped, as the annotators do;
    one side alone keeps the photo's aspect ratio); the other modes leave it at the detection size for the engine
    to fit. `pixel_perfect` (with both sides) picks the detect resolution that makes the map the output's size, so
    it is not resampled (at most `max_side`)."""
    from annotators import detect
    from annotators.images import DEFAULT_MAX_SIDE

    from .resize import pixel_perfect_resolution

    max_side = max_side or DEFAULT_MAX_SIDE
    width, height = size
    resolution = detect_resolution
    if pixel_perfect and width and height:
        resolution = min(pixel_perfect_resolution(_size_of(photo), (width, height), resize_mode), max_side)
    if resize_mode != "crop_and_resize":
        width = height = None  # the engine fits the map by the mode
    return detect(annotator, photo, detect_resolution=resolution, width=width, height=height, max_side=max_side,
                  **(params or {}))


def _size_of(photo: Any) -> tuple[int, int]:
    if isinstance(photo, Image.Image):
        return photo.size
    with Image.open(photo) as opened:  # the header only
        return opened.size
