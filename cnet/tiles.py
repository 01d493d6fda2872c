"""Denoising a large img2img (a tile upscale) tile by tile, so its memory is that of one tile.

A 2x upscale of a 1024 px picture is a 2048 px img2img: run whole, the U-Net's activations grow with the pixel count
(measured in bench/RESULTS.md). With `GenerationRequest.tile_size` the engine instead cuts the picture and every
condition map into the fewest equal tiles of at most `tile_size` px a side that overlap by about `TILE_OVERLAP` px,
runs the same diffusers img2img pipeline on each (same prompt, seed and settings: the way the A1111 "Ultimate SD
upscale" script pairs with the tile ControlNet), and blends the overlaps with linear ramps. Each tile sees the tile
map of its own area, so it re-renders what is there rather than a whole new picture.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from .result import GenerationResult


class TileRunner(Protocol):
    """What runs the tiles: the engine's own `generate` and `caption` (passed in, so this module never imports the
    engine back)."""

    def generate(self, request: Any, *, progress: Any = None, should_stop: Any = None,
                 limits: Any = None) -> GenerationResult: ...

    def caption(self, image: Image.Image) -> str: ...

TILE_OVERLAP = 64  # px (8 latent cells): enough for the ramps to hide a seam, little repeated work


def _spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, math.ceil((length + (count - 1) * overlap) / count / 8) * 8)
    starts = [round(i * (length - size) / (count - 1) / 8) * 8 for i in range(count)]
    return [(start, start + size) for start in starts]


def tile_boxes(width: int, height: int, tile: int, overlap: int = TILE_OVERLAP) -> list[tuple[int, int, int, int]]:
    """The fewest equal tiles (left, top, right, bottom; sides multiples of 8, at most `tile`) that cover a
    `width` x `height` image (multiples of 8), neighbours overlapping by about `overlap` px (to the nearest 8).
    Row by row."""
    return [(left, top, right, bottom) for top, bottom in _spans(height, tile, overlap)
            for left, right in _spans(width, tile, overlap)]


def _ramp(start: int, end: int, length: int, overlap: int) -> np.ndarray:
    """Weights along one axis of a tile: rising over `overlap` px where a neighbour comes before, falling where one
    comes after, 1 elsewhere (and at the image's own edges)."""
    weights = np.ones(end - start)
    rise = (np.arange(overlap) + 0.5) / overlap
    if start > 0:
        weights[:overlap] = np.minimum(weights[:overlap], rise)
    if end < length:
        weights[-overlap:] = np.minimum(weights[-overlap:], rise[::-1])
    return weights


def blend_tiles(tiles: list[Image.Image], boxes: list[tuple[int, int, int, int]], size: tuple[int, int],
                overlap: int = TILE_OVERLAP) -> Image.Image:
    """One image from overlapping RGB tiles: a weighted mean where they overlap (linear ramps), each tile's own
    pixels where it is alone."""
    width, height = size
    total = np.zeros((height, width, 3))
    weight = np.zeros((height, width, 1))
    for image, (left, top, right, bottom) in zip(tiles, boxes):
        w = np.outer(_ramp(top, bottom, height, overlap), _ramp(left, right, width, overlap))[..., None]
        total[top:bottom, left:right] += w * np.asarray(image.convert("RGB"), dtype=np.float64)
        weight[top:bottom, left:right] += w
    return Image.fromarray(np.clip(np.rint(total / weight), 0, 255).astype(np.uint8))


def generate_tiled(engine: TileRunner, request: Any, fitted: Any, progress: Any = None, should_stop: Any = None,
                   limits: Any = None) -> GenerationResult:
    """Run an img2img `request` tile by tile (`request.tile_size`), its picture and maps already `fitted` to the
    output size (cnet/engine.py `Fitted`), with one seed and one prompt for every tile; the result reads as the
    whole run's."""
    import secrets

    from .request import MAX_SEED, PromptMode
    from .result import GenerationResult

    picture, maps, width, height = fitted.picture, fitted.maps, fitted.width, fitted.height
    boxes = tile_boxes(width, height, request.tile_size)
    # The region masks at the whole output's size (fitted with the maps), cut like the maps for each tile.
    unit_masks, reference_masks = fitted.unit_masks, fitted.reference_masks
    caption = request.caption
    if PromptMode(request.prompt_mode) is PromptMode.AUTO and caption is None:  # one caption, of the whole
        caption = engine.caption(request.source_image or picture)
    seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
    results = []
    for index, box in enumerate(boxes):
        def tile_progress(step: int, total: int, done: int = index) -> None:
            if progress is not None:
                progress(done * total + step, len(boxes) * total)

        tile = replace(request, units=[replace(u, image=m.crop(box), mask=_crop(k, box))
                                       for u, m, k in zip(request.units, maps, unit_masks)],
                       image_prompts=[replace(p, mask=_crop(k, box))
                                      for p, k in zip(request.image_prompts, reference_masks)],
                       init_image=picture.crop(box), width=box[2] - box[0], height=box[3] - box[1], tile_size=None,
                       seed=seed, caption=caption, source_image=None)
        results.append(engine.generate(tile, progress=tile_progress, should_stop=should_stop, limits=limits))
    images = [blend_tiles([r.images[i] for r in results], boxes, (width, height))
              for i in range(request.num_images)]
    metadata = [{**meta, "width": width, "height": height, "tile_size": request.tile_size, "tiles": len(boxes)}
                for meta in results[0].metadata]
    # The tiles' own inputs to save (a reference-only picture), with the whole picture in place of a tile's.
    return GenerationResult(images=images, condition_maps=maps, metadata=metadata,
                            edit_inputs={**results[0].edit_inputs, "init": picture},
                            unit_masks=unit_masks, references=[p.image for p in request.image_prompts],
                            reference_masks=reference_masks)


def _crop(mask: Image.Image | None, box: tuple[int, int, int, int]) -> Image.Image | None:
    return None if mask is None else mask.crop(box)
