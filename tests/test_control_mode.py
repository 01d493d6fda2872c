"""A1111's control modes on diffusers' ControlNet: the factors, the unconditional half, the request rules."""

import numpy as np
import pytest
import torch

from cnet.control_mode import SOFT_RATIO, set_control_mode, soft_weights
from cnet.engine import Engine
from cnet.request import ControlUnit, GenerationRequest, RequestError


@pytest.fixture(scope="module")
def controlnet(tiny_models):
    from diffusers import ControlNetModel

    return ControlNetModel.from_pretrained(tiny_models[1]).eval()


def residuals(net, mode, cfg_batch):
    set_control_mode(net, mode, cfg_batch)
    torch.manual_seed(0)
    sample, cond = torch.randn(2, 4, 8, 8), torch.rand(2, 3, 64, 64)
    text = torch.randn(2, 77, 32)
    with torch.no_grad():
        out = net(sample, torch.tensor([500, 500]), text, cond, conditioning_scale=0.8)
    return [*out.down_block_res_samples, out.mid_block_res_sample]


def test_the_soft_weights_are_the_extensions():
    weights = soft_weights()
    assert len(weights) == 13 and weights[-1] == 1.0 and weights[0] == pytest.approx(SOFT_RATIO ** 12)
    assert weights[0] == pytest.approx(0.0994, abs=1e-4)
    # diffusers' guess mode uses 10^(-1 + i/12): the same ratio, to 4 digits
    assert np.allclose(weights, np.logspace(-1, 0, 13), rtol=0.02)


def test_prompt_mode_damps_the_shallow_outputs_on_both_halves(controlnet):
    balanced = residuals(controlnet, "balanced", True)
    prompt = residuals(controlnet, "prompt", True)
    weights = soft_weights(len(balanced))
    for plain, soft, w in zip(balanced, prompt, weights):
        assert torch.allclose(soft, plain * w, atol=1e-6) and plain.abs().max() > 0
    assert weights[0] < 0.9 and weights[-1] == 1.0


def test_control_mode_leaves_the_unconditional_half_without_control(controlnet):
    prompt = residuals(controlnet, "prompt", True)
    control = residuals(controlnet, "control", True)
    for soft, ctl in zip(prompt, control):
        assert (ctl[0] == 0).all() and torch.equal(ctl[1], soft[1])
    without_cfg = residuals(controlnet, "control", False)  # no [uncond, cond] batch: nothing to leave out
    assert all(torch.equal(a, b) for a, b in zip(without_cfg, prompt))
    set_control_mode(controlnet, "balanced", True)


def test_the_engine_applies_each_units_mode_and_records_it(tiny_models, cond_map, tmp_path):
    from cnet.result import read_metadata, request_from_metadata

    engine = Engine(str(tiny_models[0]), device="cpu")

    def run(mode):
        return engine.generate(GenerationRequest(
            units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]), control_mode=mode)],
            num_inference_steps=3, seed=2))

    images = {mode: np.asarray(run(mode).images[0], dtype=np.int16) for mode in ("balanced", "prompt", "control")}
    assert not np.array_equal(images["balanced"], images["prompt"])
    assert not np.array_equal(images["prompt"], images["control"])
    again = run("balanced")
    assert np.array_equal(np.asarray(again.images[0], dtype=np.int16), images["balanced"])  # modes do not linger
    saved = run("control").save(tmp_path)[0]
    rerun = engine.generate(request_from_metadata(read_metadata(saved), tmp_path).request)
    assert rerun.metadata[0]["controlnets"][0]["control_mode"] == "control"
    assert np.array_equal(np.asarray(rerun.images[0], dtype=np.int16), images["control"])


@pytest.mark.parametrize("kwargs, message", [
    (dict(control_mode="strong"), r"units\[0\].control_mode='strong' is not one of"),
    (dict(control_mode="control", guess=True), "guess_mode=True is diffusers' 'control' mode"),
])
def test_bad_control_modes_are_named(cond_map, kwargs, message):
    guess = kwargs.pop("guess", False)
    with pytest.raises(RequestError, match=message):
        GenerationRequest(units=[ControlUnit(cond_map, **kwargs)], guess_mode=guess).validated()


def test_the_api_takes_a_control_mode_and_names_a_bad_one(app_url, cond_map, tmp_path):
    from gradio_client import Client, handle_file

    cond_map.save(tmp_path / "map.png")
    client = Client(app_url, verbose=False)
    _, _, metadata = client.predict(handle_file(str(tmp_path / "map.png")), control_mode="control", steps=2, seed=1,
                                    api_name="/generate")
    assert metadata[0]["controlnets"][0]["control_mode"] == "control"
    with pytest.raises(Exception, match=r"control_mode='strong' is not one of"):
        client.predict(handle_file(str(tmp_path / "map.png")), control_mode="strong", steps=2, api_name="/generate")


def test_modes_and_the_skip_are_diffusers_model_hooks_that_compose(tiny_models):
    """Both live in diffusers' hook registry (so they apply to any model diffusers hooks, a transformer ControlNet
    included), and the tuple output (return_dict=False) is weighted too; removing the hook restores the plain one."""
    from diffusers import ControlNetModel
    from diffusers.hooks import HookRegistry

    from cnet.control_mode import HOOK_NAME
    from cnet.fastpath import HOOK_NAME as SKIP
    from cnet.fastpath import skip_inactive_controlnet

    net = ControlNetModel.from_pretrained(tiny_models[1]).eval()
    set_control_mode(net, "prompt", False)
    skip_inactive_controlnet(net)
    registry = HookRegistry.check_if_exists_or_initialize(net)
    assert registry.get_hook(HOOK_NAME) is not None and registry.get_hook(SKIP) is not None
    args = (torch.randn(1, 4, 8, 8), torch.tensor([500]), torch.randn(1, 77, 32), torch.rand(1, 3, 64, 64))
    with torch.no_grad():
        down, mid = net(*args, conditioning_scale=0.8, return_dict=False)
        registry.remove_hook(HOOK_NAME)
        plain_down, plain_mid = net(*args, conditioning_scale=0.8, return_dict=False)
    assert torch.allclose(down[0], plain_down[0] * soft_weights(len(down) + 1)[0], atol=1e-6)
    assert torch.equal(mid, plain_mid)


def test_one_controlnet_for_two_units_takes_each_units_mode_and_mask(engine, tiny_models, cond_map, tmp_path):
    """The same ControlNet for two units with their own control modes and masks gives the pixels of two copies of it
    (separate models, each with its unit's mode and mask): the model's calls take the units' settings in turn."""
    import shutil

    from PIL import Image, ImageOps

    from cnet.request import ControlUnit, GenerationRequest

    copy = tmp_path / "copy"
    shutil.copytree(tiny_models[1], copy)
    left = Image.new("L", (64, 64), 0)
    left.paste(255, (0, 0, 32, 64))
    other = ImageOps.invert(cond_map.convert("RGB"))

    def run(second_net):
        return np.asarray(engine.generate(GenerationRequest(units=[
            ControlUnit(cond_map, controlnet=str(tiny_models[1]), control_mode="prompt"),
            ControlUnit(other, controlnet=second_net, control_mode="control", mask=left, start=0.2)],
            num_inference_steps=4, seed=6)).images[0])

    assert np.array_equal(run(str(tiny_models[1])), run(str(copy)))
