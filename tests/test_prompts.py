"""Weighted and long prompts (cnet/prompts.py): A1111 notation read as A1111 reads it, weights applied as compel
applies its own, a 150-token prompt reaching the text encoder(s) whole, and plain prompts left to the pipeline."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnet.engine import Engine
from cnet.prompts import encode_prompts, parse_weights
from cnet.request import ControlUnit, GenerationRequest
from cnet.tiny import save_tiny_models


# The examples A1111 documents for its parse_prompt_attention, with its outputs.
@pytest.mark.parametrize("text, expected", [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    (r"\(literal\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
     [("a ", 1.0), ("house", 1.573), (" ", 1.1), ("on", 1.0), (" a ", 1.1), ("hill", 0.55), (", sun, ", 1.1),
      ("sky", 1.4641), (".", 1.1)]),
])
def test_a1111_notation_reads_as_a1111_documents_it(text, expected):
    got = parse_weights(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected], abs=1e-9)


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return save_tiny_models(tmp_path_factory.mktemp("tiny-sdxl"), family="sdxl")


@pytest.fixture(scope="module")
def cond():
    rng = np.random.default_rng(1)
    return Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8))


LONG = ", ".join(["a (red:1.3) circle with [green] background"] * 25)  # 174 tokens of the tiny vocabulary


def generate(engine, controlnet, cond, prompt, negative=""):
    return engine.generate(GenerationRequest(units=[ControlUnit(cond, controlnet=str(controlnet))],
                                             prompt_mode="custom", prompt=prompt, negative_prompt=negative,
                                             num_inference_steps=2, seed=4))


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_long_weighted_prompt_reaches_every_text_encoder_whole(family, tiny_models, sdxl, cond):
    base, controlnet = tiny_models if family == "sd15" else sdxl
    engine = Engine(str(base), device="cpu")
    parts = engine.load_base()
    encoders = [parts[n] for n in ("text_encoder", "text_encoder_2") if parts.get(n) is not None]
    seen = {id(e): [] for e in encoders}
    hooks = [e.register_forward_pre_hook(lambda mod, args, kwargs: seen[id(mod)].append(
        (args[0] if args else kwargs["input_ids"]).clone()), with_kwargs=True) for e in encoders]
    try:
        result = generate(engine, controlnet, cond, LONG)
    finally:
        for hook in hooks:
            hook.remove()
    tokenizer = parts["tokenizer"]
    plain = "".join(t for t, _ in parse_weights(LONG))
    expected = tokenizer(plain, add_special_tokens=False).input_ids
    assert len(expected) > 150
    special = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}
    for encoder in encoders:
        # The prompt's chunks (each a 77-token window) hold every token of the text, in order.
        sent = [t for chunk in seen[id(encoder)] for row in chunk.tolist() for t in row if t not in special]
        assert sent[:len(expected)] == expected
    meta = result.metadata[0]
    assert meta["prompt_encoding"] == "compel" and meta["prompt_chunks"] == 3
    assert meta["prompt_weights"]["prompt"][1] == ["red", 1.3]


def test_weights_are_applied_as_compel_applies_its_own(tiny_models):
    from compel import Compel

    engine = Engine(str(tiny_models[0]), device="cpu")
    pipe = engine.pipeline([ControlUnit(Image.new("RGB", (64, 64)), controlnet=str(tiny_models[1]))])
    ours = encode_prompts(pipe, "a (red:1.5) circle, [green] background", "", device=None)
    theirs = Compel(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, truncate_long_prompts=False)
    expected = theirs.build_conditioning_tensor(f"a (red)1.5 circle, (green){1 / 1.1} background")
    assert torch.allclose(ours.prompt_embeds, expected, atol=1e-6)


def test_plain_prompts_stay_text_and_weights_change_the_picture(tiny_models, cond):
    engine = Engine(str(tiny_models[0]), device="cpu")
    plain = generate(engine, tiny_models[1], cond, "red circle with green background")
    neutral = generate(engine, tiny_models[1], cond, "(red:1.0) circle with green background")
    weighted = generate(engine, tiny_models[1], cond, "(red:1.6) circle with green background")
    assert "prompt_encoding" not in plain.metadata[0]  # the pipeline encoded the text itself
    assert np.array_equal(np.asarray(plain.images[0]), np.asarray(neutral.images[0]))
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(weighted.images[0]))
    negative = generate(engine, tiny_models[1], cond, "red circle", negative="(blurry:1.4)")
    assert negative.metadata[0]["prompt_weights"]["negative_prompt"] == [["blurry", 1.4]]
