"""Resize modes (a map or picture of another shape meets the output) and pixel perfect, as A1111's extension."""

import numpy as np
import pytest
from PIL import Image

from cnet.request import ControlUnit, GenerationRequest, RequestError
from cnet.resize import fit, pixel_perfect_resolution


@pytest.fixture(scope="module")
def wide_map():
    """A 3:2 map (96x64): a distinct column pattern, so each mode's geometry shows."""
    xx = np.tile(np.arange(96, dtype=np.uint8) * 2, (64, 1))
    return Image.fromarray(np.stack([xx, 255 - xx, np.full_like(xx, 128)], axis=-1))


def arr(image):
    return np.asarray(image, dtype=np.int16)


def test_crop_keeps_the_centre(wide_map):
    assert np.array_equal(arr(fit(wide_map, 64, 64, "crop_and_resize")), arr(wide_map.crop((16, 0, 80, 64))))


def test_just_resize_stretches(wide_map):
    stretched = arr(fit(wide_map, 64, 64, "just_resize"))
    assert np.array_equal(stretched, arr(wide_map.resize((64, 64), Image.Resampling.LANCZOS)))
    assert stretched[0, 0, 0] <= 2 and stretched[0, -1, 0] > 180  # both ends of the map are still in the image


def test_fill_pads_the_bands_with_the_edges(wide_map):
    filled = arr(fit(wide_map, 64, 64, "resize_and_fill"))
    inner = arr(wide_map.resize((64, 42), Image.Resampling.LANCZOS))
    assert np.array_equal(filled[11:53], inner)  # the whole map, scaled to fit, centred
    assert np.abs(filled[:11] - inner[:1]).max() <= 2 and np.abs(filled[53:] - inner[-1:]).max() <= 2  # edge bands


def test_the_engine_fits_every_map_by_the_requests_mode(tiny_models, wide_map):
    from cnet.engine import Engine

    engine = Engine(str(tiny_models[0]), device="cpu")
    for mode in ("crop_and_resize", "just_resize", "resize_and_fill"):
        result = engine.generate(GenerationRequest(units=[ControlUnit(wide_map, controlnet=str(tiny_models[1]))],
                                                   width=64, height=64, num_inference_steps=1, seed=0,
                                                   resize_mode=mode))
        assert np.array_equal(arr(result.condition_maps[0]), arr(fit(wide_map, 64, 64, mode)))
        assert result.metadata[0]["resize_mode"] == mode
    with pytest.raises(RequestError, match="resize_mode='squash' is not one of"):
        GenerationRequest(units=[ControlUnit(wide_map)], resize_mode="squash").validated()


def test_pixel_perfect_picks_the_resolution_that_makes_the_map_the_output_size():
    from skimage import data

    from annotators import detect

    photo = Image.fromarray(data.coffee()).resize((600, 400))
    assert pixel_perfect_resolution((600, 400), (768, 512)) == 512
    assert pixel_perfect_resolution((600, 400), (512, 512)) == 512  # crop: cover the square
    assert pixel_perfect_resolution((600, 400), (512, 512), "resize_and_fill") == 341  # fill: fit inside
    made = detect("canny", photo, detect_resolution=pixel_perfect_resolution(photo.size, (768, 512)))
    assert made.size == (768, 512)  # no second resampling to reach the output


def test_the_cli_detects_pixel_perfect_and_fits_by_the_mode(tiny_models, tmp_path):
    from skimage import data

    from annotators import detect
    from cnet.cli import main

    Image.fromarray(data.coffee()).resize((600, 400)).save(tmp_path / "photo.png")
    common = ["generate", "--detect", "--image", str(tmp_path / "photo.png"), "--base-model", str(tiny_models[0]),
              "--controlnet", str(tiny_models[1]), "--steps", "1", "--seed", "0", "--width", "64", "--height", "64"]
    assert main([*common, "--out", str(tmp_path / "fill"), "--resize-mode", "resize_and_fill", "--pixel-perfect"]) == 0
    made = Image.open(tmp_path / "fill" / "cnet-0-control0.png")
    # fill: the photo fits inside 64x64 (its short side would be 43 px: the annotators' smallest, 64, is used),
    # then it is scaled to fit and the bands filled
    expected = fit(detect("canny", tmp_path / "photo.png", detect_resolution=64), 64, 64, "resize_and_fill")
    assert np.array_equal(arr(made), arr(expected))
    assert main([*common, "--out", str(tmp_path / "crop")]) == 0
    cropped = Image.open(tmp_path / "crop" / "cnet-0-control0.png")
    assert np.array_equal(arr(cropped), arr(detect("canny", tmp_path / "photo.png", width=64, height=64)))
