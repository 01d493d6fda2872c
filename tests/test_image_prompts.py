"""Image prompts (IP-Adapter) and region masks: diffusers' own pixels for references with and without a mask, each
reference its own slot and scale, the adapter unloaded to the original pixels, the InstantStyle recipes naming real
layers of the real U-Nets, a ControlNet's mask invariants (all black = without the unit, all white = without a
mask), and a saved PNG that re-runs with its references, masks and units."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from cnet.engine import Engine
from cnet.families import FAMILIES
from cnet.image_prompts import ImagePrompt, adapter_location, preset_scales
from cnet.request import DEFAULT_PROMPT, ControlUnit, GenerationRequest, RequestError
from cnet.result import read_metadata, request_from_metadata
from cnet.tiny import save_tiny_ip_adapter


@pytest.fixture(scope="module")
def adapter(tiny_models, tmp_path_factory):
    return save_tiny_ip_adapter(tiny_models[0], tmp_path_factory.mktemp("ip-adapter"))


@pytest.fixture(scope="module")
def engine(tiny_models):
    return Engine(str(tiny_models[0]), device="cpu")


@pytest.fixture(scope="module")
def reference():
    from skimage import data

    return Image.fromarray(data.chelsea()).resize((96, 64))


def half_mask(side: str, size=(64, 64)) -> Image.Image:
    mask = Image.new("L", size, 0)
    box = (0, 0, size[0] // 2, size[1]) if side == "left" else (size[0] // 2, 0, size[0], size[1])
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def run(engine, tiny_models, cond_map, adapter=None, prompts=(), units=None, seed=3):
    units = units or [ControlUnit(cond_map, controlnet=str(tiny_models[1]))]
    return engine.generate(GenerationRequest(units=units, image_prompts=list(prompts), num_inference_steps=3,
                                             seed=seed, ip_adapter=str(adapter) if adapter else None))


def pixels(result, i=0):
    return np.asarray(result.images[i], dtype=np.int16)


def diffusers_run(tiny_models, cond_map, adapter, references, scales, masks=None, controlnet=True):
    """The same run written as diffusers' documentation writes it."""
    import diffusers
    from diffusers.image_processor import IPAdapterMaskProcessor

    extra = {"controlnet": diffusers.ControlNetModel.from_pretrained(tiny_models[1])} if controlnet else {}
    cls = diffusers.StableDiffusionControlNetPipeline if controlnet else diffusers.StableDiffusionPipeline
    pipe = cls.from_pretrained(tiny_models[0], safety_checker=None, requires_safety_checker=False, **extra)
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    count = len(references)
    pipe.load_ip_adapter(str(adapter.parent), subfolder=[""] * count, weight_name=[adapter.name] * count)
    pipe.set_ip_adapter_scale(scales)
    kwargs = {"image": cond_map} if controlnet else {"height": 64, "width": 64}
    if masks:
        processor = IPAdapterMaskProcessor()
        kwargs["cross_attention_kwargs"] = {"ip_adapter_masks": [
            None if m is None else processor.preprocess([m], height=64, width=64) for m in masks]}
    out = pipe(DEFAULT_PROMPT, num_inference_steps=3, guidance_scale=9.0, negative_prompt="",
               ip_adapter_image=references, generator=[torch.Generator().manual_seed(3)], **kwargs)
    return np.asarray(out.images[0], dtype=np.int16)


def test_a_reference_gives_diffusers_own_pixels_and_unloads_to_the_original(engine, tiny_models, cond_map, adapter,
                                                                          reference):
    before = pixels(run(engine, tiny_models, cond_map))
    styled = run(engine, tiny_models, cond_map, adapter, [ImagePrompt(reference, scale=0.8)])
    assert np.array_equal(pixels(styled), diffusers_run(tiny_models, cond_map, adapter, [reference], [0.8]))
    assert not np.array_equal(pixels(styled), before)  # the reference does change the picture
    assert np.array_equal(pixels(run(engine, tiny_models, cond_map)), before)  # unloaded: the base's own pixels
    entry = styled.metadata[0]["image_prompts"][0]
    assert (entry["scale"], entry["preset"], entry["model"]) == (0.8, "full", str(adapter))
    assert entry["revision"].startswith("sha256:")


def test_a_reference_alone_runs_diffusers_plain_pipeline(engine, tiny_models, cond_map, adapter, reference):
    ours = engine.generate(GenerationRequest(units=[], image_prompts=[ImagePrompt(reference, 0.8)], width=64,
                                             height=64, num_inference_steps=3, seed=3, ip_adapter=str(adapter)))
    theirs = diffusers_run(tiny_models, cond_map, adapter, [reference], [0.8], controlnet=False)
    assert np.array_equal(pixels(ours), theirs)
    assert ours.metadata[0]["controlnets"] == [] and ours.metadata[0]["image_prompts"][0]["scale"] == 0.8
    with pytest.raises(RequestError, match="give a control unit .a map. or a reference picture"):
        GenerationRequest(units=[]).validated()


def test_two_references_with_masks_give_diffusers_own_pixels(engine, tiny_models, cond_map, adapter, reference):
    from skimage import data

    second = Image.fromarray(data.coffee()).resize((64, 64))
    masks = [half_mask("left"), None]
    ours = run(engine, tiny_models, cond_map, adapter, [ImagePrompt(reference, 0.7, mask=masks[0]),
                                                         ImagePrompt(second, 0.4)])
    theirs = diffusers_run(tiny_models, cond_map, adapter, [reference, second], [0.7, 0.4], masks)
    assert np.array_equal(pixels(ours), theirs)
    unmasked = run(engine, tiny_models, cond_map, adapter, [ImagePrompt(reference, 0.7), ImagePrompt(second, 0.4)])
    assert not np.array_equal(pixels(unmasked), pixels(ours))  # the mask confines the first reference


def test_an_all_white_reference_mask_is_the_run_without_a_mask(engine, tiny_models, cond_map, adapter, reference):
    white = Image.new("L", (64, 64), 255)
    masked = run(engine, tiny_models, cond_map, adapter, [ImagePrompt(reference, 0.9, mask=white)])
    plain = run(engine, tiny_models, cond_map, adapter, [ImagePrompt(reference, 0.9)])
    # The masked path runs each reference's attention apart and multiplies it by 1.0: the same numbers up to the
    # order of float additions (a pixel level at most).
    assert np.abs(pixels(masked) - pixels(plain)).max() <= 1


def test_a_reference_at_scale_zero_is_the_plain_run(engine, tiny_models, cond_map, adapter, reference):
    plain = pixels(run(engine, tiny_models, cond_map))
    off = run(engine, tiny_models, cond_map, adapter, [ImagePrompt(reference, 0.0)])
    assert np.array_equal(pixels(off), plain)


def test_a_recipe_that_names_no_layer_of_this_unet_is_refused_by_name(engine, tiny_models, cond_map, adapter,
                                                                     reference):
    # The tiny U-Net has no attention in up_blocks.1: SD 1.5's style recipe would leave the reference off unseen.
    with pytest.raises(RequestError, match=r"preset='style' names no attention block"):
        run(engine, tiny_models, cond_map, adapter, [ImagePrompt(reference, 0.6, preset="style")])
    assert np.array_equal(pixels(run(engine, tiny_models, cond_map)),
                          pixels(run(Engine(str(tiny_models[0]), device="cpu"), tiny_models, cond_map)))


@pytest.mark.parametrize("family, preset, on", [  # the layer names InstantStyle's README and scripts give
    ("sd15", "style", {"up_blocks.1.attentions.0", "up_blocks.1.attentions.1", "up_blocks.1.attentions.2"}),
    ("sd15", "composition", {"down_blocks.2.attentions.0", "down_blocks.2.attentions.1", "mid_block.attentions.0"}),
    ("sdxl", "style", {"up_blocks.0.attentions.1"}),
    ("sdxl", "composition", {"down_blocks.2.attentions.1"}),
    ("sdxl", "style_and_composition", {"up_blocks.0.attentions.1", "down_blocks.2.attentions.1"}),
])
def test_instantstyle_recipes_name_real_layers_of_the_real_unets(family, preset, on):
    """The recipes read on the real SD 1.5 and SDXL U-Net architectures (built empty, from their configs): the
    layers InstantStyle names get the scale, every other is off."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.unet_loader_utils import _maybe_expand_lora_scales

    configs = {"sd15": dict(cross_attention_dim=768, attention_head_dim=8),
               "sdxl": dict(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                            block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
                            attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
                            addition_embed_type="text_time", addition_time_embed_dim=256,
                            projection_class_embeddings_input_dim=2816)}
    with init_empty_weights():
        unet = UNet2DConditionModel(**configs[family])
    expanded = _maybe_expand_lora_scales(unet, [preset_scales(preset, 0.5, FAMILIES[family])], default_scale=0.0)[0]
    assert {layer for layer, scale in expanded.items() if scale} == on
    assert all(scale == 0.5 for layer, scale in expanded.items() if layer in on)


def test_image_prompts_are_refused_by_name_where_the_family_has_no_adapter():
    with pytest.raises(RequestError, match="no IP-Adapter for FLUX.1"):
        adapter_location(None, FAMILIES["flux"])
    assert adapter_location(None, FAMILIES["sdxl"]).spec == "h94/IP-Adapter/sdxl_models/ip-adapter_sdxl.safetensors"


def test_too_many_references_and_bad_fields_are_refused_by_name(cond_map, reference):
    unit = ControlUnit(cond_map)
    with pytest.raises(RequestError, match="at most 4 reference pictures"):
        GenerationRequest(units=[unit], image_prompts=[ImagePrompt(reference)] * 5).validated()
    with pytest.raises(RequestError, match=r"image_prompts\[0\].scale=9"):
        GenerationRequest(units=[unit], image_prompts=[ImagePrompt(reference, scale=9)]).validated()
    with pytest.raises(RequestError, match=r"image_prompts\[0\].preset='anything'"):
        GenerationRequest(units=[unit], image_prompts=[ImagePrompt(reference, preset="anything")]).validated()
    with pytest.raises(RequestError, match=r"units\[0\].mask is 32x64 but its map is 64x64"):
        GenerationRequest(units=[ControlUnit(cond_map, mask=Image.new("L", (32, 64)))]).validated()


# -- region masks on ControlNet units -------------------------------------------------------------------------------

def two_units(tiny_models, second_controlnet, cond_map, mask=None):
    from PIL import ImageOps

    return [ControlUnit(cond_map, controlnet=str(tiny_models[1])),
            ControlUnit(ImageOps.invert(cond_map.convert("RGB")), controlnet=str(second_controlnet), mask=mask)]


def test_an_all_black_control_mask_is_the_run_without_that_unit(engine, tiny_models, second_controlnet, cond_map):
    black = run(engine, tiny_models, cond_map, units=two_units(tiny_models, second_controlnet, cond_map,
                                                               Image.new("L", (64, 64), 0)))
    without = run(engine, tiny_models, cond_map, units=two_units(tiny_models, second_controlnet, cond_map)[:1])
    assert np.array_equal(pixels(black), pixels(without))


def test_an_all_white_control_mask_is_the_run_without_a_mask(engine, tiny_models, second_controlnet, cond_map):
    white = run(engine, tiny_models, cond_map, units=two_units(tiny_models, second_controlnet, cond_map,
                                                               Image.new("L", (64, 64), 255)))
    plain = run(engine, tiny_models, cond_map, units=two_units(tiny_models, second_controlnet, cond_map))
    half = run(engine, tiny_models, cond_map, units=two_units(tiny_models, second_controlnet, cond_map,
                                                              half_mask("left")))
    assert np.array_equal(pixels(white), pixels(plain))
    assert not np.array_equal(pixels(half), pixels(plain))
    # Where the unit is masked out, the picture moves towards the run without it: more of the change is on the right.
    without = pixels(run(engine, tiny_models, cond_map,
                         units=two_units(tiny_models, second_controlnet, cond_map)[:1]))
    right = np.s_[:, 40:]
    assert np.abs(pixels(half)[right] - without[right]).mean() < np.abs(pixels(plain)[right] - without[right]).mean()


def test_one_controlnet_for_two_units_takes_each_units_mask(engine, tiny_models, cond_map):
    """The same ControlNet twice, each unit masked to one half: each half gets its own unit, and with the second
    unit's mask black the run is the first unit alone (the model's calls take the masks in turn)."""
    from PIL import ImageOps

    net, other = str(tiny_models[1]), ImageOps.invert(cond_map.convert("RGB"))
    halves = run(engine, tiny_models, cond_map, units=[ControlUnit(cond_map, controlnet=net, mask=half_mask("left")),
                                                       ControlUnit(other, controlnet=net, mask=half_mask("right"))])
    swapped = run(engine, tiny_models, cond_map, units=[ControlUnit(cond_map, controlnet=net, mask=half_mask("right")),
                                                        ControlUnit(other, controlnet=net, mask=half_mask("left"))])
    assert not np.array_equal(pixels(halves), pixels(swapped))
    black_mask = Image.new("L", (64, 64))
    black = run(engine, tiny_models, cond_map, units=[ControlUnit(cond_map, controlnet=net),
                                                      ControlUnit(other, controlnet=net, mask=black_mask)])
    alone = run(engine, tiny_models, cond_map, units=[ControlUnit(cond_map, controlnet=net)])
    assert np.array_equal(pixels(black), pixels(alone))


def test_a_masked_unit_outside_its_steps_keeps_the_masks_in_turn(engine, tiny_models, cond_map):
    """A unit skipped outside its start/end (cnet/fastpath.py returns zeros without running the model) still takes
    its turn of the masks: the other unit keeps its own."""
    net = str(tiny_models[1])
    units = [ControlUnit(cond_map, controlnet=net, end=0.4, mask=Image.new("L", (64, 64))),
             ControlUnit(cond_map, controlnet=net, mask=half_mask("left"))]
    both = run(engine, tiny_models, cond_map, units=units)
    second = run(engine, tiny_models, cond_map, units=units[1:])
    assert np.array_equal(pixels(both), pixels(second))


def test_region_masks_mask_dit_tokens():
    """A FLUX.1 / SD3.5 ControlNet's residuals are tokens (one per 16 px patch): the mask is taken on that grid."""
    from cnet.regions import masked_outputs

    mask = torch.zeros(1, 1, 64, 96)
    mask[..., :48] = 1.0  # the left half
    tokens = torch.ones(2, 4 * 6, 8)
    out = masked_outputs(([tokens], None), mask)
    grid = out[0][0][0, :, 0].reshape(4, 6)
    assert torch.equal(grid, torch.tensor([[1.0, 1, 1, 0, 0, 0]] * 4))
    with pytest.raises(ValueError, match="does not fit a 96x64 mask"):
        masked_outputs([torch.ones(1, 7, 8)], mask)


def test_a_saved_png_reruns_with_references_masks_and_units(engine, tiny_models, second_controlnet, cond_map,
                                                            adapter, reference, tmp_path):
    units = two_units(tiny_models, second_controlnet, cond_map, half_mask("right"))
    first = run(engine, tiny_models, cond_map, adapter, [ImagePrompt(reference, 0.5, mask=half_mask("left"))],
                units=units)
    saved = first.save(tmp_path)[0]
    meta = read_metadata(saved)
    assert meta["control_masks"][0] is None and meta["reference_masks"][0].endswith("-reference0-mask.png")
    request = request_from_metadata(meta, tmp_path).request
    assert [u.mask is not None for u in request.units] == [False, True]
    assert request.image_prompts[0].scale == 0.5 and request.image_prompts[0].mask is not None
    assert np.array_equal(pixels(engine.generate(request)), pixels(first))


@pytest.mark.slow  # the fast tier keeps the library's checks; this one loads more
def test_the_cli_takes_references_and_control_masks_and_reruns_them(tiny_models, second_controlnet, cond_map,
                                                                   adapter, reference, tmp_path, capsys):
    from cnet.cli import main

    cond_map.save(tmp_path / "map.png")
    reference.save(tmp_path / "cat.png")
    half_mask("left").save(tmp_path / "left.png")
    code = main(["generate", "--out", str(tmp_path / "out"), "--base-model", str(tiny_models[0]),
                 "--image", str(tmp_path / "map.png"), "--controlnet", str(tiny_models[1]),
                 "--control-mask", str(tmp_path / "left.png"),
                 "--reference", str(tmp_path / "cat.png"), "--reference", str(tmp_path / "cat.png"),
                 "--reference-scale", "0.3", "--reference-scale", "0.9", "--ip-adapter", str(adapter),
                 "--steps", "2", "--seed", "4"])
    out, err = capsys.readouterr()
    assert code == 0, err
    meta = read_metadata(out.split()[0])
    assert [p["scale"] for p in meta["image_prompts"]] == [0.3, 0.9]
    assert meta["control_masks"][0].endswith("-control0-mask.png") and "reference_masks" not in meta
    assert main(["generate", "--from-png", out.split()[0], "--out", str(tmp_path / "again")]) == 0
    again = capsys.readouterr().out.split()[0]
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(out.split()[0])))
    # Two scales for three references is refused by name.
    code = main(["generate", "--out", str(tmp_path / "x"), "--base-model", str(tiny_models[0]),
                 "--reference", str(tmp_path / "cat.png"), "--reference", str(tmp_path / "cat.png"),
                 "--reference", str(tmp_path / "cat.png"), "--reference-scale", "0.3", "--reference-scale", "0.9"])
    assert code == 2 and "--reference-scale was given 2 times for 3 --reference values" in capsys.readouterr().err


def test_a_missing_adapter_says_how_to_fetch_only_its_two_parts(engine, tiny_models, cond_map, reference):
    from common.models import ModelUnavailableError

    with pytest.raises(ModelUnavailableError, match=r'hf download h94/IP-Adapter --include '
                       r'"models/ip-adapter_sd15.safetensors" "models/image_encoder/\*"'):
        run(engine, tiny_models, cond_map, prompts=[ImagePrompt(reference)])
    plain = pixels(run(engine, tiny_models, cond_map))
    assert np.array_equal(plain, pixels(run(Engine(str(tiny_models[0]), device="cpu"), tiny_models, cond_map)))


@pytest.mark.slow  # the fast tier keeps the library's checks; this one loads more
def test_an_sdxl_reference_gives_diffusers_own_pixels(cond_map, reference, tmp_path):
    """SDXL's pipelines take the reference through the added conditions (`image_embeds`): the same call."""
    import diffusers

    from cnet.tiny import save_tiny_models

    base, controlnet = save_tiny_models(tmp_path / "xl", family="sdxl")
    adapter = save_tiny_ip_adapter(base, tmp_path / "xl-adapter")
    ours = Engine(str(base), device="cpu").generate(GenerationRequest(
        units=[ControlUnit(cond_map, controlnet=str(controlnet))], image_prompts=[ImagePrompt(reference, 0.7)],
        num_inference_steps=2, seed=3, ip_adapter=str(adapter)))
    pipe = diffusers.StableDiffusionXLControlNetPipeline.from_pretrained(
        base, controlnet=diffusers.ControlNetModel.from_pretrained(controlnet))
    pipe.scheduler = diffusers.DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.load_ip_adapter(str(adapter.parent), subfolder="", weight_name=adapter.name)
    pipe.set_ip_adapter_scale(0.7)
    theirs = pipe(DEFAULT_PROMPT, image=cond_map, num_inference_steps=2, guidance_scale=9.0, negative_prompt="",
                  ip_adapter_image=[reference], generator=[torch.Generator().manual_seed(3)]).images[0]
    assert np.array_equal(pixels(ours), np.asarray(theirs, dtype=np.int16))
    assert ours.metadata[0]["family"] == "sdxl"
