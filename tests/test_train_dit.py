"""Training ControlNets for FLUX.1 and SD3.5 on the same trainer (train/objectives.py `FlowMatching`): the copy is
the transformer's first blocks, the objective flow matching; a run resumes bit for bit and its result generates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from cnet.tiny_dit import save_tiny_dit_models
from train.config import TrainConfig
from train.loop import train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["flux", "sd3"])
def dit_base(request, tmp_path_factory):
    base, _ = save_tiny_dit_models(tmp_path_factory.mktemp(request.param), seed=0, family=request.param)
    return request.param, base


def config(base, circles, out, **kw):
    settings = dict(base_model=str(base), dataset=str(circles), output_dir=str(out), resolution=64, batch_size=2,
                    max_steps=4, lr=1e-3, checkpoint_every=100, validate_every=0, log_every=1, seed=3)
    return TrainConfig(**{**settings, **kw})


def weights(folder):
    import diffusers

    config = diffusers.ControlNetModel.load_config(folder)
    model = getattr(diffusers, config["_class_name"]).from_pretrained(folder)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_four_steps_equal_two_and_a_resume_and_two_and_the_copy_starts_as_the_transformer(dit_base, circles,
                                                                                         tmp_path):
    import diffusers

    name, base = dit_base
    whole = train(config(base, circles, tmp_path / "whole"))
    parts = config(base, circles, tmp_path / "parts")
    assert train(TrainConfig(**{**parts.to_dict(), "stop_after": 2})) is None
    resumed = train(TrainConfig(**{**parts.to_dict(), "resume": "latest"}))
    a, b = weights(whole), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # It learned (its output layers, which start at zero, moved), and it is the family's ControlNet.
    assert all(a[k].abs().sum() > 0 for k in a if k.startswith("controlnet_blocks.") and k.endswith("weight"))
    cls = {"flux": "FluxControlNetModel", "sd3": "SD3ControlNetModel"}[name]
    assert diffusers.ControlNetModel.load_config(whole)["_class_name"] == cls
    assert f"from diffusers import {cls}" in (whole / "README.md").read_text()


def test_a_trained_dit_controlnet_generates_in_the_studio(dit_base, circles, tmp_path):
    from PIL import Image

    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest

    name, base = dit_base
    result = train(config(base, circles, tmp_path / "run", max_steps=1))
    made = Engine(str(base), device="cpu").generate(GenerationRequest(
        units=[ControlUnit(Image.new("RGB", (64, 64)), controlnet=str(result))], num_inference_steps=2, seed=0))
    assert made.images[0].size == (64, 64) and made.metadata[0]["family"] == name


def test_small_mode_is_refused_for_a_transformer_by_name(dit_base, circles, tmp_path):
    _, base = dit_base
    with pytest.raises(ValueError, match="mode='small' does not apply to .*a transformer has no middle block"):
        train(config(base, circles, tmp_path / "small", mode="small"))


def test_two_processes_train_identical_weights(dit_base, circles, tmp_path):
    """accelerate's launcher, two real processes (torchrun with gloo on the CPU), as for the U-Net families."""
    _, base = dit_base
    env = {**os.environ, "ACCELERATE_USE_CPU": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "train",
         "--base-model", str(base), "--dataset", str(circles), "--output-dir", str(tmp_path), "--resolution", "64",
         "--batch-size", "1", "--max-steps", "2", "--checkpoint-every", "100", "--validate-every", "0"],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    end = next(json.loads(line) for line in proc.stdout.splitlines() if '"event": "end"' in line)
    assert len(end["weights_sha256"]) == 2 and end["weights_sha256"][0] == end["weights_sha256"][1]


@pytest.mark.parametrize("source", ["precompute", "latent_cache"])
def test_precomputed_and_cached_runs_resume_bit_for_bit(dit_base, circles, tmp_path, source):
    """The text embeddings (T5's too, float16 in the cache) and posteriors made once: a stopped and resumed run
    equals an uninterrupted one."""
    _, base = dit_base
    extra = (lambda name: {"precompute": True}) if source == "precompute" else (
        lambda name: {"latent_cache": str(tmp_path / f"cache-{name}")})
    whole = train(config(base, circles, tmp_path / "whole", **extra("whole")))
    parts = config(base, circles, tmp_path / "parts", **extra("parts"))
    assert train(TrainConfig(**{**parts.to_dict(), "stop_after": 2})) is None
    resumed = train(TrainConfig(**{**parts.to_dict(), "resume": "latest"}))
    a, b = weights(whole), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family", ["flux", "sd15"])
def test_a_lora_on_the_controlnet_trains_a_few_percent_resumes_exactly_and_saves_a_plain_controlnet(
        family, circles, tiny_models, tmp_path):
    """Light training (train/light.py): LoRA on the copy's attention, its zero layers whole. A stopped run resumes
    bit for bit from the light file; the result is a plain ControlNet (merged) that the studio generates with, and
    the light file holds only the trained weights."""
    from PIL import Image
    from safetensors.torch import load_file

    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest
    from train.light import LIGHT_FILE

    base = save_tiny_dit_models(tmp_path / "m", family="flux")[0] if family == "flux" else tiny_models[0]
    light = {"controlnet_lora_rank": 4}
    whole = train(config(base, circles, tmp_path / "whole", **light))
    parts = config(base, circles, tmp_path / "parts", **light)
    assert train(TrainConfig(**{**parts.to_dict(), "stop_after": 2})) is None
    resumed = train(TrainConfig(**{**parts.to_dict(), "resume": "latest"}))
    a, b = weights(whole), weights(resumed)
    assert not any("lora" in k for k in a) and all(torch.equal(a[k], b[k]) for k in a)
    trained = load_file(str(whole / LIGHT_FILE))
    assert any(".lora_A." in k for k in trained) and sum(v.numel() for v in trained.values()) < sum(
        v.numel() for v in a.values()) / 2
    full = train(config(base, circles, tmp_path / "full"))
    assert any(not torch.equal(a[k], weights(full)[k]) for k in a)  # a different training, not the full one
    engine = Engine(str(base), device="cpu")
    condition = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))

    def made(controlnet):
        return np.asarray(engine.generate(GenerationRequest(units=[ControlUnit(condition, controlnet=controlnet)],
                                                            num_inference_steps=2, seed=0)).images[0])

    assert made(str(whole)).shape == (64, 64, 3)
    assert "rank-4 LoRA" in (whole / "README.md").read_text()
    # The light file alone (a folder holding only it, or the file) is the same ControlNet, rebuilt on the base.
    alone = tmp_path / "light-only"
    alone.mkdir()
    shutil.copy(whole / LIGHT_FILE, alone / LIGHT_FILE)
    for source in (alone, alone / LIGHT_FILE):
        rebuilt = engine.load_controlnet(str(source)).state_dict()
        assert set(rebuilt) == set(a) and all(torch.equal(rebuilt[k], a[k]) for k in a)
        assert np.array_equal(made(str(source)), made(str(whole)))
    assert (alone / LIGHT_FILE).stat().st_size < (whole / "diffusion_pytorch_model.safetensors").stat().st_size / 2


def test_the_merged_controlnet_computes_what_the_adapted_one_does(tmp_path):
    """The saved plain ControlNet is the LoRA merged in: same outputs as the adapted copy (within float rounding of
    W + BA against W x + B(A x), 1e-5), and the light file holds exactly the trained weights."""
    import diffusers
    from safetensors.torch import load_file

    from cnet.tiny_dit import build_tiny_flux_components
    from train.light import LIGHT_FILE, add_lora, save, trained_state

    net = build_tiny_flux_components(0, tokenizer_dir=tmp_path / "tok")["controlnet"]
    count = add_lora(net, 4)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # B starts at zero: give the update a value to merge
    inputs = dict(hidden_states=torch.randn(1, 16, 64), controlnet_cond=torch.randn(1, 16, 64),
                  encoder_hidden_states=torch.randn(1, 8, 32), pooled_projections=torch.randn(1, 32),
                  timestep=torch.tensor([0.5]), guidance=torch.tensor([3.5]), img_ids=torch.zeros(16, 3),
                  txt_ids=torch.zeros(8, 3), return_dict=False)
    with torch.no_grad():
        before = net(**inputs)
    save(net, tmp_path / "merged", 4)  # a checkpoint's save: it must leave the weights being trained as they were
    plain = diffusers.FluxControlNetModel.from_pretrained(tmp_path / "merged")
    with torch.no_grad():
        want, got = net(**inputs), plain(**inputs)
    assert all(torch.equal(a, b) for a, b in zip([*before[0], *before[1]], [*want[0], *want[1]]))
    for a, b in zip([*want[0], *want[1]], [*got[0], *got[1]]):
        assert torch.allclose(a, b, atol=1e-5)
    light = load_file(str(tmp_path / "merged" / LIGHT_FILE))
    assert set(light) == set(trained_state(net)) and sum(v.numel() for v in light.values()) == count
