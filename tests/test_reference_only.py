"""Reference-only (cnet/reference.py): a weight of 0 is exactly the plain run, the reference's self-attention
features enter the image's (each layer attends to its own tokens and the reference's), the widest layers read first,
the U-Net comes back as it was, and a saved PNG re-runs with its reference."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnet.engine import Engine
from cnet.reference import ReferenceAttnProcessor, ReferenceState
from cnet.request import ControlUnit, GenerationRequest, RequestError
from cnet.result import read_metadata, request_from_metadata


@pytest.fixture(scope="module")
def engine(tiny_models):
    return Engine(str(tiny_models[0]), device="cpu")


@pytest.fixture(scope="module")
def pictures():
    from skimage import data

    return (Image.fromarray(data.chelsea()).resize((64, 64)), Image.fromarray(data.coffee()).resize((64, 64)))


def run(engine, tiny_models, cond_map, reference=None, weight=1.0, fidelity=0.5, guidance=9.0):
    return np.asarray(engine.generate(GenerationRequest(
        units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]))], num_inference_steps=3, seed=5,
        guidance_scale=guidance, reference_only=reference, reference_only_weight=weight,
        reference_only_fidelity=fidelity)).images[0], dtype=np.int16)


def test_weight_zero_is_the_plain_run_and_the_reference_changes_the_image(engine, tiny_models, cond_map, pictures):
    plain = run(engine, tiny_models, cond_map)
    assert np.array_equal(run(engine, tiny_models, cond_map, pictures[0], weight=0.0), plain)
    cat = run(engine, tiny_models, cond_map, pictures[0])
    coffee = run(engine, tiny_models, cond_map, pictures[1])
    assert not np.array_equal(cat, plain) and not np.array_equal(cat, coffee)  # the picture itself matters
    half = run(engine, tiny_models, cond_map, pictures[0], weight=0.5)
    assert not np.array_equal(half, cat) and not np.array_equal(half, plain)
    assert not np.array_equal(run(engine, tiny_models, cond_map, pictures[0], fidelity=1.0), cat)
    assert np.array_equal(run(engine, tiny_models, cond_map), plain)  # the U-Net's own processors came back
    from diffusers.hooks import HookRegistry

    unet = engine.load_base()["unet"]
    assert HookRegistry.check_if_exists_or_initialize(unet).get_hook("cnet_reference_only") is None


def test_a_reading_layer_attends_to_its_own_tokens_and_the_references():
    """The processor against the definition: in the image's pass a layer's keys and values are its own tokens
    followed by those the reference's pass kept; a layer whose order is not below the weight stays plain."""
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    torch.manual_seed(0)
    attn = Attention(query_dim=8, heads=2, dim_head=4)
    image, reference = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    state = ReferenceState(weight=1.0, fidelity=0.0, mode="write")
    processor = ReferenceAttnProcessor(state, order=0.25)
    plain = AttnProcessor2_0()
    assert torch.equal(processor(attn, reference), plain(attn, reference))  # writing changes nothing
    state.mode = "read"
    expected = plain(attn, image, torch.cat([image, reference], dim=1))
    assert torch.allclose(processor(attn, image), expected, atol=1e-6)
    assert processor.bank == []  # read once, then cleared
    state.mode, state.weight, state.uncond_rows, state.fidelity = "write", 1.0, 1, 1.0
    processor(attn, reference)
    state.mode = "read"
    mixed = processor(attn, image)  # fidelity 1: the unconditional row without the reference, the other with it
    assert torch.allclose(mixed[:1], plain(attn, image[:1]), atol=1e-6)
    assert torch.allclose(mixed[1:], plain(attn, image, torch.cat([image, reference], dim=1))[1:], atol=1e-6)
    state.mode, state.weight = "write", 0.25
    processor(attn, reference)
    state.mode = "read"
    assert torch.equal(processor(attn, image), plain(attn, image))  # order 0.25 is not below weight 0.25


@pytest.mark.slow  # the fast tier keeps the library's checks; this one loads more
def test_a_saved_png_reruns_with_its_reference(engine, tiny_models, cond_map, pictures, tmp_path):
    result = engine.generate(GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]))],
                                               num_inference_steps=3, seed=5, reference_only=pictures[0],
                                               reference_only_weight=0.7))
    saved = result.save(tmp_path)[0]
    meta = read_metadata(saved)
    assert meta["reference_only_weight"] == 0.7 and meta["reference_only_image"].endswith("-reference_only.png")
    again = engine.generate(request_from_metadata(meta, tmp_path).request)
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))


@pytest.mark.slow  # the fast tier keeps the library's checks; this one loads more
def test_reference_only_is_refused_by_name_for_a_transformer_family(tmp_path, cond_map, pictures):
    from cnet.tiny_dit import save_tiny_dit_models

    base, controlnet = save_tiny_dit_models(tmp_path, family="sd3")
    with pytest.raises(RequestError, match="reference_only: it works in a U-Net's self-attention"):
        Engine(str(base), device="cpu").generate(GenerationRequest(
            units=[ControlUnit(cond_map, controlnet=str(controlnet))], num_inference_steps=1, seed=0,
            reference_only=pictures[0]))
