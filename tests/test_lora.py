"""LoRAs on the base (diffusers' load_lora_weights, through peft): the same pixels as diffusers' own path, the
original pixels once unloaded, recorded in the PNG for a re-run, and a bad file refused by name."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnet.engine import Engine
from cnet.request import DEFAULT_PROMPT, ControlUnit, GenerationRequest, LoraRef, RequestError, parse_lora
from cnet.result import read_metadata, request_from_metadata
from cnet.tiny import save_tiny_lora


@pytest.fixture(scope="module")
def lora(tiny_models, tmp_path_factory):
    return save_tiny_lora(tiny_models[0], tmp_path_factory.mktemp("lora"))


@pytest.fixture(scope="module")
def engine(tiny_models):
    return Engine(str(tiny_models[0]), device="cpu")


def run(engine, tiny_models, cond_map, loras=()):
    return engine.generate(GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]))],
                                             num_inference_steps=3, seed=2, loras=list(loras)))


def pixels(result):
    return np.asarray(result.images[0], dtype=np.int16)


def test_a_lora_gives_diffusers_own_pixels_and_unloads_to_the_original(engine, tiny_models, cond_map, lora):
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline

    before = pixels(run(engine, tiny_models, cond_map))
    styled = run(engine, tiny_models, cond_map, [LoraRef(str(lora.parent), 0.7)])
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        tiny_models[0], controlnet=ControlNetModel.from_pretrained(tiny_models[1]), safety_checker=None,
        requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.load_lora_weights(str(lora.parent), adapter_name="style")
    pipe.set_adapters(["style"], adapter_weights=[0.7])
    theirs = pipe(DEFAULT_PROMPT, image=cond_map, num_inference_steps=3, guidance_scale=9.0, negative_prompt="",
                  generator=[torch.Generator().manual_seed(2)]).images[0]
    assert np.array_equal(pixels(styled), np.asarray(theirs, dtype=np.int16))
    assert not np.array_equal(pixels(styled), before)  # the LoRA does change the picture
    # Another weight of the same file (no reload), then the file itself, then none: the original pixels again.
    stronger = run(engine, tiny_models, cond_map, [LoraRef(str(lora), 1.0)])
    assert not np.array_equal(pixels(stronger), pixels(styled))
    assert np.array_equal(pixels(run(engine, tiny_models, cond_map)), before)
    assert styled.metadata[0]["loras"][0]["model"] == str(lora.parent)
    assert styled.metadata[0]["loras"][0]["weight"] == 0.7


def test_a_saved_png_reruns_with_its_loras(engine, tiny_models, cond_map, lora, tmp_path):
    first = run(engine, tiny_models, cond_map, [LoraRef(str(lora), 0.5)])
    saved = first.save(tmp_path)[0]
    run(engine, tiny_models, cond_map)  # unloaded in between
    request = request_from_metadata(read_metadata(saved), tmp_path).request
    assert request.loras == [LoraRef(str(lora), 0.5)]
    assert np.array_equal(pixels(engine.generate(request)), pixels(first))


def test_a_file_that_is_not_a_lora_is_refused_and_the_next_run_is_clean(engine, tiny_models, cond_map, tmp_path):
    from safetensors.torch import save_file

    save_file({"some.weight": torch.ones(3, 3)}, str(tmp_path / "not-a-lora.safetensors"))
    with pytest.raises(RequestError, match="not-a-lora.safetensors' is not a LoRA"):
        run(engine, tiny_models, cond_map, [LoraRef(str(tmp_path / "not-a-lora.safetensors"))])
    again = run(engine, tiny_models, cond_map)
    fresh = run(Engine(str(tiny_models[0]), device="cpu"), tiny_models, cond_map)
    assert np.array_equal(pixels(again), pixels(fresh))


@pytest.mark.parametrize("text, expected", [
    ("styles/ink.safetensors:0.8", LoraRef("styles/ink.safetensors", 0.8)),
    ("owner/ink-lora", LoraRef("owner/ink-lora", 1.0)),
    (r"C:\loras\ink.safetensors", LoraRef(r"C:\loras\ink.safetensors", 1.0)),
    ("owner/ink@v2:-0.5", LoraRef("owner/ink@v2", -0.5)),
])
def test_lora_text_is_source_and_weight(text, expected):
    assert parse_lora(text) == expected


@pytest.mark.parametrize("loras, message", [
    ([LoraRef("", 1.0)], r"loras\[0\]=.* must name a LoRA"),
    ([LoraRef("a/b", 9.0)], r"loras\[0\].weight=9.0 is out of range"),
    (["a/b"], r"loras\[0\]='a/b' must name a LoRA"),
])
def test_bad_loras_are_named(cond_map, loras, message):
    with pytest.raises(RequestError, match=message):
        GenerationRequest(units=[ControlUnit(cond_map)], loras=loras).validated()


def test_the_cli_applies_a_lora_file_at_a_weight(tiny_models, cond_map, lora, tmp_path):
    from cnet.cli import main

    cond_map.save(tmp_path / "map.png")
    common = ["generate", "--image", str(tmp_path / "map.png"), "--base-model", str(tiny_models[0]), "--controlnet",
              str(tiny_models[1]), "--steps", "2", "--seed", "1"]
    assert main(common + ["--lora", f"{lora}:0.8", "--out", str(tmp_path / "a")]) == 0
    assert main(common + ["--out", str(tmp_path / "b")]) == 0
    styled, plain = (Image.open(tmp_path / d / "cnet-1-0.png") for d in ("a", "b"))
    assert read_metadata(tmp_path / "a" / "cnet-1-0.png")["loras"][0]["weight"] == 0.8
    assert not np.array_equal(np.asarray(styled), np.asarray(plain))


def test_a_kohya_format_file_gives_the_same_pixels_as_the_diffusers_one(engine, tiny_models, cond_map, lora,
                                                                         tmp_path):
    # kohya's sd-scripts (A1111's usual LoRA files) name the same layers lora_unet_<path with underscores>, with
    # lora_down/lora_up and an alpha (here the rank: scale 1); diffusers converts them on load.
    from safetensors.torch import load_file, save_file

    kohya = {}
    for key, tensor in load_file(str(lora)).items():
        module, _, kind = key.removeprefix("unet.").partition(".lora.")
        name = "lora_unet_" + module.replace(".", "_")
        kohya[f"{name}.lora_{kind}"] = tensor
        kohya[f"{name}.alpha"] = torch.tensor(4.0)
    save_file(kohya, str(tmp_path / "ink_kohya.safetensors"))
    ours = run(engine, tiny_models, cond_map, [LoraRef(str(lora), 0.7)])
    theirs = run(engine, tiny_models, cond_map, [LoraRef(str(tmp_path / "ink_kohya.safetensors"), 0.7)])
    assert np.array_equal(pixels(ours), pixels(theirs))  # the same weights, the same layers
    assert not np.array_equal(pixels(theirs), pixels(run(engine, tiny_models, cond_map)))
