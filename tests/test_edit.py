"""Editing a picture under ControlNet (img2img, inpaint, outpaint, the tile upscale's map) on the tiny models: the
same pixels as the direct diffusers call, and the promises of each option."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnet.edit import keep_unmasked, outpaint_canvas, prepare_mask, tile_condition, upscale_size
from cnet.engine import Engine
from cnet.request import DEFAULT_PROMPT, ControlUnit, GenerationRequest, RequestError
from cnet.result import read_metadata

STEPS = 4


@pytest.fixture(scope="module")
def engine(tiny_models):
    return Engine(str(tiny_models[0]), device="cpu")


@pytest.fixture(scope="module")
def picture():
    """A 64x64 picture with structure in every corner (so a changed pixel shows)."""
    yy, xx = np.mgrid[:64, :64]
    rgb = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


@pytest.fixture(scope="module")
def mask():
    """White (repaint) over a 24x20 box; black elsewhere."""
    m = np.zeros((64, 64), np.uint8)
    m[20:40, 16:40] = 255
    return Image.fromarray(m)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def direct(tiny_models, class_name, **kwargs):
    """The diffusers pipeline called directly, from the saved folders, with DDIM (the engine's default)."""
    import diffusers
    from diffusers import ControlNetModel, DDIMScheduler

    base, cn = tiny_models
    pipe = getattr(diffusers, class_name).from_pretrained(
        base, controlnet=ControlNetModel.from_pretrained(cn), safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe(DEFAULT_PROMPT, num_inference_steps=STEPS, guidance_scale=9.0, negative_prompt="",
                generator=[torch.Generator().manual_seed(5)], **kwargs).images[0]


def edit(engine, tiny_models, cond_map, **kwargs):
    request = GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]), strength=0.9)],
                                num_inference_steps=STEPS, seed=5, **kwargs)
    return engine.generate(request)


def test_img2img_matches_the_direct_diffusers_call(engine, tiny_models, cond_map, picture):
    steps = []
    ours = engine.generate(GenerationRequest(
        units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]), strength=0.9)], num_inference_steps=STEPS,
        seed=5, init_image=picture, denoise=0.6), progress=lambda i, n: steps.append((i, n)))
    assert steps == [(1, 2), (2, 2)]  # 0.6 of 4 steps run: the bar counts the two that do, to the end
    theirs = direct(tiny_models, "StableDiffusionControlNetImg2ImgPipeline", image=picture, control_image=cond_map,
                    strength=0.6, controlnet_conditioning_scale=0.9)
    assert np.array_equal(pixels(ours.images[0]), pixels(theirs))
    assert ours.metadata[0]["mode"] == "img2img" and ours.metadata[0]["denoise"] == 0.6
    assert "mask_blur" not in ours.metadata[0]
    # The picture steers: another picture, same everything else, other pixels.
    other = edit(engine, tiny_models, cond_map, init_image=picture.transpose(Image.Transpose.ROTATE_90), denoise=0.6)
    assert not np.array_equal(pixels(ours.images[0]), pixels(other.images[0]))


@pytest.mark.parametrize("padding", [None, 8])
def test_inpaint_matches_the_direct_diffusers_call(engine, tiny_models, cond_map, picture, mask, padding):
    ours = edit(engine, tiny_models, cond_map, init_image=picture, mask=mask, denoise=1.0, mask_blur=4,
                inpaint_padding=padding)
    extra = {} if padding is None else {"padding_mask_crop": padding}
    theirs = direct(tiny_models, "StableDiffusionControlNetInpaintPipeline", image=picture,
                    mask_image=prepare_mask(mask, picture.size, 4).for_pipeline, control_image=cond_map,
                    strength=1.0, controlnet_conditioning_scale=0.9, **extra)
    assert np.array_equal(pixels(ours.images[0]), pixels(theirs))
    assert ours.metadata[0]["mode"] == "inpaint" and ours.metadata[0]["inpaint_padding"] == padding


def test_keep_unmasked_leaves_every_unpainted_pixel_exact(engine, tiny_models, cond_map, picture, mask):
    result = edit(engine, tiny_models, cond_map, init_image=picture, mask=mask, denoise=1.0, mask_blur=6,
                  keep_unmasked=True)
    painted = np.asarray(mask) > 127
    out, original = pixels(result.images[0]), pixels(picture)
    assert np.array_equal(out[~painted], original[~painted])  # outside the drawn (unblurred) mask: exact
    assert np.abs(out[painted] - original[painted]).mean() > 5  # inside: redrawn
    plain = edit(engine, tiny_models, cond_map, init_image=picture, mask=mask, denoise=1.0, mask_blur=6)
    assert not np.array_equal(pixels(plain.images[0])[~painted], original[~painted])  # the VAE alone changes them


def test_masks_feather_inward_only(mask):
    masks = prepare_mask(mask, (64, 64), 4)
    sharp = np.asarray(mask) > 127
    composite, blurred = np.asarray(masks.for_composite), np.asarray(masks.for_pipeline)
    assert composite[~sharp].max() == 0 and blurred[~sharp].max() > 0  # the blur spreads; the composite does not
    assert 0 < composite[sharp].min() < 128 and composite[30, 28] > 250  # soft edge inside, solid centre
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (8, 8, 16, 16))  # a painted layer: its alpha is the mask
    assert prepare_mask(rgba, (64, 64), 0).for_pipeline.getbbox() == (16, 16, 32, 32)
    with pytest.raises(RequestError, match="mask is empty"):
        prepare_mask(Image.new("L", (64, 64)), (64, 64), 4)


def test_keep_unmasked_resizes_the_picture_to_the_result(picture, mask):
    result = Image.new("RGB", (128, 128), "red")
    out = keep_unmasked([result], picture, mask)[0]
    assert out.size == (128, 128) and out.getpixel((100, 100)) != (255, 0, 0) and out.getpixel((56, 60)) == (255, 0, 0)


def test_outpaint_canvas_extends_pads_and_masks_the_border(picture):
    canvas, border = outpaint_canvas(picture, left=16, right=10, top=0, bottom=0, overlap=4)
    assert canvas.size == (64 + 16 + 16, 64) and border.size == canvas.size  # right rounded up to a multiple of 8
    rgb, m = np.asarray(canvas), np.asarray(border)
    assert np.array_equal(rgb[:, 16:80], np.asarray(picture))  # the picture, untouched, in place
    assert np.array_equal(rgb[:, 0], rgb[:, 16])  # the new border repeats the edge
    assert m[:, :20].min() == 255 and m[:, 20:76].max() == 0 and m[:, 76:].min() == 255  # border + 4 px overlap
    with pytest.raises(RequestError, match="all 0"):
        outpaint_canvas(picture)
    with pytest.raises(RequestError, match="left=-5"):
        outpaint_canvas(picture, left=-5)


def test_outpaint_runs_as_an_inpaint_of_the_border(engine, tiny_models, picture):
    canvas, border = outpaint_canvas(picture, right=32)
    result = GenerationRequest(units=[ControlUnit(Image.new("RGB", canvas.size), controlnet=str(tiny_models[1]))],
                               init_image=canvas, mask=border, denoise=1.0, keep_unmasked=True, seed=1,
                               num_inference_steps=2)
    out = engine.generate(result).images[0]
    assert out.size == (96, 64)
    keep = np.asarray(border) < 128
    assert np.array_equal(pixels(out)[keep], pixels(canvas)[keep])


def test_upscale_sizes_and_the_tile_map(picture):
    assert upscale_size(picture, 2) == (128, 128) and upscale_size(Image.new("RGB", (100, 60)), 1.5) == (144, 88)
    checks = Image.fromarray(((np.indices((64, 64)).sum(0) // 2 % 2) * 255).astype(np.uint8)).convert("RGB")
    plain, resampled = tile_condition(checks, (128, 128)), tile_condition(checks, (128, 128), down_sampling=4)
    assert plain.size == resampled.size == (128, 128)
    assert np.abs(pixels(plain) - pixels(resampled)).mean() > 50  # the resample drops the fine detail
    for bad in (0.5, 5, "2"):
        with pytest.raises(RequestError, match="factor="):
            upscale_size(picture, bad)
    with pytest.raises(RequestError, match=r"down_sampling_rate=0.5 is out of range"):
        tile_condition(picture, (128, 128), down_sampling=0.5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(mask="m"), "mask given without init_image"),
    (dict(init_image="p"), "init_image=str must be a PIL image"),
    (dict(init_image="p_ok", denoise=1.5), r"denoise=1.5 is out of range \[0.0, 1.0\]"),
    (dict(init_image="p_ok", denoise=0.1, num_inference_steps=4), "runs no step"),
    (dict(init_image="p_ok", mask="m_wide"), "mask is 128x64 but init_image is 64x64"),
    (dict(init_image="p_ok", mask_blur=-1), r"mask_blur=-1 is out of range"),
    (dict(init_image="p_ok", keep_unmasked="yes"), "keep_unmasked='yes' must be true or false"),
])
def test_edit_settings_are_checked_naming_the_field(cond_map, picture, kwargs, message):
    images = {"m": Image.new("L", (64, 64), 255), "p_ok": picture, "m_wide": Image.new("L", (128, 64), 255)}
    kwargs = {k: images.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(RequestError, match=message):
        GenerationRequest(units=[ControlUnit(cond_map)], **kwargs).validated()


def test_a_saved_inpaint_reruns_to_the_same_pixels(engine, tiny_models, cond_map, picture, mask, tmp_path):
    from cnet.result import request_from_metadata

    first = edit(engine, tiny_models, cond_map, init_image=picture, mask=mask, denoise=0.8, mask_blur=2,
                 keep_unmasked=True)
    saved = first.save(tmp_path)[0]
    assert (tmp_path / "cnet-5-init.png").is_file() and (tmp_path / "cnet-5-mask.png").is_file()
    again = engine.generate(request_from_metadata(read_metadata(saved), tmp_path).request)
    assert np.array_equal(pixels(again.images[0]), pixels(first.images[0]))
    assert again.metadata[0]["keep_unmasked"] is True and again.metadata[0]["denoise"] == 0.8


def cli(tiny_models, tmp_path, *args):
    from cnet.cli import main

    return main(["edit", "--base-model", str(tiny_models[0]), "--controlnet", str(tiny_models[1]), "--steps", "2",
                 "--seed", "4", "--out", str(tmp_path / "out"), *args])


def test_cli_edit_makes_the_condition_from_the_picture_at_its_size(tiny_models, tmp_path, picture, capsys):
    from annotators import detect

    picture.resize((96, 64)).save(tmp_path / "p.png")
    assert cli(tiny_models, tmp_path, "--picture", str(tmp_path / "p.png"), "--kind", "canny", "--denoise",
               "0.5") == 0
    out = tmp_path / "out"
    meta = read_metadata(out / "cnet-4-0.png")
    assert meta["mode"] == "img2img" and meta["denoise"] == 0.5 and (meta["width"], meta["height"]) == (96, 64)
    made = np.asarray(Image.open(out / "cnet-4-control0.png"))
    assert np.array_equal(made, np.asarray(detect("canny", tmp_path / "p.png", width=96, height=64)))


def test_cli_outpaint_keeps_the_picture_and_draws_the_border(tiny_models, tmp_path, picture):
    picture.save(tmp_path / "p.png")
    assert cli(tiny_models, tmp_path, "--picture", str(tmp_path / "p.png"), "--outpaint-left", "32",
               "--denoise", "1") == 0
    out = np.asarray(Image.open(tmp_path / "out" / "cnet-4-0.png"), dtype=np.int16)
    assert out.shape == (64, 96, 3)
    assert np.array_equal(out[:, 32 + 8:], pixels(picture)[:, 8:])  # beyond the 8-px seam: the picture, exact
    assert read_metadata(tmp_path / "out" / "cnet-4-0.png")["keep_unmasked"] is True


def test_cli_upscale_renders_the_tile_map_at_twice_the_size(tiny_models, tmp_path, picture):
    picture.save(tmp_path / "p.png")
    assert cli(tiny_models, tmp_path, "--picture", str(tmp_path / "p.png"), "--upscale", "2", "--kind", "tile",
               "--denoise", "0.5", "--tile-down-sampling", "2") == 0
    assert Image.open(tmp_path / "out" / "cnet-4-0.png").size == (128, 128)
    tile_map = Image.open(tmp_path / "out" / "cnet-4-control0.png")
    enlarged = picture.resize((128, 128), Image.Resampling.LANCZOS)
    assert np.array_equal(pixels(tile_map), pixels(tile_condition(enlarged, (128, 128), 2)))
    assert read_metadata(tmp_path / "out" / "cnet-4-0.png")["tile_size"] == 1024  # the default: one tile here


def test_cli_upscale_denoises_in_tiles_of_the_given_size(tiny_models, tmp_path, picture):
    picture.resize((160, 128)).save(tmp_path / "p.png")
    assert cli(tiny_models, tmp_path, "--picture", str(tmp_path / "p.png"), "--upscale", "2", "--kind", "tile",
               "--denoise", "0.5", "--tile-size", "256") == 0
    meta = read_metadata(tmp_path / "out" / "cnet-4-0.png")
    assert (meta["width"], meta["height"], meta["tile_size"], meta["tiles"]) == (320, 256, 256, 2)
    assert Image.open(tmp_path / "out" / "cnet-4-0.png").size == (320, 256)


@pytest.mark.parametrize("args, message", [
    (["--mask", "nowhere.png"], "--mask='nowhere.png' is not a readable image"),
    (["--outpaint-top", "8", "--mask", "MASK"], "mask and outpaint_top=8 cannot be combined"),
    (["--upscale", "9", "--kind", "tile"], "upscale=9.0 is out of range"),
    (["--operation", "outpaint", "--mask", "MASK"], "operation='outpaint' makes its own mask"),
])
def test_cli_edit_errors_name_the_flag(tiny_models, tmp_path, picture, capsys, args, message):
    import re

    picture.save(tmp_path / "p.png")
    Image.new("L", (64, 64), 255).save(tmp_path / "m.png")
    args = [str(tmp_path / "m.png") if a == "MASK" else a for a in args]
    assert cli(tiny_models, tmp_path, "--picture", str(tmp_path / "p.png"), *args) == 2
    assert re.search(message, capsys.readouterr().err)


# -- the /edit API, over HTTP as gradio_client calls it --------------------------------------------------------------


def test_the_edit_api_inpaints_keeping_the_unmasked_pixels(app_url, tmp_path, picture, mask):
    from gradio_client import Client, handle_file

    picture.save(tmp_path / "p.png")
    mask.save(tmp_path / "m.png")
    images, control_map, metadata = Client(app_url, verbose=False).predict(
        handle_file(str(tmp_path / "p.png")), mask=handle_file(str(tmp_path / "m.png")), operation="inpaint",
        kind="canny", denoise=1.0, keep_unmasked=True, steps=2, seed=3, api_name="/edit")
    out = pixels(Image.open(images[0]["image"]).convert("RGB"))
    keep = np.asarray(mask) < 128
    assert out.shape == (64, 64, 3) and np.array_equal(out[keep], pixels(picture)[keep])
    assert metadata[0]["mode"] == "inpaint" and metadata[0]["keep_unmasked"] is True
    assert Image.open(control_map).size == (64, 64)  # the canny map of the picture, at its size


def test_the_edit_api_outpaints_and_names_bad_values(app_url, tmp_path, picture):
    from gradio_client import Client, handle_file

    picture.save(tmp_path / "p.png")
    client = Client(app_url, verbose=False)
    images, _, metadata = client.predict(handle_file(str(tmp_path / "p.png")), operation="outpaint",
                                         outpaint_top=32, steps=2, seed=1, api_name="/edit")
    assert Image.open(images[0]["image"]).size == (64, 96) and metadata[0]["mode"] == "inpaint"
    for kwargs, message in ((dict(operation="inpaint"), "needs a mask"),
                            (dict(operation="paint"), "operation='paint' is not one of"),
                            (dict(denoise=2), r"denoise=2.0 is out of range"),
                            (dict(operation="upscale", upscale=5), "upscale=5.0 is out of range")):
        with pytest.raises(Exception, match=message):
            client.predict(handle_file(str(tmp_path / "p.png")), steps=2, api_name="/edit", **kwargs)


def test_a_public_upscale_obeys_the_side_limit(client, tmp_path):
    from gradio_client import handle_file

    Image.new("RGB", (600, 400), "gray").save(tmp_path / "big.png")
    with pytest.raises(Exception, match=r"upscale=2.0 makes 1200x800: at most 1024 px a side"):
        client.predict(handle_file(str(tmp_path / "big.png")), operation="upscale", upscale=2, steps=1,
                       api_name="/edit")


def test_the_inpaint_controlnet_gets_the_picture_with_the_mask_blanked(engine, tiny_models, picture, mask):
    """The inpaint kind's condition as its authors make it (masked pixels -1), pixel-equal to diffusers."""
    masked = np.asarray(picture, dtype=np.float32) / 255.0
    masked[np.asarray(mask) > 127] = -1.0
    condition = torch.from_numpy(masked.transpose(2, 0, 1)[None].copy())
    theirs = direct(tiny_models, "StableDiffusionControlNetInpaintPipeline", image=picture,
                    mask_image=prepare_mask(mask, picture.size, 0).for_pipeline, control_image=condition,
                    strength=1.0, controlnet_conditioning_scale=0.9)
    request = GenerationRequest(units=[ControlUnit(picture, kind="inpaint", controlnet=str(tiny_models[1]),
                                                   strength=0.9)], num_inference_steps=STEPS, seed=5,
                                init_image=picture, mask=mask, denoise=1.0, mask_blur=0)
    ours = engine.generate(request)
    assert np.array_equal(pixels(ours.images[0]), pixels(theirs))
    shown = pixels(ours.condition_maps[0])
    assert (shown[np.asarray(mask) > 127] == 128).all()  # the blanked area, shown grey
    with pytest.raises(RequestError, match="kind='inpaint' needs a picture and a mask"):
        engine.generate(GenerationRequest(units=[ControlUnit(picture, kind="inpaint",
                                                             controlnet=str(tiny_models[1]))],
                                          init_image=picture, num_inference_steps=2))


def test_the_vae_is_tiled_above_1024_px_or_when_asked(engine, tiny_models, cond_map, monkeypatch):
    """A 2x upscale to 2048 px decodes tile by tile (the whole-image decode is the memory peak there); smaller
    images stay untiled, so their pixels do not change."""
    vae = engine.load_base()["vae"]
    seen = []
    decode = vae.decode

    def spy(*args, **kwargs):  # records the tiling setting of each real decode
        seen.append(vae.use_tiling)
        return decode(*args, **kwargs)

    monkeypatch.setattr(vae, "decode", spy)
    for width in (64, 1088):
        engine.generate(GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]))],
                                          width=width, height=64, num_inference_steps=1, seed=0))
    monkeypatch.undo()
    assert seen == [False, True]
    always = Engine(str(tiny_models[0]), device="cpu", vae_tiling=True)
    always.generate(GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]))],
                                      num_inference_steps=1, seed=0))
    assert always.load_base()["vae"].use_tiling


def test_settings_from_a_saved_png(engine, tiny_models, second_controlnet, cond_map, tmp_path, monkeypatch):
    from cnet.result import settings_from_metadata

    for name in ("CNET_CONTROLNET_DEPTH", "CNET_BASE_MODEL"):  # so neither model is "the default" here
        monkeypatch.delenv(name, raising=False)
    made = engine.generate(GenerationRequest(
        units=[ControlUnit(cond_map, kind="depth", controlnet=str(second_controlnet), strength=0.7, end=0.8,
                           control_mode="control")],
        prompt_mode="custom", prompt="a red barn", num_inference_steps=2, num_images=2, seed=10))
    second = made.save(tmp_path)[1]
    saved, refused = settings_from_metadata(read_metadata(second))
    assert refused == []
    assert saved["prompt"] == "a red barn" and saved["prompt_mode"] == "custom"
    assert saved["seed"] == 10 and saved["num_images"] == 2 and saved["num_inference_steps"] == 2  # its batch
    assert (saved["kind"], saved["strength"], saved["end"], saved["control_mode"]) == ("depth", 0.7, 0.8, "control")
    assert saved["controlnet"] == str(second_controlnet) and saved["base_model"] == str(tiny_models[0])
    # a reference that is today's default for its kind is left out: the field then follows the kind
    monkeypatch.setenv("CNET_CONTROLNET_DEPTH", str(second_controlnet))
    assert "controlnet" not in settings_from_metadata(read_metadata(second)).settings
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(ValueError, match="carries no 'cnet' metadata"):
        read_metadata(tmp_path / "plain.png")


def test_batch_generates_per_input_with_a_table_and_resumes(tiny_models, cond_map, tmp_path, capsys):
    import csv
    import json

    from cnet.cli import main

    maps = tmp_path / "maps"
    maps.mkdir()
    cond_map.save(maps / "a.png")
    cond_map.transpose(Image.Transpose.ROTATE_90).save(maps / "b.png")
    (maps / "broken.png").write_bytes(b"not a png")
    (maps / "notes.txt").write_text("ignored")
    args = ["batch", "--input", str(maps), "--out", str(tmp_path / "out"), "--base-model", str(tiny_models[0]),
            "--controlnet", str(tiny_models[1]), "--steps", "2", "--seed", "3", "--prompt", "a cat"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "skipped broken.png" in err and "2 input(s) done, 0 already done, 1 failed" in err
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [r["input"] for r in rows] == ["a.png", "b.png"]
    assert rows[0]["outputs"] == ["a-3-0.png"] and rows[0]["prompt_used"] == "a cat" and rows[0]["seed"] == 3
    assert read_metadata(tmp_path / "out" / "b-3-0.png")["prompt_used"] == "a cat"
    with open(tmp_path / "out" / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["input"] for r in table] == ["a.png", "b.png"] and table[1]["kinds"] == "canny"
    assert main(args) == 0  # resumed: the two done are skipped, the broken one is tried again
    assert "0 input(s) done, 2 already done, 1 failed" in capsys.readouterr().err
    assert len((tmp_path / "out" / "results.jsonl").read_text().splitlines()) == 2


# -- what a hostile review found, pinned ------------------------------------------------------------------------------


def test_an_opaque_rgba_mask_is_read_by_its_colours(mask):
    opaque = mask.convert("RGBA")  # a black-and-white mask saved with an alpha channel, alpha 255 everywhere
    assert np.array_equal(np.asarray(prepare_mask(opaque, (64, 64), 0).for_pipeline), np.asarray(mask))
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (0, 0, 10, 10))  # a painted layer: its alpha is the mask
    assert prepare_mask(layer, (64, 64), 0).for_pipeline.getbbox() == (0, 0, 10, 10)


def test_units_sharing_a_controlnet_each_keep_their_control_mode(engine, tiny_models, cond_map):
    """One model for two units, each with its own mode (tests/test_control_mode.py compares with two copies)."""
    def run(second_mode):
        units = [ControlUnit(cond_map, controlnet=str(tiny_models[1]), control_mode="prompt"),
                 ControlUnit(cond_map, controlnet=str(tiny_models[1]), control_mode=second_mode)]
        return pixels(engine.generate(GenerationRequest(units=units, num_inference_steps=2, seed=0)).images[0])

    assert not np.array_equal(run("balanced"), run("prompt"))


def test_a_picture_a_few_px_off_a_multiple_of_8_is_cut_not_resampled(engine, tiny_models, cond_map, picture, mask):
    odd = Image.new("RGB", (69, 70), "white")
    odd.paste(picture, (2, 3))  # 64x64 after cutting the 5x6 remainder, centred: exactly `picture`
    odd_mask = Image.new("L", (69, 70))
    odd_mask.paste(mask, (2, 3))
    result = edit(engine, tiny_models, cond_map, init_image=odd, mask=odd_mask, denoise=1.0, keep_unmasked=True)
    keep = np.asarray(mask) < 128
    assert result.images[0].size == (64, 64)
    assert np.array_equal(pixels(result.images[0])[keep], pixels(picture)[keep])


def test_cli_edit_takes_a_ready_map(tiny_models, tmp_path, picture, cond_map):
    picture.save(tmp_path / "p.png")
    cond_map.save(tmp_path / "map.png")
    assert cli(tiny_models, tmp_path, "--picture", str(tmp_path / "p.png"), "--image", str(tmp_path / "map.png")) == 0
    assert np.array_equal(pixels(Image.open(tmp_path / "out" / "cnet-4-control0.png")), pixels(cond_map))


def test_output_stems_never_meet_even_without_case():
    from pathlib import Path

    from cnet.batch import _unique_stems

    stems = _unique_stems([Path("a.png"), Path("A.jpg"), Path("b.png")])
    assert stems == {Path("a.png"): "a.png", Path("A.jpg"): "A.jpg", Path("b.png"): "b"}


def test_batch_survives_a_cut_line_and_inputs_sharing_a_name(tiny_models, cond_map, tmp_path, capsys):
    import json

    from cnet.cli import main

    maps = tmp_path / "maps"
    maps.mkdir()
    # Stems that meet: a.png and a.jpg (both "a"), a.png.jpg ("a.png", a.png's whole name), a_png.png ("a_png",
    # which the old fallback for a.png was).
    names = ["a.png", "a.jpg", "a.png.jpg", "a_png.png"]
    for i, name in enumerate(names):
        cond_map.rotate(90 * i).save(maps / name)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"input": "a.jp')  # killed mid-write
    args = ["batch", "--input", str(maps), "--out", str(out), "--base-model", str(tiny_models[0]),
            "--controlnet", str(tiny_models[1]), "--steps", "1", "--seed", "3"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()[1:]]
    assert {r["input"]: r["outputs"] for r in rows} == {
        "a.jpg": ["a.jpg-3-0.png"], "a.png": ["a.png-3-0.png"], "a.png.jpg": ["a.png.jpg-3-0.png"],
        "a_png.png": ["a_png-3-0.png"]}  # no output overwrites another
    maps_seen = {np.asarray(Image.open(out / r["outputs"][0].replace("-0.png", "-control0.png"))).tobytes()
                 for r in rows}
    assert len(maps_seen) == 4  # each row's own map
    assert main(args) == 0 and "0 input(s) done, 4 already done" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    cond_map.save(other / "a.png")
    assert main([*args[:2], str(other), *args[3:]]) == 2  # another folder into the same output folder
    assert f"holds the batch of {str(maps.resolve())!r}" in capsys.readouterr().err


def test_the_tile_upscale_matches_the_direct_diffusers_call(engine, tiny_models, picture):
    """Upscale = img2img of the enlarged picture under the tile map: the same pixels as diffusers' own pipeline."""
    size = upscale_size(picture, 2)
    enlarged = picture.resize(size, Image.Resampling.LANCZOS)
    tile_map = tile_condition(enlarged, size, 2.0)
    ours = engine.generate(GenerationRequest(
        units=[ControlUnit(tile_map, kind="tile", controlnet=str(tiny_models[1]), strength=0.9)],
        init_image=enlarged, denoise=0.5, num_inference_steps=STEPS, seed=5))
    theirs = direct(tiny_models, "StableDiffusionControlNetImg2ImgPipeline", image=enlarged, control_image=tile_map,
                    strength=0.5, controlnet_conditioning_scale=0.9)
    assert ours.images[0].size == (128, 128)
    assert np.array_equal(pixels(ours.images[0]), pixels(theirs))


@pytest.mark.parametrize("edit_settings", [{}, {"denoise": 1.0, "inpaint_padding": 8}],
                         ids=["text-to-image", "inpaint-a-crop"])
def test_a_nan_from_the_decoder_is_reported_on_every_path(tiny_models, cond_map, picture, mask, edit_settings):
    # A broken weight, as a VAE overflowing in half precision makes: the inpaint-a-crop path returns PIL images
    # (diffusers pastes the crop back as PIL), so only the check on the decoder itself can see the NaN there.
    from cnet.engine import GenerationFailed

    broken = Engine(str(tiny_models[0]), device="cpu")
    broken.load_base()["vae"].decoder.conv_out.bias.data[:] = float("nan")
    if edit_settings:
        edit_settings = {**edit_settings, "init_image": picture, "mask": mask}
    with pytest.raises(GenerationFailed, match="NaN"):
        edit(broken, tiny_models, cond_map, **edit_settings)


def test_the_edit_api_takes_an_output_size_and_a_resize_mode(app_url, tmp_path, picture):
    from gradio_client import Client, handle_file

    picture.save(tmp_path / "p.png")
    client = Client(app_url, verbose=False)
    made = {}
    for mode in ("crop_and_resize", "resize_and_fill"):
        images, control_map, metadata = client.predict(
            handle_file(str(tmp_path / "p.png")), operation="img2img", width=96, height=64, resize_mode=mode,
            steps=2, seed=1, api_name="/edit")
        made[mode] = pixels(Image.open(images[0]["image"]).convert("RGB"))
        assert made[mode].shape == (64, 96, 3) and Image.open(control_map).size == (96, 64)
        assert metadata[0]["resize_mode"] == mode
    # The square picture in a 3:2 frame: filled (padded sides) is another picture than cropped (top and bottom cut).
    assert not np.array_equal(made["crop_and_resize"], made["resize_and_fill"])
    # An upscale is denoised in tiles (tile_size, default 1024), as the metadata says; 0: the whole image.
    picture.resize((96, 96)).save(tmp_path / "p96.png")
    for tile_size, tiles in ((256, 4), (0, None)):
        _, _, metadata = client.predict(handle_file(str(tmp_path / "p96.png")), operation="upscale", kind="canny",
                                        upscale=4, tile_size=tile_size, denoise=0.5, steps=2, seed=1,
                                        api_name="/edit")
        assert (metadata[0]["width"], metadata[0].get("tiles")) == (384, tiles)
    # One side alone: the other keeps the picture's aspect ratio.
    images, _, _ = client.predict(handle_file(str(tmp_path / "p.png")), width=128, steps=2, seed=1,
                                  api_name="/edit")
    assert Image.open(images[0]["image"]).size == (128, 128)
