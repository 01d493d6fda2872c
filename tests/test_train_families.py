"""Training on SDXL and SD 2.x tiny models: the same trainer, its SDXL conditioning (two text encoders, pooled text,
size/crop ids), exact resume, validation through the family's pipeline, and a result the studio can use."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnet.tiny import save_tiny_models
from train.config import TrainConfig
from train.loop import train


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return save_tiny_models(tmp_path_factory.mktemp("tiny-sdxl"), family="sdxl")


def config(base, circles, out, **kw):
    settings = dict(base_model=str(base), dataset=str(circles), output_dir=str(out), resolution=64, batch_size=3,
                    max_steps=4, lr=1e-3, checkpoint_every=100, validate_every=0, log_every=1, seed=3)
    return TrainConfig(**{**settings, **kw})


def weights(path):
    from diffusers import ControlNetModel

    return ControlNetModel.from_pretrained(path).state_dict()


@pytest.mark.parametrize("precompute", [False, True])
def test_sdxl_stop_and_resume_equals_an_uninterrupted_run(sdxl, circles, tmp_path, precompute):
    whole = train(config(sdxl[0], circles, tmp_path / "whole", precompute=precompute))
    parts = config(sdxl[0], circles, tmp_path / "parts", precompute=precompute)
    assert train(TrainConfig(**{**parts.to_dict(), "stop_after": 2})) is None
    resumed = train(TrainConfig(**{**parts.to_dict(), "resume": "latest"}))
    a, b = weights(whole), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["controlnet_mid_block.weight"].abs().sum() > 0  # it did learn: the zero convolution moved


def test_the_sdxl_unet_gets_its_pooled_text_and_size_ids(sdxl, circles, tmp_path):
    seen = []

    def callback(event, info):
        if event == "setup":
            info["unet"].register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("added_cond_kwargs")),
                                                   with_kwargs=True)

    train(config(sdxl[0], circles, tmp_path, max_steps=1), callback=callback)
    added = seen[0]
    assert added["text_embeds"].shape == (3, 32)  # the second encoder's pooled projection, per sample
    assert added["time_ids"].tolist() == [[64, 64, 0, 0, 64, 64]] * 3


def test_a_trained_sdxl_controlnet_validates_and_generates_in_the_studio(sdxl, circles, tmp_path):
    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest

    result = train(config(sdxl[0], circles, tmp_path, max_steps=2, validate_every=2, num_validation=1,
                          validation_steps=2))
    assert (tmp_path / "validation" / "step-00000002.png").is_file()
    card = (result / "README.md").read_text()
    assert "Stable Diffusion XL" in card and "StableDiffusionXLControlNetPipeline.from_pretrained" in card
    engine = Engine(str(sdxl[0]), device="cpu")
    made = engine.generate(GenerationRequest(units=[ControlUnit(Image.new("RGB", (64, 64)), controlnet=str(result))],
                                             num_inference_steps=2, seed=0))
    assert made.metadata[0]["family"] == "sdxl" and np.asarray(made.images[0]).shape == (64, 64, 3)


def test_sd2_trains_on_velocity_and_sd15_on_noise(tiny_models, circles, tmp_path, monkeypatch):
    from diffusers import DDPMScheduler

    calls = []
    original = DDPMScheduler.get_velocity
    monkeypatch.setattr(DDPMScheduler, "get_velocity",
                        lambda self, *args, **kwargs: calls.append(1) or original(self, *args, **kwargs))
    base, _ = save_tiny_models(tmp_path / "tiny-sd2", family="sd2")
    assert train(config(base, circles, tmp_path / "sd2", max_steps=2)) is not None
    assert len(calls) == 2  # the v-prediction target, once a step
    train(config(tiny_models[0], circles, tmp_path / "sd15", max_steps=2))
    assert len(calls) == 2  # an epsilon model's target is the noise itself


def test_a_single_file_base_is_read_through_its_config_folder_or_refused_by_name(sdxl, tiny_models, tmp_path):
    from safetensors.torch import save_file

    from cnet.families import base_family
    from train.base import load_base

    # A file that is no Stable Diffusion checkpoint: the message names the file, the family its config folder
    # gave, and the flag that describes it (an original-format checkpoint cannot be made offline for the tiny
    # models; diffusers' from_single_file reads real ones).
    save_file({"some.weight": torch.ones(2)}, str(tmp_path / "base.safetensors"))
    assert base_family(str(tmp_path / "base.safetensors"), str(sdxl[0])).name == "sdxl"
    with pytest.raises(ValueError, match=r"base\.safetensors'.*could not be read as a Stable Diffusion XL "
                                         r"checkpoint.*--single-file-config"):
        load_base(str(tmp_path / "base.safetensors"), torch.float32, str(sdxl[0]))
    assert base_family(str(tmp_path / "base.safetensors")).name == "sd15"  # no config: SD 1.x, as diffusers
