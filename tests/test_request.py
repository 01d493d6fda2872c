"""Request validation and prompt modes (no models needed)."""

import math

import pytest
from PIL import Image

from cnet.request import (
    DEFAULT_PROMPT,
    ControlUnit,
    GenerationRequest,
    Limits,
    PromptMode,
    RequestError,
    resolve_prompt,
)

IMG = Image.new("RGB", (64, 64))


def req(**kw):
    unit_kw = {k: kw.pop(k) for k in ("strength", "start", "end", "kind") if k in kw}
    return GenerationRequest(units=[ControlUnit(IMG, **unit_kw)], **kw)


@pytest.mark.parametrize(
    "kwargs, field, value",
    [
        (dict(width=100), "width", "100"),
        (dict(height=8), "height", "8"),
        (dict(width=4096), "width", "4096"),
        (dict(num_inference_steps=0), "num_inference_steps", "0"),
        (dict(num_inference_steps=500), "num_inference_steps", "500"),
        (dict(num_inference_steps=2.5), "num_inference_steps", "2.5"),
        (dict(guidance_scale=math.nan), "guidance_scale", "nan"),
        (dict(guidance_scale=-1.0), "guidance_scale", "-1.0"),
        (dict(num_images=64), "num_images", "64"),
        (dict(seed=-1), "seed", "-1"),
        (dict(seed=2**40), "seed", str(2**40)),
        (dict(eta=2.0), "eta", "2.0"),
        (dict(strength=3.0), "units[0].strength", "3.0"),
        (dict(start=0.8, end=0.2), "units[0].start", "0.8"),
        (dict(kind="nope"), "units[0].kind", "nope"),
        (dict(scheduler="euler_z"), "scheduler", "euler_z"),
        (dict(prompt_mode="loud"), "prompt_mode", "loud"),
        (dict(prompt_mode="custom", prompt="  "), "prompt", ""),
        (dict(guess_mode="yes"), "guess_mode", "yes"),
    ],
)
def test_validation_names_field_and_value(kwargs, field, value):
    with pytest.raises(RequestError) as err:
        req(**kwargs).validated()
    assert field in str(err.value) and value in str(err.value)


def test_unit_image_must_be_an_image_and_units_bounded():
    with pytest.raises(RequestError, match=r"units\[0\]\.image=str"):
        GenerationRequest(units=[ControlUnit("map.png")]).validated()
    with pytest.raises(RequestError, match="units"):
        GenerationRequest(units=[]).validated()
    with pytest.raises(RequestError, match="1 to 2"):
        GenerationRequest(units=[ControlUnit(IMG)] * 3).validated(Limits(max_units=2))


def test_tighter_limits_apply():
    with pytest.raises(RequestError, match=r"num_inference_steps=40 is out of range \[1, 30\]"):
        req(num_inference_steps=40).validated(Limits(max_steps=30))


def test_valid_request_passes_and_normalises_mode():
    checked = req(prompt_mode="none", seed=0, width=512, height=768).validated()
    assert checked.prompt_mode is PromptMode.NONE


@pytest.mark.parametrize(
    "mode, extra, expected",
    [
        ("none", {}, ""),
        ("none", {"added_prompt": "best quality"}, ""),  # a true empty prompt: nothing appended
        ("default", {}, "a professional, detailed, high-quality image"),
        ("default", {"added_prompt": "best quality"}, "a professional, detailed, high-quality image, best quality"),
        ("custom", {"prompt": " a red house "}, "a red house"),
        ("auto", {"caption": "a cat on a mat"}, "a cat on a mat"),
    ],
)
def test_prompt_modes_resolve_to_exact_text(mode, extra, expected):
    assert resolve_prompt(req(prompt_mode=mode, **extra).validated()) == expected


def test_default_prompt_is_the_papers():
    assert DEFAULT_PROMPT == "a professional, detailed, high-quality image"


def test_auto_without_caption_is_an_error():
    with pytest.raises(RequestError, match="caption"):
        resolve_prompt(req(prompt_mode="auto").validated())


def test_defaults_are_the_papers_settings():
    from cnet.families import FAMILIES

    r = req()
    assert (r.guidance_scale, r.scheduler) == (None, "default")  # left to the base's family
    for name in ("sd15", "sd2", "sdxl"):
        r = FAMILIES[name].resolved(req())
        assert (r.num_inference_steps, r.guidance_scale, r.eta, r.scheduler) == (20, 9.0, 0.0, "ddim")
    for name in ("flux", "sd3"):  # flow matching; FLUX.1-dev's distilled guidance and SD3.5 Large's CFG of 3.5
        assert (FAMILIES[name].resolved(req()).guidance_scale, FAMILIES[name].resolved(req()).scheduler) == (
            3.5, "flow_euler")
