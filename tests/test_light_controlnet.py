"""Light ControlNets (cnet/light_controlnet.py): the trained weights alone, rebuilt on their base where a ControlNet
is asked for; a transfer run's light file rebuilt on the ControlNet it started from; a foreign base refused by
name; the sizes and presets the README states."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from train.config import TrainConfig
from train.loop import train


def run_light(tiny_models, circles, out, **extra):
    return train(TrainConfig(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(out),
                             resolution=64, batch_size=4, max_steps=3, lr=1e-3, validate_every=0,
                             controlnet_lora_rank=4, **extra))


def alone(result, folder):
    """The light file, copied alone into `folder`."""
    from cnet.light_controlnet import LIGHT_FILE

    folder.mkdir()
    shutil.copy(result / LIGHT_FILE, folder / LIGHT_FILE)
    return folder


def test_a_transfer_runs_light_file_is_rebuilt_on_the_controlnet_it_started_from(tiny_models, circles, tmp_path):
    from diffusers import ControlNetModel

    from cnet.engine import Engine

    result = run_light(tiny_models, circles, tmp_path / "run", init_controlnet=str(tiny_models[1]))
    rebuilt = Engine(str(tiny_models[0]), device="cpu").load_controlnet(str(alone(result, tmp_path / "light")))
    saved = ControlNetModel.from_pretrained(result).state_dict()
    assert all(torch.equal(rebuilt.state_dict()[k], saved[k]) for k in saved)
    # Rebuilt on the base's own copy instead, it would differ: the source matters.
    copy = ControlNetModel.from_pretrained(tiny_models[1]).state_dict()
    assert any(not torch.equal(copy[k], saved[k]) for k in saved)


def test_a_light_file_on_a_base_of_another_shape_is_refused_by_name(tiny_models, circles, tmp_path):
    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest
    from cnet.tiny import save_tiny_models

    light = alone(run_light(tiny_models, circles, tmp_path / "run"), tmp_path / "light")
    xl_base, _ = save_tiny_models(tmp_path / "xl", family="sdxl")
    with pytest.raises(ValueError, match=r"is a light ControlNet made from another base .* this base is"):
        Engine(str(xl_base), device="cpu").generate(GenerationRequest(
            units=[ControlUnit(Image.new("RGB", (64, 64)), controlnet=str(light))], num_inference_steps=1))


def test_the_light_presets_train_a_lora_and_fill_only_what_is_not_given():
    from train.presets import apply_preset

    settings, name = apply_preset({"lr": 3e-4}, "light-12gb")
    assert name == "light-12gb" and settings["controlnet_lora_rank"] == 16 and settings["lr"] == 3e-4
    assert apply_preset({}, "light-24gb")[0]["controlnet_lora_rank"] == 64


@pytest.mark.slow
def test_the_readmes_light_controlnet_figures_are_the_counts_of_the_published_shapes():
    """bench/light_controlnet.py on the meta device: SD1.5's copy 361.3M weights, a rank-16 LoRA with its zero
    layers whole 14.0M (3.9%, a 56 MB light file), as the README's table says."""
    import re
    from pathlib import Path

    from bench.light_controlnet import light_counts, training_state_gb

    counts = light_counts("sd15", [16])
    assert round(counts["controlnet"] / 1e5) == 3613 and round(counts["rank 16"] / 1e5) == 140
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    row = re.search(r"^\| SD 1\.5 \| ([\d.]+)M \| ([\d.]+)M \(([\d.]+)%\) \| (\d+) MB \| ([\d.]+) GB \| ([\d.]+) GB",
                    readme, re.M)
    assert row, "the README's SD 1.5 row of the light ControlNet table"
    whole, trained = counts["controlnet"], counts["rank 16"]
    assert row.groups() == (f"{whole / 1e6:.1f}", f"{trained / 1e6:.1f}", f"{trained / whole * 100:.1f}",
                            f"{trained * 4 / 1e6:.0f}", f"{training_state_gb(counts, None):.1f}",
                            f"{training_state_gb(counts, trained):.1f}")
    assert np.isclose(counts["rank 16"] * 4 / 1e6, 56, atol=1)


def test_a_file_that_claims_to_be_light_but_names_no_controlnet_is_refused_by_name(tiny_models, tmp_path):
    from safetensors.torch import save_file

    from cnet.engine import Engine
    from cnet.light_controlnet import FORMAT

    fake = tmp_path / "fake.safetensors"
    save_file({"x": torch.zeros(1)}, str(fake), metadata={"format": FORMAT, "class": "AutoencoderKL", "rank": "4",
                                                           "config": "{}"})
    with pytest.raises(ValueError, match=r"fake.safetensors'?: its metadata does not describe a light ControlNet"):
        Engine(str(tiny_models[0]), device="cpu").load_controlnet(str(fake))
