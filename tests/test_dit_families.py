"""FLUX.1 and SD3.5, the DiT families: tiny models built from configs (cnet/tiny_dit.py) that diffusers' own
ControlNet pipelines load and run, recognised from their configs, and refused by name by the engine, the CLI and
the app until the studio generates with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnet.families import FAMILIES, base_family, family_of
from cnet.tiny_dit import build_t5_tokenizer, save_tiny_dit_models

PIPELINES = {"flux": "FluxControlNetPipeline", "sd3": "StableDiffusion3ControlNetPipeline"}


@pytest.fixture(scope="module", params=["flux", "sd3"])
def dit(request, tmp_path_factory):
    """(family name, base folder, ControlNet folder) of a tiny DiT model saved in diffusers layout."""
    base, controlnet = save_tiny_dit_models(tmp_path_factory.mktemp(request.param), seed=0, family=request.param)
    return request.param, base, controlnet


def _run(name, base, controlnet, control_image):
    import diffusers

    net_class = "FluxControlNetModel" if name == "flux" else "SD3ControlNetModel"
    net = getattr(diffusers, net_class).from_pretrained(controlnet)
    pipe = getattr(diffusers, PIPELINES[name]).from_pretrained(base, controlnet=net)
    out = pipe("a red circle", control_image=control_image, height=32, width=32, num_inference_steps=2,
               generator=torch.Generator("cpu").manual_seed(0), max_sequence_length=16, output_type="np")
    return out.images[0]


def test_diffusers_runs_the_tiny_models_and_the_controlnet_reads_its_map(dit):
    name, base, controlnet = dit
    ring = np.zeros((32, 32, 3), np.uint8)
    ring[8:24, 14:18] = 255
    black = _run(name, base, controlnet, Image.new("RGB", (32, 32)))
    lines = _run(name, base, controlnet, Image.fromarray(ring))
    assert black.shape == (32, 32, 3) and np.isfinite(black).all()
    assert np.abs(black - lines).max() * 255 > 2  # the map changes the picture: the ControlNet is not asleep


def test_the_family_is_read_from_the_configs(dit):
    import diffusers

    name, base, controlnet = dit
    assert base_family(str(base)) is FAMILIES[name]
    assert family_of(diffusers.ControlNetModel.load_config(controlnet)) is FAMILIES[name]  # any config reader
    assert FAMILIES[name].denoiser == "transformer" and FAMILIES[name].controls == frozenset()


def test_the_cli_and_the_app_refuse_generation_by_name(dit, tmp_path, capsys):
    from cnet.cli import main as cli
    from webui.service import Studio
    from webui.settings import AppSettings

    name, base, controlnet = dit
    Image.new("RGB", (64, 64)).save(tmp_path / "map.png")
    assert cli(["generate", "--base-model", str(base), "--controlnet", str(controlnet), "--image",
                str(tmp_path / "map.png"), "--out", str(tmp_path / "out")]) == 2
    label = FAMILIES[name].short_label
    assert f"is a {FAMILIES[name].label} model: the studio recognises it but cannot generate with {label} yet" \
        in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    line = Studio(AppSettings(output_dir=tmp_path / "outputs")).describe_base(str(base))
    assert f"**{FAMILIES[name].label}** (1024 px): recognised" in line


def test_the_t5_tokenizer_is_built_offline_and_reads_back(tmp_path):
    tokenizer = build_t5_tokenizer(tmp_path / "t5", words=["red", "circle"])
    ids = tokenizer("a red circle").input_ids
    assert ids[-1] == tokenizer.eos_token_id and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a red circle"
