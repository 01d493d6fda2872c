"""Every field of a request is declared once (cnet/params.py) and reaches every door from that declaration: the CLI's
`generate` and `edit`, the API's /generate and /edit, the Generate tab's form, and a saved PNG's re-run and restore.
A field added to the request without reaching one of them fails here."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from cnet.cli import build_parser
from cnet.engine import Engine
from cnet.params import declarations
from cnet.request import ControlUnit, GenerationRequest, ImagePrompt, LoraRef, door_fields
from cnet.result import read_metadata, request_from_metadata, settings_from_metadata
from cnet.tiny import save_tiny_taesd

DOORS = ("generate", "edit")
# The CLI's options of the machine that runs it (not request fields), and its own re-run flag.
CLI_ONLY = {"help", "out", "single_file_config", "controlnet_config", "caption_model", "device", "dtype", "offload",
            "from_png"}
# Recorded in the PNG beside the settings (as files, entries with hashes), not in the settings themselves.
RECORDED_APART = {"source_image", "init_image", "mask", "loras", "embeddings", "ip_adapter", "reference_only"}


def _cli_names(door: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[door]
    return {action.dest for action in sub._actions} - CLI_ONLY


@pytest.fixture(scope="module")
def api_names(tmp_path_factory):
    """The parameter names gradio_client sees for /generate and /edit (the API info of the real endpoints)."""
    import gradio as gr

    from webui.api import create_api
    from webui.service import Studio
    from webui.settings import AppSettings

    with gr.Blocks() as blocks:
        create_api(Studio(AppSettings(output_dir=tmp_path_factory.mktemp("out"))), gpu=lambda fn: fn)
    info = blocks.get_api_info()["named_endpoints"]
    return {door: [p["parameter_name"] for p in info[f"/{door}"]["parameters"]] for door in DOORS}


@pytest.mark.parametrize("door", DOORS)
def test_the_cli_and_the_api_take_every_declared_field_and_nothing_else(door, api_names):
    declared = [item.name for item in door_fields(door)]
    assert len(set(declared)) == len(declared), "two declared fields share a public name"
    # The API's one parameter of its own: the maps of units 2, 3, ... (the CLI repeats --image instead).
    assert set(api_names[door]) == set(declared) | {"more_images"}
    assert _cli_names(door) == set(declared)
    assert api_names[door][0] == ("picture" if door == "edit" else "image")  # positional callers send the file first


def test_every_field_of_a_request_and_a_unit_is_declared():
    for cls in (GenerationRequest, ControlUnit, ImagePrompt):
        undeclared = {f.name for f in dataclasses.fields(cls) if "param" not in f.metadata} - {"units",
                                                                                                "image_prompts"}
        assert not undeclared, f"{cls.__name__} fields without a declaration: {undeclared}"
    unrecorded = {item.field for item in declarations(GenerationRequest) if not item.param.record}
    assert unrecorded == RECORDED_APART


def test_the_generate_tab_restores_every_restorable_field(tmp_path):
    import gradio as gr

    from webui.generate_tab import create_generate_tab
    from webui.service import Studio
    from webui.settings import AppSettings

    with gr.Blocks():
        tab = create_generate_tab(Studio(AppSettings(output_dir=tmp_path)), gpu=lambda fn: fn)
    restorable = {item.field for item in declarations(GenerationRequest, "generate")
                  if item.param.record and item.param.restore}
    unit = {item.field for item in declarations(ControlUnit) if item.param.record}
    assert restorable | unit <= set(tab["restored"])


def _unusual() -> dict:
    """A value other than the default for every recorded field every request takes."""
    return dict(prompt_mode="auto", prompt="unused text", caption="a ring on black", added_prompt="sharp",
                negative_prompt="blurry", num_inference_steps=2, guidance_scale=7.5, eta=0.5, num_images=2, seed=11,
                width=72, height=64, guess_mode=True, scheduler="ddim", resize_mode="just_resize", fast_decode=True)


def test_every_recorded_field_survives_a_png_round_trip(tiny_models, cond_map, tmp_path, monkeypatch):
    monkeypatch.setenv("CNET_TINY_VAE", str(save_tiny_taesd(tmp_path / "taesd")))
    engine = Engine(str(tiny_models[0]), device="cpu")
    picture = Image.fromarray(np.full((64, 64, 3), 90, np.uint8))
    mask = Image.fromarray((np.arange(64)[None, :].repeat(64, 0) > 32).astype(np.uint8) * 255)
    unit = ControlUnit(cond_map, kind="scribble", controlnet=str(tiny_models[1]), strength=0.7, start=0.1, end=0.9,
                       control_mode="prompt")
    requests = [  # txt2img, img2img (tile_size) and inpaint (mask settings): each recorded field in one of them
        GenerationRequest(units=[dataclasses.replace(unit, control_mode="balanced")], **_unusual()),  # guess mode
        GenerationRequest(units=[unit], init_image=picture, denoise=0.6, tile_size=256, num_inference_steps=2,
                          operation="upscale", width=64, height=64, seed=3),
        GenerationRequest(units=[unit], init_image=picture, mask=mask, operation="outpaint", denoise=0.9,
                          mask_blur=2, inpaint_padding=8, keep_unmasked=True, num_inference_steps=2, seed=4,
                          width=64, height=64),
    ]
    seen = set()
    for i, request in enumerate(requests):
        saved = engine.generate(request).save(tmp_path / str(i))[0]
        meta = read_metadata(saved)
        rerun = request_from_metadata(meta, saved.parent).request
        # The PNG records what ran: the sampler and guidance the request left to the family, filled in.
        for field, value in engine.family.resolved(request).settings().items():
            if field == "mode":
                continue
            assert getattr(rerun, field) == value, field
            seen.add(field)
        for name in ("kind", "strength", "start", "end", "control_mode"):
            assert getattr(rerun.units[0], name) == getattr(request.units[0], name)
        restored = settings_from_metadata(meta).settings
        assert restored["control_mode"] == request.units[0].control_mode and restored["strength"] == 0.7
    recorded = {item.field for item in declarations(GenerationRequest) if item.param.record}
    # true_cfg is FLUX.1's alone (refused for SD): its round trip is in tests/test_dit_families.py.
    assert recorded <= seen | {"operation", "true_cfg"}, recorded - seen


def test_loras_and_embeddings_are_recorded_apart_and_re_run(tiny_models, cond_map, tmp_path):
    """The two list fields are recorded as entries with their hashes; a re-run reads them back (the tiny LoRA)."""
    from cnet.tiny import save_tiny_lora

    lora = save_tiny_lora(tiny_models[0], tmp_path / "lora")
    request = GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]))], num_inference_steps=1,
                                seed=1, loras=[LoraRef(str(lora), 0.5)])
    saved = Engine(str(tiny_models[0]), device="cpu").generate(request).save(tmp_path / "out")[0]
    rerun = request_from_metadata(read_metadata(saved), saved.parent).request
    assert [(r.source, r.weight) for r in rerun.loras] == [(str(lora), 0.5)]
