"""Textual-inversion embeddings (diffusers' load_textual_inversion): a file's trigger word is its name, as in A1111;
the token reaches the text encoder(s) as one new id, the pixels equal diffusers' own path, unloading restores them,
and SDXL files load into both encoders."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnet.engine import Engine
from cnet.request import ControlUnit, GenerationRequest, RequestError
from cnet.result import read_metadata, request_from_metadata
from cnet.tiny import save_tiny_models

PROMPT = "a shinystyle circle"


@pytest.fixture(scope="module")
def embedding(tmp_path_factory):
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("embeddings")
    torch.manual_seed(0)
    save_file({"emb_params": torch.randn(1, 32) * 2}, str(folder / "shinystyle.safetensors"))  # A1111/kohya layout
    torch.manual_seed(1)
    save_file({"clip_l": torch.randn(1, 32) * 2, "clip_g": torch.randn(1, 32) * 2},
              str(folder / "xlstyle.safetensors"))
    return folder


def run(engine, controlnet, embeddings=(), prompt=PROMPT):
    return engine.generate(GenerationRequest(
        units=[ControlUnit(Image.new("RGB", (64, 64), "white"), controlnet=str(controlnet))], prompt_mode="custom",
        prompt=prompt, num_inference_steps=2, seed=6, embeddings=list(embeddings)))


def pixels(result):
    return np.asarray(result.images[0], dtype=np.int16)


def test_an_embedding_is_its_files_name_and_unloads_cleanly(tiny_models, embedding, tmp_path):
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline

    engine = Engine(str(tiny_models[0]), device="cpu")
    before = pixels(run(engine, tiny_models[1]))
    tokenizer = engine.load_base()["tokenizer"]
    plain_ids = len(tokenizer(PROMPT).input_ids)
    styled = run(engine, tiny_models[1], [str(embedding / "shinystyle.safetensors")])
    assert len(tokenizer(PROMPT).input_ids) < plain_ids  # "shinystyle" is now one token, not ten letters
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        tiny_models[0], controlnet=ControlNetModel.from_pretrained(tiny_models[1]), safety_checker=None,
        requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.load_textual_inversion(str(embedding / "shinystyle.safetensors"), token="shinystyle")
    theirs = pipe(PROMPT, image=Image.new("RGB", (64, 64), "white"), num_inference_steps=2, guidance_scale=9.0,
                  negative_prompt="", generator=[torch.Generator().manual_seed(6)]).images[0]
    assert np.array_equal(pixels(styled), np.asarray(theirs, dtype=np.int16))
    assert not np.array_equal(pixels(styled), before)
    saved = styled.save(tmp_path)[0]
    assert read_metadata(saved)["embeddings"][0]["model"] == str(embedding / "shinystyle.safetensors")
    assert np.array_equal(pixels(run(engine, tiny_models[1])), before)  # unloaded: the letters again
    assert len(tokenizer(PROMPT).input_ids) == plain_ids
    again = engine.generate(request_from_metadata(read_metadata(saved), tmp_path).request)
    assert np.array_equal(pixels(again), pixels(styled))


def test_an_sdxl_embedding_reaches_both_encoders(embedding, tmp_path):
    base, controlnet = save_tiny_models(tmp_path / "xl", family="sdxl")
    engine = Engine(str(base), device="cpu")
    parts = engine.load_base()
    before = pixels(run(engine, controlnet, prompt="a xlstyle circle"))
    styled = run(engine, controlnet, [str(embedding / "xlstyle.safetensors")], prompt="a xlstyle circle")
    for tokenizer, encoder, key in ((parts["tokenizer"], parts["text_encoder"], "clip_l"),
                                    (parts["tokenizer_2"], parts["text_encoder_2"], "clip_g")):
        from safetensors.torch import load_file

        token = tokenizer.convert_tokens_to_ids("xlstyle")
        vector = load_file(str(embedding / "xlstyle.safetensors"))[key][0]
        assert torch.equal(encoder.get_input_embeddings().weight[token], vector)
    assert not np.array_equal(pixels(styled), before)
    with pytest.raises(RequestError, match="holds 'clip_l' and 'clip_g'"):
        run(engine, controlnet, [str(embedding / "shinystyle.safetensors")], prompt="a xlstyle circle")
    assert np.array_equal(pixels(run(engine, controlnet, prompt="a xlstyle circle")), before)
