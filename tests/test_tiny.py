"""The tiny random models respond to what a test changes: a map of other content gives other pixels.

Every test of map handling (resize modes, pixel perfect, map edits, unit order, the inpaint condition, tile maps)
runs on these models; if they ignored their map, those tests would pass whatever happened to it."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnet.engine import Engine
from cnet.request import ControlUnit, GenerationRequest


def maps() -> dict[str, Image.Image]:
    """Four 64x64 maps of different content: black, white, a ring (canny-like) and straight lines (MLSD-like)."""
    yy, xx = np.mgrid[:64, :64]
    ring = ((np.hypot(yy - 30, xx - 34) > 14) & (np.hypot(yy - 30, xx - 34) < 17)) * 255
    lines = ((xx % 16 == 0) | (yy == 40)) * 255
    as_rgb = lambda a: Image.fromarray(np.stack([a.astype(np.uint8)] * 3, axis=-1))  # noqa: E731
    return {"black": as_rgb(np.zeros((64, 64))), "white": as_rgb(np.full((64, 64), 255)), "ring": as_rgb(ring),
            "lines": as_rgb(lines)}


def residuals(net, image: Image.Image, **extra) -> torch.Tensor:
    """All 13 outputs of a ControlNet for one map, flattened (fixed latents, timestep and text)."""
    torch.manual_seed(0)
    sample = torch.randn(1, 4, 8, 8)
    text = torch.randn(1, 77, net.config.cross_attention_dim)
    cond = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        down, mid = net(sample, 10, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False, **extra)
    return torch.cat([r.flatten() for r in [*down, mid]])


def distinct(outputs: dict[str, torch.Tensor], tolerance: float = 1e-4) -> None:
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            gap = (outputs[a] - outputs[b]).abs().max().item()
            assert gap > tolerance, f"maps {a!r} and {b!r} give the same ControlNet outputs (max gap {gap:.2e})"


@pytest.mark.parametrize("family", ["sd15", "sd2"])
def test_the_tiny_controlnet_responds_to_its_map(family):
    from cnet.tiny import build_tiny_components

    net = build_tiny_components(seed=0, family=family)["controlnet"].eval()
    distinct({name: residuals(net, image) for name, image in maps().items()})


def test_the_tiny_sdxl_controlnets_respond_to_their_maps():
    from cnet.tiny import build_tiny_sdxl_components

    parts = build_tiny_sdxl_components(seed=0)
    sdxl = dict(added_cond_kwargs={"text_embeds": torch.zeros(1, 32), "time_ids": torch.zeros(1, 6)})
    distinct({name: residuals(parts["controlnet"].eval(), image, **sdxl) for name, image in maps().items()})
    union = parts["union"].eval()

    def union_residuals(image):
        # diffusers' Union model takes a list of maps, one per active control type (here type 0 alone).
        cond = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        torch.manual_seed(0)
        sample, text = torch.randn(1, 4, 8, 8), torch.randn(1, 77, 64)
        with torch.no_grad():
            down, mid = union(sample, 10, encoder_hidden_states=text, controlnet_cond=[cond], control_type=
                              torch.tensor([[1, 0, 0, 0, 0, 0, 0, 0]]), control_type_idx=[0],
                              return_dict=False, **sdxl)
        return torch.cat([r.flatten() for r in [*down, mid]])

    distinct({name: union_residuals(image) for name, image in maps().items()})


def test_different_maps_give_different_pixels_on_the_saved_tiny_models(tiny_models):
    """Through the engine, as the map-handling tests use it: each map gives its own picture, the same map the same."""
    engine = Engine(str(tiny_models[0]), device="cpu")

    def picture(image):
        request = GenerationRequest(units=[ControlUnit(image, controlnet=str(tiny_models[1]))], seed=0,
                                    num_inference_steps=2, prompt_mode="none")
        return np.asarray(engine.generate(request).images[0], dtype=np.int16)

    pictures = {name: picture(image) for name, image in maps().items()}
    names = list(pictures)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            # Kernels may differ by 1/255 between machines; different maps differ by 10-40 levels here (the
            # same models ignoring their map: 1 at most, black against white).
            assert np.abs(pictures[a] - pictures[b]).max() > 4, f"maps {a!r} and {b!r} give the same picture"
    assert np.abs(picture(maps()["ring"]) - pictures["ring"]).max() <= 1
