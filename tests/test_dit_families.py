"""FLUX.1 and SD3.5, the DiT families: tiny models built from configs (cnet/tiny_dit.py), recognised from their
configs, and run through the studio's doors with the same pixels as diffusers' own pipelines called directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnet.engine import Engine
from cnet.families import FAMILIES, base_family, family_of
from cnet.request import ControlUnit, GenerationRequest, RequestError
from cnet.tiny_dit import build_t5_tokenizer, save_tiny_dit_models

PIPELINES = {"flux": "FluxControlNetPipeline", "sd3": "StableDiffusion3ControlNetPipeline"}
NETS = {"flux": "FluxControlNetModel", "sd3": "SD3ControlNetModel"}
PROMPT = "a red circle"
TOLERANCE = 1  # of 255: the same kernels run in the same order on one machine; 1/255 leaves room for rounding


@pytest.fixture(scope="module", params=["flux", "sd3"])
def dit(request, tmp_path_factory):
    """(family name, base folder, ControlNet folder) of a tiny DiT model saved in diffusers layout."""
    base, controlnet = save_tiny_dit_models(tmp_path_factory.mktemp(request.param), seed=0, family=request.param)
    return request.param, base, controlnet


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    base, controlnet = save_tiny_dit_models(tmp_path_factory.mktemp("flux"), seed=0, family="flux")
    return base, controlnet, base.parent / "controlnet-union"


def ring(side: int = 64) -> Image.Image:
    pixels = np.zeros((side, side, 3), np.uint8)
    pixels[side // 4: 3 * side // 4, side // 2 - 4: side // 2 + 4] = 255
    return Image.fromarray(pixels)


def direct(name, base, controlnet, seed=3, pipeline=None, **kwargs):
    """diffusers' own pipeline, called as its documentation does (the family's scheduler, 3.5 guidance)."""
    import diffusers

    load = getattr(diffusers, NETS[name]).from_pretrained
    nets = [load(c) for c in controlnet] if isinstance(controlnet, list) else load(controlnet)  # a list: a multi
    pipe = getattr(diffusers, pipeline or PIPELINES[name]).from_pretrained(base, controlnet=nets)
    torch.manual_seed(seed)  # SD3's pipeline samples the map's latents from the global generator
    kwargs.setdefault("control_image", ring())
    out = pipe(PROMPT, height=64, width=64, num_inference_steps=2, guidance_scale=3.5,
               generator=[torch.Generator("cpu").manual_seed(seed)], output_type="np", **kwargs)
    return (out.images[0] * 255).round().astype(int)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def custom(**kwargs) -> dict:
    return dict(prompt_mode="custom", prompt=PROMPT, num_inference_steps=2, seed=3, **kwargs)


def test_the_cli_generates_the_pixels_of_a_direct_diffusers_call(dit, tmp_path):
    from cnet.cli import main as cli

    name, base, controlnet = dit
    ring().save(tmp_path / "map.png")
    assert cli(["generate", "--base-model", str(base), "--controlnet", str(controlnet), "--image",
                str(tmp_path / "map.png"), "--prompt-mode", "custom", "--prompt", PROMPT, "--steps", "2", "--seed",
                "3", "--out", str(tmp_path / "out"), "--device", "cpu"]) == 0
    saved = sorted((tmp_path / "out").glob("*.png"))
    made = [p for p in saved if "control" not in p.name]
    assert len(made) == 1
    assert np.abs(pixels(Image.open(made[0])) - direct(name, base, controlnet)).max() <= TOLERANCE
    from cnet.result import read_metadata

    meta = read_metadata(made[0])
    assert (meta["family"], meta["scheduler"], meta["guidance_scale"]) == (name, "flow_euler", 3.5)


def test_the_map_steers_the_picture(dit):
    name, base, controlnet = dit
    black = direct(name, base, controlnet, control_image=Image.new("RGB", (64, 64)))
    assert np.abs(black - direct(name, base, controlnet)).max() > 2  # the tiny ControlNet is awake


def test_two_controlnets_equal_diffusers_multi_controlnet(dit):
    name, base, controlnet = dit
    engine = Engine(str(base), device="cpu")
    units = [ControlUnit(ring(), controlnet=str(controlnet), strength=0.8),
             ControlUnit(ring().rotate(90), controlnet=str(controlnet), strength=0.5)]
    made = engine.generate(GenerationRequest(units=units, **custom())).images[0]
    want = direct(name, base, [controlnet, controlnet], control_image=[ring(), ring().rotate(90)],
                  controlnet_conditioning_scale=[0.8, 0.5])
    assert np.abs(pixels(made) - want).max() <= TOLERANCE


def test_flux_img2img_and_inpaint_equal_diffusers(flux):
    base, controlnet, _ = flux
    engine = Engine(str(base), device="cpu")
    picture = Image.fromarray(np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8))
    mask = Image.fromarray(((np.arange(64)[None, :] > 32).repeat(64, 0) * 255).astype(np.uint8))
    unit = ControlUnit(ring(), controlnet=str(controlnet))
    made = engine.generate(GenerationRequest(units=[unit], init_image=picture, denoise=1.0, **custom()))
    want = direct("flux", base, controlnet, pipeline="FluxControlNetImg2ImgPipeline", image=picture, strength=1.0)
    assert np.abs(pixels(made.images[0]) - want).max() <= TOLERANCE
    made = engine.generate(GenerationRequest(units=[unit], init_image=picture, mask=mask, denoise=1.0, mask_blur=0,
                                             **custom()))
    want = direct("flux", base, controlnet, pipeline="FluxControlNetInpaintPipeline", image=picture,
                  mask_image=mask.convert("RGB"), strength=1.0)
    assert np.abs(pixels(made.images[0]) - want).max() <= TOLERANCE


@pytest.mark.parametrize("kinds", [("canny",), ("canny", "depth")])
def test_a_flux_union_model_takes_each_kind_with_its_control_type(flux, kinds):
    """One condition: the Union model with its control type; several: diffusers' multi-ControlNet of that one
    model, each condition with its type (InstantX's numbering: canny 0, depth 2)."""
    base, _, union = flux
    engine = Engine(str(base), device="cpu")
    maps = [ring(), ring().rotate(90)][: len(kinds)]
    made = engine.generate(GenerationRequest(units=[ControlUnit(m, kind=k, controlnet=str(union))
                                                    for m, k in zip(maps, kinds)], **custom()))
    modes = {"canny": 0, "depth": 2}
    if len(kinds) == 1:
        want = direct("flux", base, union, control_mode=0)
    else:
        # start/end as lists too: left to their defaults, diffusers sizes them by its one net and zips the
        # conditions down to the first
        want = direct("flux", base, [union], control_image=maps, control_mode=[modes[k] for k in kinds],
                      controlnet_conditioning_scale=[1.0, 1.0], control_guidance_start=[0.0, 0.0],
                      control_guidance_end=[1.0, 1.0])
        first_only = direct("flux", base, [union], control_image=maps, control_mode=[modes[k] for k in kinds],
                            controlnet_conditioning_scale=[1.0, 1.0])
        assert np.abs(first_only - want).max() > 2  # (so the studio always passes them)
    assert np.abs(pixels(made.images[0]) - want).max() <= TOLERANCE
    other = engine.generate(GenerationRequest(units=[ControlUnit(maps[0], kind="openpose", controlnet=str(union))],
                                              **custom())).images[0]
    assert np.abs(pixels(other) - pixels(made.images[0])).max() > 0  # the type changes the picture


def test_true_cfg_runs_flux_with_its_negative_prompt_and_is_recorded(flux, tmp_path):
    from cnet.result import read_metadata, request_from_metadata

    base, controlnet, _ = flux
    engine = Engine(str(base), device="cpu")
    request = GenerationRequest(units=[ControlUnit(ring(), controlnet=str(controlnet))], negative_prompt="blurry",
                                true_cfg=2.0, **custom())
    result = engine.generate(request)
    want = direct("flux", base, controlnet, negative_prompt="blurry", true_cfg_scale=2.0)
    assert np.abs(pixels(result.images[0]) - want).max() <= TOLERANCE
    saved = result.save(tmp_path)[0]
    rerun = request_from_metadata(read_metadata(saved), saved.parent).request
    assert (rerun.true_cfg, rerun.negative_prompt, rerun.guidance_scale) == (2.0, "blurry", 3.5)


@pytest.mark.parametrize("settings, message", [
    (dict(eta=0.5), "eta does not apply to"),
    (dict(guess_mode=True), "guess_mode does not apply to"),
    (dict(scheduler="ddim"), "scheduler='ddim' does not apply to"),
    (dict(prompt="a (red:1.3) circle"), "reads the prompt as plain text (T5"),
    (dict(width=72, height=64), "width=72: FLUX.1 makes sides in multiples of 16"),
    (dict(negative_prompt="blurry"), "a negative prompt needs true CFG: set true_cfg above 1"),
])
def test_settings_that_mean_nothing_for_flux_are_refused_by_name(flux, settings, message):
    base, controlnet, _ = flux
    fields = {**custom(), **settings}
    with pytest.raises(RequestError, match=message.replace("(", r"\(")):
        Engine(str(base), device="cpu").generate(GenerationRequest(
            units=[ControlUnit(ring(), controlnet=str(controlnet))], **fields))


def test_sd3_edits_and_flux_img2img_negative_prompts_are_refused_by_name(dit):
    name, base, controlnet = dit
    engine = Engine(str(base), device="cpu")
    unit = ControlUnit(ring(), controlnet=str(controlnet))
    if name == "sd3":
        with pytest.raises(RequestError, match="Stable Diffusion 3.5 has no img2img pipeline for ControlNets"):
            engine.generate(GenerationRequest(units=[unit], init_image=ring(), **custom()))
    else:
        with pytest.raises(RequestError, match="negative_prompt does not apply to FluxControlNetImg2ImgPipeline"):
            engine.generate(GenerationRequest(units=[unit], init_image=ring(), negative_prompt="blurry",
                                              true_cfg=2.0, **custom()))


def test_the_family_is_read_from_the_configs(dit):
    import diffusers

    name, base, controlnet = dit
    assert base_family(str(base)) is FAMILIES[name]
    assert family_of(diffusers.ControlNetModel.load_config(controlnet)) is FAMILIES[name]  # any config reader
    assert FAMILIES[name].denoiser == "transformer" and not {"eta", "guess_mode"} & FAMILIES[name].controls


def test_a_controlnet_of_the_other_dit_family_is_refused_by_name(tmp_path):
    from cnet.families import FamilyMismatchError

    flux_base, _ = save_tiny_dit_models(tmp_path / "flux", family="flux")
    _, sd3_net = save_tiny_dit_models(tmp_path / "sd3", family="sd3")
    with pytest.raises(FamilyMismatchError, match="is a Stable Diffusion 3.5 ControlNet, but the base model"):
        Engine(str(flux_base), device="cpu").generate(GenerationRequest(
            units=[ControlUnit(ring(), controlnet=str(sd3_net))], **custom()))


def test_the_t5_tokenizer_is_built_offline_and_reads_back(tmp_path):
    tokenizer = build_t5_tokenizer(tmp_path / "t5", words=["red", "circle"])
    ids = tokenizer("a red circle").input_ids
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a red circle"


def test_the_app_describes_a_dit_base_and_moves_a_default_guidance_to_its_family(flux, tiny_models, tmp_path):
    from webui.service import Studio
    from webui.settings import AppSettings

    studio = Studio(AppSettings(output_dir=tmp_path / "outputs"))
    base = str(flux[0])
    line = studio.describe_base(base)
    assert "**FLUX.1** (1024 px" in line and "a negative prompt needs True CFG" in line
    assert studio.family_guidance(base, 9.0) == 3.5  # SD's default becomes FLUX.1's
    assert studio.family_guidance(base, 5.0) == 5.0  # the user's own value stays
    assert studio.family_guidance(str(tiny_models[0]), 3.5) == 9.0  # and back for an SD base
    assert studio.family_guidance("nobody/no-such-model", 3.5) == 3.5  # unreadable: unchanged
    assert studio.family_guidance(base, 5.0, form_default=5.0) == 3.5  # the form's own default (the demo's 5) too


def test_a_memory_plan_offloads_what_it_says_and_keeps_the_pixels(flux, monkeypatch):
    """CNET_MEMORY_PLAN=auto for a card just too small for everything: the largest text encoder is offloaded
    (diffusers' group offloading; on this CPU the hooks run without a stream), the status says so, and the
    pixels are those of the run without a plan."""
    from cnet.placement import plan_base

    base, controlnet, _ = flux
    roomy = plan_base(base, FAMILIES["flux"], "FLUX.1", 1000.0, "float32")
    encoders = sorted((p.part for p in roomy.placements if p.part.name.startswith("text_encoder")),
                      key=lambda part: -part.params)
    card = roomy.used_gb - encoders[0].gigabytes("float32") / 2
    request = GenerationRequest(units=[ControlUnit(ring(), controlnet=str(controlnet))], **custom())
    plain = Engine(str(base), device="cpu").generate(request).images[0]
    monkeypatch.setenv("CNET_MEMORY_PLAN", "auto")
    monkeypatch.setenv("CNET_MEMORY_CARD_GB", str(card))
    engine = Engine(str(base), device="cpu")
    planned = engine.generate(request).images[0]
    assert f"{encoders[0].name} offloaded" in engine.memory_status
    assert f"{encoders[1].name} float32" in engine.memory_status and "transformer float32" in engine.memory_status
    assert np.abs(pixels(planned) - pixels(plain)).max() <= TOLERANCE
    from webui.generate_tab import shown_results

    result = engine.generate(request)
    assert result.metadata[0]["memory_plan"] == engine.memory_status  # recorded, and shown in the status line:
    assert f"memory plan: {engine.memory_status}" in shown_results(result, [])[3]
    with pytest.raises(ValueError, match="cannot be combined with offload='model'"):
        Engine(str(base), device="cpu", offload="model")


def test_a_dit_lora_through_the_lora_field_equals_diffusers_and_unloads(dit, tmp_path):
    import diffusers

    from cnet.request import LoraRef
    from cnet.tiny import save_tiny_lora

    name, base, controlnet = dit
    lora = save_tiny_lora(base, tmp_path / "lora")
    engine = Engine(str(base), device="cpu")
    unit = ControlUnit(ring(), controlnet=str(controlnet))
    plain = pixels(engine.generate(GenerationRequest(units=[unit], **custom())).images[0])
    styled = pixels(engine.generate(GenerationRequest(units=[unit], loras=[LoraRef(str(lora), 3.0)],
                                                      **custom())).images[0])
    net = getattr(diffusers, NETS[name]).from_pretrained(controlnet)
    pipe = getattr(diffusers, PIPELINES[name]).from_pretrained(base, controlnet=net)
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[3.0])
    torch.manual_seed(3)
    want = pipe(PROMPT, control_image=ring(), height=64, width=64, num_inference_steps=2, guidance_scale=3.5,
                generator=[torch.Generator("cpu").manual_seed(3)], output_type="np").images[0]
    assert np.abs(styled - (want * 255).round().astype(int)).max() <= TOLERANCE
    assert np.abs(styled - plain).max() > 2  # the LoRA changes the picture
    again = pixels(engine.generate(GenerationRequest(units=[unit], **custom())).images[0])
    assert np.abs(again - plain).max() <= TOLERANCE  # and leaves when it is no longer asked for


def test_fast_decode_uses_the_familys_tiny_autoencoder_as_diffusers_does(dit, tmp_path, monkeypatch):
    """TAEF1 / TAESD3's shape (16 latent channels, the VAE's shift and scale): the pipeline's VAE swapped for it, as
    diffusers' guide does, equals the studio's fast decode."""
    import diffusers

    from cnet.tiny_dit import save_tiny_taef

    name, base, controlnet = dit
    monkeypatch.setenv("CNET_TINY_VAE", str(save_tiny_taef(tmp_path / "taef")))
    if name == "sd3":  # its pipeline encodes the map with the VAE it decodes with: a tiny one cannot encode
        with pytest.raises(RequestError, match="fast_decode does not apply to Stable Diffusion 3.5 models"):
            Engine(str(base), device="cpu").generate(GenerationRequest(
                units=[ControlUnit(ring(), controlnet=str(controlnet))], fast_decode=True, **custom()))
        return
    made = Engine(str(base), device="cpu").generate(GenerationRequest(
        units=[ControlUnit(ring(), controlnet=str(controlnet))], fast_decode=True, **custom())).images[0]
    net = getattr(diffusers, NETS[name]).from_pretrained(controlnet)
    pipe = getattr(diffusers, PIPELINES[name]).from_pretrained(base, controlnet=net)
    pipe.vae = diffusers.AutoencoderTiny.from_pretrained(tmp_path / "taef")
    torch.manual_seed(3)
    want = pipe(PROMPT, control_image=ring(), height=64, width=64, num_inference_steps=2, guidance_scale=3.5,
                generator=[torch.Generator("cpu").manual_seed(3)], output_type="np").images[0]
    assert np.abs(pixels(made) - (want * 255).round().astype(int)).max() <= TOLERANCE


@pytest.mark.parametrize("operation, size", [(["outpaint", "--outpaint-right", "32"], (96, 64)),
                                             (["upscale", "--upscale", "2"], (128, 128))])
def test_flux_outpaints_and_upscales_from_the_cli(flux, tmp_path, operation, size):
    """The Edit operations run on FLUX.1 through its inpaint and img2img ControlNet pipelines (an upscale with the
    tile kind's map, tile by tile where it is larger than a tile)."""
    from cnet.cli import main as cli

    base, controlnet, _ = flux
    Image.fromarray(np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)).save(tmp_path / "pic.png")
    assert cli(["edit", "--picture", str(tmp_path / "pic.png"), "--kind", "tile", "--controlnet", str(controlnet),
                "--base-model", str(base), "--operation", *operation, "--steps", "2", "--seed", "1", "--device",
                "cpu", "--out", str(tmp_path / "out")]) == 0
    assert Image.open(tmp_path / "out" / "cnet-1-0.png").size == size


@pytest.fixture(scope="module")
def fill(tmp_path_factory):
    base, _ = save_tiny_dit_models(tmp_path_factory.mktemp("fill"), seed=0, family="flux_fill")
    return base


def test_flux_fill_inpaints_from_the_cli_as_diffusers_does_and_takes_no_controlnet(fill, flux, tmp_path):
    """A FLUX.1 Fill base is its own family (six times the channels in); `cnet edit` makes no map for it, and
    the pixels equal FluxFillPipeline's (guidance 30, as its model card); a unit given to it is refused by name."""
    import diffusers

    from cnet.cli import main as cli

    assert base_family(str(fill)) is FAMILIES["flux_fill"]
    picture = Image.fromarray(np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8))
    mask = Image.fromarray(((np.arange(64)[None, :] > 32).repeat(64, 0) * 255).astype(np.uint8))
    picture.save(tmp_path / "pic.png")
    mask.save(tmp_path / "mask.png")
    assert cli(["edit", "--picture", str(tmp_path / "pic.png"), "--mask", str(tmp_path / "mask.png"),
                "--operation", "inpaint", "--base-model", str(fill), "--prompt", PROMPT, "--steps", "2", "--seed",
                "3", "--denoise", "1", "--mask-blur", "0", "--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    made = pixels(Image.open(tmp_path / "out" / "cnet-3-0.png"))
    pipe = diffusers.FluxFillPipeline.from_pretrained(fill)
    want = pipe(PROMPT, image=picture, mask_image=mask.convert("RGB"), height=64, width=64, num_inference_steps=2,
                guidance_scale=30.0, generator=[torch.Generator("cpu").manual_seed(3)], output_type="np").images[0]
    assert np.abs(made - (want * 255).round().astype(int)).max() <= TOLERANCE
    engine = Engine(str(fill), device="cpu")
    with pytest.raises(RequestError, match="FLUX.1 Fill base inpaints and outpaints by itself and takes no"):
        engine.generate(GenerationRequest(units=[ControlUnit(ring(), controlnet=str(flux[1]))], init_image=picture,
                                          mask=mask, **custom()))
    with pytest.raises(RequestError, match="FLUX.1 Fill has no img2img pipeline"):
        engine.generate(GenerationRequest(units=[], init_image=picture, operation="img2img", **custom()))


def test_flux_fill_outpaints_in_the_studio_without_a_unit(fill, tmp_path):
    from webui.service import Studio, UnitInput
    from webui.settings import AppSettings

    studio = Studio(AppSettings(output_dir=tmp_path / "outputs"))
    picture = Image.fromarray(np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8))
    from cnet.operations import EditOptions

    result, saved = studio.edit(picture, [UnitInput("photo", None, kind="canny")], operation="outpaint",
                                options=EditOptions(outpaint_right=32), base_model=str(fill), num_inference_steps=2,
                                seed=1)
    assert result.images[0].size == (96, 64) and result.metadata[0]["family"] == "flux_fill"
    assert result.metadata[0]["controlnets"] == [] and saved


def test_live_previews_come_from_the_tiny_autoencoder_and_are_skipped_without_it(dit, tmp_path, monkeypatch):
    """No latent-to-RGB factors are fitted to the 16-channel VAEs: the preview is TAEF1/TAESD3's decode when it can
    be had (here the tiny one), and without it the run goes on with no preview."""
    from cnet.tiny_dit import save_tiny_taef

    name, base, controlnet = dit
    request = GenerationRequest(units=[ControlUnit(ring(), controlnet=str(controlnet))], **{**custom(),
                                                                                           "num_inference_steps": 4})
    seen = []
    monkeypatch.delenv("CNET_TINY_VAE", raising=False)  # the family's Hub id: not on this offline machine
    plain = Engine(str(base), device="cpu").generate(request, preview=lambda image, step: seen.append(step))
    assert seen == []
    monkeypatch.setenv("CNET_TINY_VAE", str(save_tiny_taef(tmp_path / "taef")))
    shown = []
    made = Engine(str(base), device="cpu").generate(request, preview_every=2,
                                                    preview=lambda image, step: shown.append((image.size, step)))
    assert shown == [((64, 64), 2), ((64, 64), 4)]
    assert np.array_equal(pixels(made.images[0]), pixels(plain.images[0]))  # watching changes nothing


def test_few_step_mode_on_flux_adds_its_turbo_lora_with_its_steps_guidance_and_sampler(flux, tmp_path,
                                                                                      monkeypatch):
    """FLUX.1's few-step LoRA (alimama's Turbo-Alpha: 8 steps at guidance 3.5, flow Euler; here the tiny LoRA as
    CNET_FEW_STEP_LORA) is added like SD's LCM-LoRA; the form shows the family's values; SD3.5 has none."""
    from cnet.families import few_step_settings
    from cnet.tiny import save_tiny_lora
    from webui.service import Studio
    from webui.settings import AppSettings

    base, controlnet, _ = flux
    settings = few_step_settings(FAMILIES["flux"], {})
    assert (settings["num_inference_steps"], settings["guidance_scale"], settings["scheduler"]) == (8, 3.5,
                                                                                                    "flow_euler")
    assert settings["loras"][0].source == "alimama-creative/FLUX.1-Turbo-Alpha"
    with pytest.raises(ValueError, match="few-step mode has no LoRA for Stable Diffusion 3.5"):
        few_step_settings(FAMILIES["sd3"], {})
    studio = Studio(AppSettings(output_dir=tmp_path / "outputs"))
    assert studio.few_step_form(True, str(base)) == [8, 3.5, "flow_euler"]
    assert studio.few_step_form(False, str(base)) == [20, 3.5, "default"]
    monkeypatch.setenv("CNET_FEW_STEP_LORA", str(save_tiny_lora(base, tmp_path / "turbo")))
    from webui.service import UnitInput

    result, _ = studio.generate([UnitInput("map", ring(), controlnet=str(controlnet))], base_model=str(base),
                                few_step=True, prompt_mode="custom", prompt=PROMPT, seed=1, num_inference_steps=2)
    meta = result.metadata[0]
    assert meta["scheduler"] == "flow_euler" and meta["loras"][0]["model"].endswith("pytorch_lora_weights.safetensors")


@pytest.mark.parametrize("mode, sent", [("none", ""), ("default", "a professional, detailed, high-quality image"),
                                        ("auto", "a ring on black"), ("custom", PROMPT)])
def test_the_four_prompt_modes_send_their_text_to_a_dit(dit, mode, sent):
    """The paper's four prompt modes on FLUX.1 and SD3.5: the text sent is the mode's (auto: the caption given,
    as a re-run passes it, so BLIP does not run offline), and it reaches T5 and CLIP as a direct call's would."""
    name, base, controlnet = dit
    fields = {**custom(), "prompt_mode": mode}
    if mode == "auto":
        fields["caption"] = "a ring on black"
    result = Engine(str(base), device="cpu").generate(GenerationRequest(
        units=[ControlUnit(ring(), controlnet=str(controlnet))], **fields))
    assert result.metadata[0]["prompt_used"] == sent
    if mode == "custom":
        assert np.abs(pixels(result.images[0]) - direct(name, base, controlnet)).max() <= TOLERANCE
