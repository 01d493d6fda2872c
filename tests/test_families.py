"""Model families (cnet/families.py) on tiny models of each: recognised from the config, run through the family's
own diffusers pipeline with the same pixels as calling it directly (one ControlNet, two, and SDXL's
ControlNet-Union), and a ControlNet of another family refused naming both."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnet.cli import main as cli
from cnet.families import FAMILIES, family_of
from cnet.kinds import KINDS, SDXL_UNION
from cnet.request import DEFAULT_PROMPT
from cnet.result import read_metadata
from cnet.tiny import save_tiny_models


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-sdxl")
    base, controlnet = save_tiny_models(out, seed=0, family="sdxl")
    return base, controlnet, out / "controlnet-union"


@pytest.fixture(scope="module")
def sd2(tmp_path_factory):
    return save_tiny_models(tmp_path_factory.mktemp("tiny-sd2"), seed=0, family="sd2")


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maps")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        edges = np.zeros((64, 64, 3), np.uint8)
        edges[rng.integers(0, 64, 200), rng.integers(0, 64, 200)] = 255
        Image.fromarray(edges).save(folder / f"map{i}.png")
        paths.append(folder / f"map{i}.png")
    return paths


def run_cli(tmp_path, base, units, *extra):
    """`python -m cnet generate` with (map, kind, controlnet, strength) units; returns the saved image's pixels."""
    args = ["generate", "--base-model", str(base), "--steps", "3", "--seed", "3", "--out", str(tmp_path / "out")]
    for path, kind, controlnet, strength in units:
        args += ["--image", str(path), "--kind", kind, "--controlnet", str(controlnet), "--strength", str(strength)]
    assert cli(args + list(extra)) == 0
    saved = tmp_path / "out" / "cnet-3-0.png"
    return np.asarray(Image.open(saved)), read_metadata(saved)


def direct(pipeline_class, base, controlnet, **kwargs):
    import diffusers
    from diffusers import DDIMScheduler

    extra = {} if "XL" in pipeline_class else {"safety_checker": None, "requires_safety_checker": False}
    pipe = getattr(diffusers, pipeline_class).from_pretrained(str(base), controlnet=controlnet, **extra)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    image = pipe(DEFAULT_PROMPT, num_inference_steps=3, guidance_scale=9.0, negative_prompt="",
                 generator=[torch.Generator().manual_seed(3)], **kwargs).images[0]
    return np.asarray(image)


def test_families_are_read_from_the_config(sdxl, sd2, tiny_models):
    from diffusers import ControlNetModel, UNet2DConditionModel

    for base, name in ((tiny_models[0], "sd15"), (sd2[0], "sd2"), (sdxl[0], "sdxl")):
        assert family_of(UNet2DConditionModel.load_config(base, subfolder="unet")) is FAMILIES[name]
    assert family_of(ControlNetModel.load_config(sdxl[2])).name == "sdxl"  # the Union model too
    with pytest.raises(ValueError, match="unknown architecture"):
        family_of({"addition_embed_type": "image", "in_channels": 4})


def test_sdxl_with_one_and_two_controlnets_equals_diffusers(sdxl, maps, tmp_path):
    from diffusers import ControlNetModel

    base, controlnet, _ = sdxl
    ours, meta = run_cli(tmp_path, base, [(maps[0], "canny", controlnet, 0.8)])
    assert meta["family"] == "sdxl"
    theirs = direct("StableDiffusionXLControlNetPipeline", base, ControlNetModel.from_pretrained(controlnet),
                    image=Image.open(maps[0]).convert("RGB"), controlnet_conditioning_scale=0.8)
    assert np.array_equal(ours, theirs)
    ours, _ = run_cli(tmp_path / "two", base,
                      [(maps[0], "canny", controlnet, 1.0), (maps[1], "depth", controlnet, 0.5)])
    net = ControlNetModel.from_pretrained(controlnet)
    theirs = direct("StableDiffusionXLControlNetPipeline", base, [net, net],
                    image=[Image.open(p).convert("RGB") for p in maps], controlnet_conditioning_scale=[1.0, 0.5])
    assert np.array_equal(ours, theirs)


def test_sdxl_union_takes_each_kind_with_its_control_type_like_diffusers(sdxl, maps, tmp_path):
    from diffusers import ControlNetUnionModel

    base, _, union = sdxl
    units = [(maps[0], "canny", union, 1.0), (maps[1], "openpose", union, 0.6)]
    ours, meta = run_cli(tmp_path, base, units)
    theirs = direct("StableDiffusionXLControlNetUnionPipeline", base, ControlNetUnionModel.from_pretrained(union),
                    control_image=[Image.open(p).convert("RGB") for p in maps], control_mode=[3, 0],
                    controlnet_conditioning_scale=[1.0, 0.6])
    assert np.array_equal(ours, theirs)
    assert [c["kind"] for c in meta["controlnets"]] == ["canny", "openpose"]
    # The control type matters: the same maps read as depth and normal make another picture.
    other, _ = run_cli(tmp_path / "other", base, [(maps[0], "depth", union, 1.0), (maps[1], "normal", union, 0.6)])
    assert not np.array_equal(ours, other)


def test_sd2_runs_its_v_prediction_model_like_diffusers(sd2, maps, tmp_path):
    from diffusers import ControlNetModel

    base, controlnet = sd2
    ours, meta = run_cli(tmp_path, base, [(maps[0], "canny", controlnet, 1.0)])
    theirs = direct("StableDiffusionControlNetPipeline", base, ControlNetModel.from_pretrained(controlnet),
                    image=Image.open(maps[0]).convert("RGB"))
    assert np.array_equal(ours, theirs) and meta["family"] == "sd2"


@pytest.mark.parametrize("pairing", ["sd15 controlnet on sdxl", "sdxl controlnet on sd15", "sd2 on sd15"])
def test_a_controlnet_of_another_family_is_refused_naming_both(sdxl, sd2, tiny_models, maps, tmp_path, capsys,
                                                                pairing):
    base, controlnet, label = {
        "sd15 controlnet on sdxl": (sdxl[0], tiny_models[1], "Stable Diffusion 1.x ControlNet"),
        "sdxl controlnet on sd15": (tiny_models[0], sdxl[1], "Stable Diffusion XL ControlNet"),
        "sd2 on sd15": (tiny_models[0], sd2[1], "Stable Diffusion 2.x ControlNet"),
    }[pairing]
    assert cli(["generate", "--base-model", str(base), "--image", str(maps[0]), "--controlnet", str(controlnet),
                "--steps", "1", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert label in error and f"base model '{base}'" in error and f"controlnet='{controlnet}'" in error
    assert not list(tmp_path.glob("*.png"))  # refused before anything ran


def test_each_kind_names_its_sdxl_controlnet_or_says_there_is_none(monkeypatch):
    monkeypatch.delenv("CNET_CONTROLNET_CANNY", raising=False)
    monkeypatch.delenv("CNET_CONTROLNET_INPAINT", raising=False)
    assert KINDS["canny"].controlnet_source("sdxl") == SDXL_UNION
    assert KINDS["canny"].controlnet_source("sd15") == "lllyasviel/control_v11p_sd15_canny"
    with pytest.raises(ValueError, match="kind='inpaint' has no published SDXL ControlNet"):
        KINDS["inpaint"].controlnet_source("sdxl")
    monkeypatch.setenv("CNET_CONTROLNET_INPAINT", "/models/my-sdxl-inpaint")
    assert KINDS["inpaint"].controlnet_source("sdxl") == "/models/my-sdxl-inpaint"


def test_the_generate_api_picks_an_sdxl_base_and_controlnet_and_a_lora(app_url, sdxl, maps, tmp_path):
    from gradio_client import Client, handle_file

    from cnet.tiny import save_tiny_lora

    lora = save_tiny_lora(sdxl[0], tmp_path / "lora")
    client = Client(app_url, verbose=False)
    runs = {}
    for loras in ("", f"{lora}:0.9"):
        images, _, metadata = client.predict(handle_file(str(maps[0])), base_model=str(sdxl[0]),
                                             controlnet=str(sdxl[1]), loras=loras, steps=2, seed=5,
                                             api_name="/generate")
        runs[loras] = np.asarray(Image.open(images[0]["image"]))
        assert metadata[0]["family"] == "sdxl" and metadata[0]["base_model"]["model"] == str(sdxl[0])
    assert metadata[0]["loras"] == [{"model": str(lora), "revision": metadata[0]["loras"][0]["revision"],
                                     "weight": 0.9}]
    assert not np.array_equal(runs[""], runs[f"{lora}:0.9"])


def test_the_studio_names_a_base_models_family_without_loading_it(app_url, sdxl, sd2):
    from webui.service import Studio
    from webui.settings import AppSettings

    studio = Studio(AppSettings())
    assert "Stable Diffusion XL" in studio.describe_base(str(sdxl[0])) and "1024 px" in studio.describe_base(
        str(sdxl[0]))
    assert "Stable Diffusion 2.x** (768 px" in studio.describe_base(str(sd2[0]))  # a v-prediction model
    assert "not on this machine" in studio.describe_base("nobody/no-such-model")
    assert studio._engine is None  # nothing was loaded


def test_sdxl_in_half_precision_takes_the_fp16_safe_vae_or_says_why_not(sdxl, tmp_path, monkeypatch, caplog):
    import shutil

    from cnet.engine import Engine
    from cnet.families import FAMILIES

    assert FAMILIES["sdxl"].half_precision_vae == "madebyollin/sdxl-vae-fp16-fix"
    shutil.copytree(sdxl[0] / "vae", tmp_path / "fixed-vae")
    monkeypatch.setenv("CNET_HALF_VAE", str(tmp_path / "fixed-vae"))
    vae = Engine(str(sdxl[0]), device="cpu", dtype="float16").load_base()["vae"]  # loaded, not run (CPU)
    assert vae.config._name_or_path == str(tmp_path / "fixed-vae") and vae.dtype == torch.float16
    assert Engine(str(sdxl[0]), device="cpu").load_base()["vae"].config._name_or_path != str(tmp_path / "fixed-vae")
    monkeypatch.setenv("CNET_HALF_VAE", "nobody/no-such-vae")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level("WARNING", logger="cnet.engine"):
        vae = Engine(str(sdxl[0]), device="cpu", dtype="float16").load_base()["vae"]
    assert "using the base model's own VAE" in caplog.text and "nobody/no-such-vae" in caplog.text


def test_sdxl_keeps_the_fast_path_offload_and_shared_base(sdxl, maps, tmp_path):
    from diffusers import ControlNetModel

    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest

    base, controlnet, union = sdxl
    image = Image.open(maps[0]).convert("RGB")

    def request(net, **kw):
        return GenerationRequest(units=[ControlUnit(image, controlnet=str(net), end=0.5)], num_inference_steps=4,
                                 seed=3, **kw)

    plain = Engine(str(base), device="cpu")
    ours = plain.generate(request(controlnet))
    # Control end 0.5: the ControlNet is skipped for half the steps (cnet/fastpath.py), with diffusers' pixels.
    from diffusers import DDIMScheduler, StableDiffusionXLControlNetPipeline

    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(str(base),
                                                               controlnet=ControlNetModel.from_pretrained(controlnet))
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    theirs = pipe(DEFAULT_PROMPT, image=image, num_inference_steps=4, guidance_scale=9.0, negative_prompt="",
                  control_guidance_end=0.5, generator=[torch.Generator().manual_seed(3)]).images[0]
    assert np.array_equal(np.asarray(ours.images[0]), np.asarray(theirs))
    # Model offload (diffusers' hooks over both text encoders) changes no pixel.
    offloaded = Engine(str(base), device="cpu", offload="model").generate(request(controlnet))
    assert np.array_equal(np.asarray(offloaded.images[0]), np.asarray(ours.images[0]))
    # Switching to the Union model and back keeps the one loaded base.
    unet = plain.load_base()["unet"]
    plain.generate(request(union))
    assert plain.load_base()["unet"] is unet
    assert np.array_equal(np.asarray(plain.generate(request(controlnet)).images[0]), np.asarray(ours.images[0]))


def test_the_edit_api_redraws_on_an_sdxl_base(app_url, sdxl, maps, tmp_path):
    from gradio_client import Client, handle_file

    picture = Image.fromarray((np.random.default_rng(3).random((64, 64, 3)) * 255).astype(np.uint8))
    picture.save(tmp_path / "picture.png")
    images, _, metadata = Client(app_url, verbose=False).predict(
        handle_file(str(tmp_path / "picture.png")), operation="img2img", kind="canny", base_model=str(sdxl[0]),
        controlnet=str(sdxl[1]), denoise=0.5, steps=2, seed=2, api_name="/edit")
    assert metadata[0]["family"] == "sdxl" and metadata[0]["mode"] == "img2img"
    assert Image.open(images[0]["image"]).size == (64, 64)


def test_a_family_refuses_the_settings_it_does_not_use_by_name():
    """What applies is the family's (a DiT family will have no guess mode or control modes): set, it is refused."""
    import dataclasses

    from cnet.request import ControlUnit, GenerationRequest, RequestError

    request = GenerationRequest(units=[ControlUnit(Image.new("RGB", (64, 64)), control_mode="prompt")], eta=0.3)
    FAMILIES["sd15"].check_controls(request)  # every U-Net family takes all three
    without = dataclasses.replace(FAMILIES["sd15"], controls=frozenset({"eta"}))
    with pytest.raises(RequestError, match="control_mode does not apply to Stable Diffusion 1.x models"):
        without.check_controls(request)
    without.check_controls(GenerationRequest(units=[ControlUnit(Image.new("RGB", (64, 64)))], eta=0.3))


def test_a_kind_without_a_published_controlnet_for_the_family_is_named(monkeypatch):
    monkeypatch.delenv("CNET_CONTROLNET_CANNY", raising=False)  # an earlier test's app may have pointed it elsewhere
    with pytest.raises(ValueError, match="kind='canny' has no published SD 2.x ControlNet"):
        KINDS["canny"].controlnet_source("sd2")
    assert set(KINDS["tile"].controlnets) == {"sd15", "sdxl", "flux", "sd3"}
    assert set(KINDS["scribble"].controlnets) == {"sd15", "sdxl"}  # no published FLUX.1 or SD3.5 scribble model


def test_the_space_front_matter_lists_every_model_a_family_or_kind_names():
    """A Hugging Face Space links the models it uses from the README's front matter: every kind's published
    ControlNet per family, and each family's fp16 VAE, few-step LoRA and tiny autoencoder."""
    from pathlib import Path

    from cnet.families import FAMILIES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    front = readme.split("---")[1]
    listed = {line.strip()[2:] for line in front.splitlines() if line.strip().startswith("- ")}
    named = {net for kind in KINDS.values() for net in kind.controlnets.values()}
    named |= {model for family in FAMILIES.values()
              for model in (family.half_precision_vae, family.few_step_lora, family.tiny_vae) if model}
    assert named <= listed, sorted(named - listed)
