"""The opt-in fast decode: the family's tiny autoencoder (TAESD, diffusers' AutoencoderTiny) decodes the final
latents; the same pixels as diffusers with that VAE, recorded for a re-run, and a clear message when it is missing."""

import numpy as np
import pytest
import torch

from cnet.engine import Engine
from cnet.request import DEFAULT_PROMPT, ControlUnit, GenerationRequest, RequestError
from cnet.result import read_metadata, request_from_metadata
from cnet.tiny import save_tiny_taesd
from common.models import ModelUnavailableError


@pytest.fixture(scope="module")
def taesd(tmp_path_factory):
    return save_tiny_taesd(tmp_path_factory.mktemp("taesd"))


def _request(tiny_models, cond_map, fast_decode=True):
    return GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]))], seed=5,
                             num_inference_steps=3, fast_decode=fast_decode)


def test_fast_decode_equals_diffusers_with_the_tiny_autoencoder(tiny_models, cond_map, taesd, monkeypatch, tmp_path):
    from diffusers import AutoencoderTiny, ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline

    monkeypatch.setenv("CNET_TINY_VAE", str(taesd))
    engine = Engine(str(tiny_models[0]), device="cpu")
    fast = engine.generate(_request(tiny_models, cond_map))
    full = engine.generate(_request(tiny_models, cond_map, fast_decode=False))
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        tiny_models[0], controlnet=ControlNetModel.from_pretrained(tiny_models[1]), safety_checker=None,
        requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.vae = AutoencoderTiny.from_pretrained(taesd)
    theirs = pipe(DEFAULT_PROMPT, image=cond_map, num_inference_steps=3, guidance_scale=9.0, negative_prompt="",
                  generator=[torch.Generator().manual_seed(5)]).images[0]
    assert np.array_equal(np.asarray(fast.images[0]), np.asarray(theirs))
    assert not np.array_equal(np.asarray(fast.images[0]), np.asarray(full.images[0]))  # another decoder
    # The shared base keeps its own VAE for the next plain run, and the choice is recorded for a re-run.
    again = engine.generate(_request(tiny_models, cond_map, fast_decode=False))
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(full.images[0]))
    assert fast.metadata[0]["fast_decode"] is True
    saved = fast.save(tmp_path)[0]
    rerun = request_from_metadata(read_metadata(saved), tmp_path)
    assert rerun.request.fast_decode is True
    assert np.array_equal(np.asarray(engine.generate(rerun.request).images[0]), np.asarray(fast.images[0]))


def test_a_missing_tiny_autoencoder_is_named_with_how_to_get_it(tiny_models, cond_map, monkeypatch):
    monkeypatch.delenv("CNET_TINY_VAE", raising=False)
    engine = Engine(str(tiny_models[0]), device="cpu")
    with pytest.raises(ModelUnavailableError, match="madebyollin/taesd.*CNET_TINY_VAE|CNET_TINY_VAE.*taesd"):
        engine.generate(_request(tiny_models, cond_map))
    # The engine keeps serving plain runs.
    assert engine.generate(_request(tiny_models, cond_map, fast_decode=False)).images


def test_fast_decode_must_be_a_boolean(tiny_models, cond_map):
    with pytest.raises(RequestError, match="fast_decode='yes' must be true or false"):
        GenerationRequest(units=[ControlUnit(cond_map)], fast_decode="yes").validated()


def test_the_cli_takes_fast_decode(tiny_models, cond_map, taesd, monkeypatch, tmp_path, capsys):
    from cnet.cli import main

    monkeypatch.setenv("CNET_TINY_VAE", str(taesd))
    cond_map.save(tmp_path / "map.png")
    assert main(["generate", "--image", str(tmp_path / "map.png"), "--base-model", str(tiny_models[0]),
                 "--controlnet", str(tiny_models[1]), "--steps", "2", "--seed", "1", "--fast-decode",
                 "--out", str(tmp_path / "out")]) == 0
    image = capsys.readouterr().out.splitlines()[0]  # the image first, then its condition map
    assert read_metadata(image)["fast_decode"] is True
