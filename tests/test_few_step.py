"""Few-step mode (opt-in, it changes the image): the family's LCM-LoRA, the LCM sampler, 4 steps, guidance 1; the
same pixels as diffusers' own LCM-LoRA recipe, on the tiny model with a tiny LoRA standing in for the real one."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnet.families import FAMILIES, few_step_settings
from cnet.request import DEFAULT_PROMPT, LoraRef, RequestError
from cnet.result import read_metadata
from cnet.tiny import save_tiny_lora


def test_the_settings_add_the_familys_lora_and_keep_what_was_chosen(monkeypatch):
    monkeypatch.delenv("CNET_FEW_STEP_LORA", raising=False)
    made = few_step_settings(FAMILIES["sd15"], {"loras": [LoraRef("me/style", 0.5)]})
    assert made == {"loras": [LoraRef("me/style", 0.5), LoraRef("latent-consistency/lcm-lora-sdv1-5", 1.0)],
                    "scheduler": "lcm", "num_inference_steps": 4, "guidance_scale": 1.0}
    kept = few_step_settings(FAMILIES["sdxl"], {"num_inference_steps": 6, "guidance_scale": 1.5, "scheduler": "tcd"})
    assert (kept["num_inference_steps"], kept["guidance_scale"], kept["scheduler"]) == (6, 1.5, "tcd")
    assert kept["loras"] == [LoraRef("latent-consistency/lcm-lora-sdxl", 1.0)]
    with pytest.raises(ValueError, match="few-step mode has no LoRA for Stable Diffusion 2.x"):
        few_step_settings(FAMILIES["sd2"], {})


def test_the_cli_few_step_mode_equals_diffusers_lcm_lora_recipe(tiny_models, cond_map, tmp_path, monkeypatch):
    from diffusers import ControlNetModel, LCMScheduler, StableDiffusionControlNetPipeline

    from cnet.cli import main

    lora = save_tiny_lora(tiny_models[0], tmp_path / "lcm")
    monkeypatch.setenv("CNET_FEW_STEP_LORA", str(lora))
    cond_map.save(tmp_path / "map.png")
    assert main(["generate", "--image", str(tmp_path / "map.png"), "--base-model", str(tiny_models[0]),
                 "--controlnet", str(tiny_models[1]), "--few-step", "--seed", "3", "--out", str(tmp_path / "out")]) == 0
    saved = tmp_path / "out" / "cnet-3-0.png"
    meta = read_metadata(saved)
    assert (meta["scheduler"], meta["num_inference_steps"], meta["guidance_scale"]) == ("lcm", 4, 1.0)
    assert meta["loras"][0]["model"] == str(lora)
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        tiny_models[0], controlnet=ControlNetModel.from_pretrained(tiny_models[1]), safety_checker=None,
        requires_safety_checker=False)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="lcm")
    pipe.set_adapters(["lcm"], adapter_weights=[1.0])
    theirs = pipe(DEFAULT_PROMPT, image=cond_map, num_inference_steps=4, guidance_scale=1.0, negative_prompt="",
                  generator=[torch.Generator().manual_seed(3)]).images[0]
    assert np.array_equal(np.asarray(Image.open(saved)), np.asarray(theirs))


def test_the_studio_says_the_demo_model_has_no_few_step_lora(monkeypatch, tmp_path):
    from webui.service import Studio, UnitInput
    from webui.settings import AppSettings

    studio = Studio(AppSettings(output_dir=tmp_path))
    monkeypatch.setattr(Studio, "demo_mode", property(lambda self: True))
    with pytest.raises(RequestError, match="the offline demo model has no few-step LoRA"):
        studio.generate([UnitInput("map", Image.new("RGB", (64, 64)))], few_step=True)
