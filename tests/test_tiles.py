"""Tile-by-tile img2img (the tile upscale's denoising, cnet/tiles.py): the tiles, their blend, and that the engine's
tiled run is each tile's own run where the tiles do not overlap."""

import numpy as np
import pytest
from PIL import Image

from cnet.engine import Engine
from cnet.request import ControlUnit, GenerationRequest, RequestError
from cnet.result import read_metadata, request_from_metadata
from cnet.tiles import TILE_OVERLAP, blend_tiles, tile_boxes


@pytest.mark.parametrize("width, height, tile, count", [(2048, 2048, 1024, 9), (1024, 1024, 1024, 1),
                                                        (2048, 1024, 1024, 3), (1008, 512, 256, 15),
                                                        (4096, 2048, 1024, 15)])
def test_tiles_cover_the_image_within_the_size_and_overlap(width, height, tile, count):
    boxes = tile_boxes(width, height, tile)
    assert len(boxes) == count
    covered = np.zeros((height, width), int)
    for left, top, right, bottom in boxes:
        assert right - left <= tile and bottom - top <= tile
        assert all(v % 8 == 0 for v in (left, top, right, bottom))
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1  # nothing left out
    lefts = sorted({b[0] for b in boxes})
    rights = sorted({b[2] for b in boxes})
    for right, next_left in zip(rights, lefts[1:]):  # neighbours overlap by about TILE_OVERLAP (to the nearest 8)
        assert TILE_OVERLAP - 8 <= right - next_left <= TILE_OVERLAP + 8


def test_blending_tiles_cut_from_one_image_gives_it_back():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (512, 704, 3), dtype=np.uint8))
    boxes = tile_boxes(704, 512, 256)
    assert np.array_equal(np.asarray(blend_tiles([image.crop(b) for b in boxes], boxes, (704, 512))),
                          np.asarray(image))


def test_an_overlap_is_a_ramp_between_the_two_tiles():
    boxes = [(0, 0, 320, 64), (256, 0, 576, 64)]
    dark, light = Image.new("RGB", (320, 64), (0, 0, 0)), Image.new("RGB", (320, 64), (255, 255, 255))
    row = np.asarray(blend_tiles([dark, light], boxes, (576, 64)))[0, :, 0].astype(int)
    assert (row[:256] == 0).all() and (row[320:] == 255).all()  # alone: each tile's own pixels
    assert (np.diff(row[256:320]) >= 0).all() and 0 < row[288] < 255  # the seam fades from one to the other


@pytest.fixture(scope="module")
def engine(tiny_models):
    return Engine(str(tiny_models[0]), device="cpu")


@pytest.fixture(scope="module")
def photo():
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((320, 256), Image.Resampling.LANCZOS)


def img2img(tiny_models, picture, **kwargs):
    return GenerationRequest(units=[ControlUnit(picture, kind="tile", controlnet=str(tiny_models[1]))],
                             init_image=picture, denoise=0.5, num_inference_steps=2, seed=11, **kwargs)


def test_a_tiled_img2img_is_each_tiles_own_run_where_they_do_not_overlap(engine, tiny_models, photo, tmp_path):
    steps = []
    tiled = engine.generate(img2img(tiny_models, photo, tile_size=256), progress=lambda i, n: steps.append((i, n)))
    assert tiled.images[0].size == (320, 256)
    boxes = tile_boxes(320, 256, 256)
    assert len(boxes) == 2 and tiled.metadata[0]["tiles"] == 2 and tiled.metadata[0]["tile_size"] == 256
    # One progress bar over both tiles: one step each (denoise 0.5 of 2), counted to the end.
    assert steps == [(1, 2), (2, 2)]
    out = np.asarray(tiled.images[0])
    for index, box in enumerate(boxes):
        alone = engine.generate(img2img(tiny_models, photo.crop(box)))
        own = np.asarray(alone.images[0])
        other = boxes[1 - index]
        # Columns of this tile that the other tile does not reach: exactly this tile's own run.
        columns = [x for x in range(box[0], box[2]) if not other[0] <= x < other[2]]
        assert np.array_equal(out[:, columns], own[:, [x - box[0] for x in columns]])
    # The tiles differ from one whole run (that is the point: each sees only its own area) ...
    whole = engine.generate(img2img(tiny_models, photo))
    assert not np.array_equal(out, np.asarray(whole.images[0]))
    # ... a tile as large as the image is the whole run, and a saved tiled run re-runs to the same pixels.
    single = engine.generate(img2img(tiny_models, photo, tile_size=320))
    assert np.array_equal(np.asarray(single.images[0]), np.asarray(whole.images[0]))
    saved = tiled.save(tmp_path)[0]
    again = engine.generate(request_from_metadata(read_metadata(saved), tmp_path).request)
    assert np.array_equal(np.asarray(again.images[0]), out)


@pytest.mark.parametrize("kwargs, message", [
    (dict(tile_size=100), "tile_size=100 is out of range"),
    (dict(tile_size=260), "tile_size=260 must be a multiple of 8"),
    (dict(tile_size=256, mask=Image.new("L", (320, 256), 255)), "tile_size=256 works on img2img"),
])
def test_tile_size_is_checked_naming_it(tiny_models, photo, kwargs, message):
    with pytest.raises(RequestError, match=message):
        img2img(tiny_models, photo, **kwargs).validated()


def test_a_tiled_run_cuts_each_units_mask_like_its_map(engine, tiny_models, photo, tmp_path):
    """A control mask on a tiled upscale applies where it was painted: each tile is its own run with the mask cut
    like the map, and the saved run re-runs with it."""
    from dataclasses import replace

    from PIL import ImageDraw

    mask = Image.new("L", (320, 256), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 100, 256), fill=255)
    request = img2img(tiny_models, photo, tile_size=256)
    request.units = [replace(request.units[0], mask=mask)]
    tiled = engine.generate(request)
    boxes = tile_boxes(320, 256, 256)
    out = np.asarray(tiled.images[0])
    box, other = boxes[1], boxes[0]
    alone = img2img(tiny_models, photo.crop(box))
    alone.units = [replace(alone.units[0], mask=mask.crop(box))]
    own = np.asarray(engine.generate(alone).images[0])
    columns = [x for x in range(box[0], box[2]) if not other[0] <= x < other[2]]
    assert np.array_equal(out[:, columns], own[:, [x - box[0] for x in columns]])
    unmasked = np.asarray(engine.generate(img2img(tiny_models, photo, tile_size=256)).images[0])
    assert not np.array_equal(out, unmasked)
    saved = tiled.save(tmp_path)[0]
    again = engine.generate(request_from_metadata(read_metadata(saved), tmp_path).request)
    assert np.array_equal(np.asarray(again.images[0]), out)


def test_a_tiled_run_with_a_reference_only_picture_saves_it_and_reruns(engine, tiny_models, photo, tmp_path):
    """Every tile reads the reference-only picture; the whole run's PNG keeps it beside the image for the re-run."""
    from skimage import data

    request = img2img(tiny_models, photo, tile_size=256)
    request.reference_only = Image.fromarray(data.chelsea())
    tiled = engine.generate(request)
    saved = tiled.save(tmp_path)[0]
    meta = read_metadata(saved)
    assert meta["reference_only_image"].endswith("-reference_only.png")
    again = engine.generate(request_from_metadata(meta, tmp_path).request)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(tiled.images[0]))
