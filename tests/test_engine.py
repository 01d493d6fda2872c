"""The engine on tiny models: exact prompts, equality with diffusers, seeds, metadata, sharing, cancel."""

import numpy as np
import pytest
import torch

from cnet.engine import Engine, GenerationCancelled
from cnet.request import DEFAULT_PROMPT, ControlUnit, GenerationRequest, PromptMode
from cnet.result import read_metadata, request_from_metadata
from common.models import ModelUnavailableError

FAST = dict(num_inference_steps=3)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def make_request(cond_map, controlnet, **kw):
    return GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(controlnet))], **{**FAST, **kw})


def text_encoder_inputs(engine):
    """Record every input_ids batch that reaches the text encoder."""
    seen = []
    encoder = engine.load_base()["text_encoder"]
    handle = encoder.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(
        (args[0] if args else kwargs["input_ids"]).clone()), with_kwargs=True)
    return seen, handle


def encode(engine, text):
    tokenizer = engine.load_base()["tokenizer"]
    return tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


@pytest.mark.parametrize("mode, prompt, added", [
    ("none", "", "best quality"),
    ("default", "", ""),
    ("custom", "a red circle", ""),
    ("custom", "a red circle", "best quality"),
])
def test_each_prompt_mode_sends_exactly_its_text(engine, tiny_models, cond_map, mode, prompt, added):
    expected = {"none": "", "default": DEFAULT_PROMPT, "custom": prompt}[mode]
    if added and mode != "none":
        expected = f"{expected}, {added}"
    seen, handle = text_encoder_inputs(engine)
    try:
        result = engine.generate(make_request(cond_map, tiny_models[1], prompt_mode=mode, prompt=prompt,
                                              added_prompt=added, seed=0, num_inference_steps=1))
    finally:
        handle.remove()
    assert result.prompt == expected
    assert result.metadata[0]["prompt_used"] == expected
    # Two encoder calls: the conditional prompt first, then the (empty) negative prompt for CFG.
    assert torch.equal(seen[0], encode(engine, expected))
    assert torch.equal(seen[1], encode(engine, ""))


def test_auto_mode_captions_with_real_blip(engine, tiny_models, cond_map):
    photo = cond_map.rotate(90)
    caption = engine.caption(photo)
    assert isinstance(caption, str) and caption  # a random BLIP still decodes words from its vocabulary
    seen, handle = text_encoder_inputs(engine)
    try:
        result = engine.generate(make_request(cond_map, tiny_models[1], prompt_mode="auto", source_image=photo,
                                              seed=0, num_inference_steps=1))
    finally:
        handle.remove()
    assert result.prompt == caption == result.metadata[0]["caption"]
    assert torch.equal(seen[0], encode(engine, caption))


def test_matches_a_direct_diffusers_call(engine, tiny_models, cond_map):
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline

    base, cn = tiny_models
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        base, controlnet=ControlNetModel.from_pretrained(cn), safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    expected = pipe(DEFAULT_PROMPT, image=cond_map, num_inference_steps=4, guidance_scale=9.0, negative_prompt="",
                    num_images_per_prompt=2, generator=[torch.Generator().manual_seed(s) for s in (7, 8)],
                    controlnet_conditioning_scale=0.8, control_guidance_end=0.75).images
    result = engine.generate(GenerationRequest(
        units=[ControlUnit(cond_map, controlnet=str(cn), strength=0.8, end=0.75)], num_inference_steps=4,
        num_images=2, seed=7))
    for ours, theirs in zip(result.images, expected, strict=True):
        assert np.array_equal(pixels(ours), pixels(theirs))
    assert [m["seed"] for m in result.metadata] == [7, 8]


def test_multi_controlnet_matches_diffusers_and_shares_the_base(engine, tiny_models, second_controlnet, cond_map):
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline

    base, cn = tiny_models
    other_map = cond_map.transpose(0)
    units = [ControlUnit(cond_map, controlnet=str(cn), strength=1.0),
             ControlUnit(other_map, kind="depth", controlnet=str(second_controlnet), strength=0.5, start=0.2)]
    single = engine.pipeline(units[:1])
    double = engine.pipeline(units)
    for name in ("unet", "vae", "text_encoder", "tokenizer"):
        assert getattr(single, name) is getattr(double, name) is engine.load_base()[name]
    assert double.controlnet.nets[0] is single.controlnet  # ControlNets are cached, not reloaded

    result = engine.generate(GenerationRequest(units=units, seed=3, **FAST))
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        base, controlnet=[ControlNetModel.from_pretrained(cn), ControlNetModel.from_pretrained(second_controlnet)],
        safety_checker=None, requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    expected = pipe(DEFAULT_PROMPT, image=[cond_map, other_map], num_inference_steps=3, guidance_scale=9.0,
                    generator=[torch.Generator().manual_seed(3)], controlnet_conditioning_scale=[1.0, 0.5],
                    control_guidance_start=[0.0, 0.2], control_guidance_end=[1.0, 1.0]).images[0]
    assert np.array_equal(pixels(result.images[0]), pixels(expected))
    assert [c["kind"] for c in result.metadata[0]["controlnets"]] == ["canny", "depth"]


def test_switching_controlnets_keeps_the_base(engine, tiny_models, second_controlnet, cond_map):
    base_before = dict(engine.load_base())
    a = engine.generate(make_request(cond_map, tiny_models[1], seed=1))
    b = engine.generate(make_request(cond_map, second_controlnet, seed=1))
    assert all(engine.load_base()[k] is v for k, v in base_before.items())
    assert not np.array_equal(pixels(a.images[0]), pixels(b.images[0]))  # the ControlNet really steers


def test_seed_determinism_and_random_seed_reported(engine, tiny_models, cond_map):
    a = engine.generate(make_request(cond_map, tiny_models[1], seed=11))
    b = engine.generate(make_request(cond_map, tiny_models[1], seed=11))
    c = engine.generate(make_request(cond_map, tiny_models[1], seed=12))
    assert np.array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert not np.array_equal(pixels(a.images[0]), pixels(c.images[0]))
    r = engine.generate(make_request(cond_map, tiny_models[1]))
    again = engine.generate(make_request(cond_map, tiny_models[1], seed=r.seed))
    assert np.array_equal(pixels(r.images[0]), pixels(again.images[0]))


def test_batch_image_reproduces_alone_from_its_seed(engine, tiny_models, cond_map):
    batch = engine.generate(make_request(cond_map, tiny_models[1], seed=20, num_images=3))
    alone = engine.generate(make_request(cond_map, tiny_models[1], seed=22))
    # Same noise (one generator per image), but another batch size: float kernels may round differently on another
    # machine, so alone is within 1/255 of the batch, not bit for bit (a re-run from metadata repeats the batch).
    difference = np.abs(pixels(batch.images[2]).astype(int) - pixels(alone.images[0]).astype(int))
    assert difference.max() <= 1 and difference.mean() < 0.01


def test_metadata_round_trip_reruns_to_the_same_pixels(engine, tiny_models, cond_map, tmp_path):
    result = engine.generate(make_request(cond_map, tiny_models[1], seed=5, num_images=2, prompt_mode="custom",
                                          prompt="a blue circle", negative_prompt="low quality",
                                          scheduler="unipc", guidance_scale=5.0))
    paths = result.save(tmp_path)
    meta = read_metadata(paths[1])
    assert meta["seed"] == 6 and meta["prompt_used"] == "a blue circle" and meta["scheduler"] == "unipc"
    assert meta["negative_prompt"] == "low quality" and meta["base_model"]["model"] == str(tiny_models[0])
    assert meta["controlnets"][0]["model"] == str(tiny_models[1])
    request, base, index = request_from_metadata(meta, tmp_path)
    assert base == str(tiny_models[0]) and (request.num_images, request.seed, index) == (2, 5, 1)
    rerun = engine.generate(request)  # the same batch again: bit for bit on any machine
    assert np.array_equal(pixels(rerun.images[index]), pixels(result.images[1]))
    assert rerun.metadata[index] == result.metadata[1]


def test_auto_mode_rerun_reuses_the_recorded_caption(engine, tiny_models, cond_map, tmp_path):
    result = engine.generate(make_request(cond_map, tiny_models[1], seed=2, prompt_mode="auto"))
    request, _, index = request_from_metadata(read_metadata(result.save(tmp_path)[0]), tmp_path)
    assert request.prompt_mode == PromptMode.AUTO and request.caption == result.prompt and index == 0
    assert np.array_equal(pixels(engine.generate(request).images[0]), pixels(result.images[0]))


@pytest.mark.parametrize("scheduler", ["ddim", "unipc", "euler_a", "dpmpp_2m", "dpmpp_2m_karras"])
def test_every_scheduler_runs(engine, tiny_models, cond_map, scheduler):
    result = engine.generate(make_request(cond_map, tiny_models[1], seed=0, scheduler=scheduler))
    pipe = engine.pipeline([ControlUnit(cond_map, controlnet=str(tiny_models[1]))], scheduler)
    assert type(pipe.scheduler).__name__ == {"ddim": "DDIMScheduler", "unipc": "UniPCMultistepScheduler",
                                             "euler_a": "EulerAncestralDiscreteScheduler"}.get(
        scheduler, "DPMSolverMultistepScheduler")
    assert result.images[0].size == (64, 64) and np.asarray(result.images[0]).std() > 0


def test_progress_and_cancel_within_one_step(engine, tiny_models, cond_map):
    steps = []
    with pytest.raises(GenerationCancelled, match="after step 2 of 10"):
        engine.generate(make_request(cond_map, tiny_models[1], seed=0, num_inference_steps=10),
                        progress=lambda i, n: steps.append((i, n)), should_stop=lambda: len(steps) >= 2)
    assert steps == [(1, 10), (2, 10)]
    # The engine serves the next request normally.
    assert engine.generate(make_request(cond_map, tiny_models[1], seed=0)).images


def test_size_defaults_to_the_map_and_can_be_set(engine, tiny_models, cond_map):
    wide = cond_map.resize((100, 70))
    result = engine.generate(make_request(wide, tiny_models[1], seed=0, num_inference_steps=1))
    assert result.images[0].size == (96, 64)  # rounded down to multiples of 8
    result = engine.generate(make_request(cond_map, tiny_models[1], seed=0, num_inference_steps=1, width=128,
                                          height=64))
    assert result.images[0].size == (128, 64)


def test_env_var_overrides_pick_local_models(monkeypatch, tiny_models, cond_map):
    monkeypatch.setenv("CNET_BASE_MODEL", str(tiny_models[0]))
    monkeypatch.setenv("CNET_CONTROLNET_SCRIBBLE", str(tiny_models[1]))
    engine = Engine(device="cpu")
    assert engine._base is None  # nothing is loaded before the first request
    result = engine.generate(GenerationRequest(units=[ControlUnit(cond_map, kind="scribble")], seed=0, **FAST))
    assert result.metadata[0]["controlnets"][0] == {"kind": "scribble", "model": str(tiny_models[1]),
                                                    "revision": None, "strength": 1.0, "start": 0.0, "end": 1.0,
                                                    "control_mode": "balanced"}


def test_single_file_controlnet_loads_with_a_config_folder(tiny_models, tmp_path, cond_map):
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    reference = ControlNetModel.from_pretrained(tiny_models[1])
    single = tmp_path / "my_controlnet.safetensors"
    save_file(reference.state_dict(), single)
    engine = Engine(str(tiny_models[0]), device="cpu", single_file_config=str(tiny_models[1]))
    loaded = engine.load_controlnet(str(single))
    for (name, a), (_, b) in zip(reference.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    meta = engine.generate(make_request(cond_map, single, seed=0)).metadata[0]
    assert meta["controlnets"][0]["revision"].startswith("sha256:")


def test_a_single_file_controlnet_reads_its_own_config_beside_a_base_config(tiny_models, tmp_path, cond_map):
    # The base's config folder (a pipeline) and a ControlNet's (a ControlNet) are different folders: one shared
    # --single-file-config could not describe both.
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    single = tmp_path / "my_controlnet.safetensors"
    save_file(ControlNetModel.from_pretrained(tiny_models[1]).state_dict(), single)
    engine = Engine(str(tiny_models[0]), device="cpu", single_file_config=str(tiny_models[0]),
                    controlnet_config=str(tiny_models[1]))
    assert engine.generate(make_request(cond_map, single, seed=0)).images[0].size == (64, 64)
    wrong = Engine(str(tiny_models[0]), device="cpu", single_file_config=str(tiny_models[0]))
    with pytest.raises(ModelUnavailableError, match="--controlnet-config pointing at a diffusers ControlNet folder"):
        wrong.load_controlnet(str(single))


def test_tiny_model_folders_load_in_diffusers_directly(tiny_models):
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        tiny_models[0], controlnet=ControlNetModel.from_pretrained(tiny_models[1]))
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 64


def test_whole_numbers_from_a_ui_are_accepted(engine, tiny_models, cond_map):
    # Sliders and JSON send 1 rather than 1.0; diffusers insists on floats for a single ControlNet.
    request = GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]), strength=1, end=1)],
                                guidance_scale=9, num_inference_steps=1, seed=0)
    as_floats = GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]))],
                                  num_inference_steps=1, seed=0)
    assert np.array_equal(pixels(engine.generate(request).images[0]), pixels(engine.generate(as_floats).images[0]))


@pytest.mark.parametrize("start, end, expected_calls", [(0.0, 0.5, 5), (0.0, 1.0, 10), (0.3, 1.0, 7)])
def test_controlnet_is_not_run_outside_its_window_and_pixels_do_not_change(tiny_models, cond_map, start, end,
                                                                           expected_calls):
    fast = Engine(str(tiny_models[0]), device="cpu")
    plain = Engine(str(tiny_models[0]), device="cpu", skip_inactive_controlnet=False)
    request = lambda: GenerationRequest(  # noqa: E731
        units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]), start=start, end=end)], num_inference_steps=10,
        seed=2)
    net = fast.load_controlnet(str(tiny_models[1]))
    calls = []
    hook = net.conv_in.register_forward_pre_hook(lambda m, a: calls.append(1))  # runs only in a real forward
    try:
        ours = fast.generate(request())
    finally:
        hook.remove()
    # With start > 0 the very first (inactive) step runs once to learn the output shapes; later ones are skipped.
    assert len(calls) == expected_calls + (1 if start > 0 else 0)
    assert np.array_equal(pixels(ours.images[0]), pixels(plain.generate(request()).images[0]))


def cuda_oom():
    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def cpu_oom():
    torch.empty(1 << 62, dtype=torch.uint8)  # the CPU allocator's real failure: a plain RuntimeError


def python_oom():
    raise MemoryError()


@pytest.mark.parametrize("run_out", [cuda_oom, cpu_oom, python_oom])
def test_out_of_memory_is_reported_and_the_next_request_succeeds(tiny_models, cond_map, monkeypatch, run_out):
    from cnet.engine import GenerationFailed

    engine = Engine(str(tiny_models[0]), device="cpu")
    unet = engine.load_base()["unet"]
    original = type(unet).forward
    calls = {"n": 0}

    def failing_once(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # fail in the middle of the run, as a real OOM would
            run_out()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(unet), "forward", failing_once)
    with pytest.raises(GenerationFailed, match=r"Out of cpu memory at 64x64 with 1 image\(s\).*Try fewer images"):
        engine.generate(make_request(cond_map, tiny_models[1], seed=0))
    result = engine.generate(make_request(cond_map, tiny_models[1], seed=0))
    assert result.images[0].size == (64, 64)


def test_other_runtime_errors_are_not_called_out_of_memory(tiny_models, cond_map, monkeypatch):
    engine = Engine(str(tiny_models[0]), device="cpu")
    unet = engine.load_base()["unet"]
    monkeypatch.setattr(type(unet), "forward", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        engine.generate(make_request(cond_map, tiny_models[1], seed=0))


def test_nan_output_is_reported_instead_of_a_black_image(tiny_models, cond_map, monkeypatch):
    from cnet.engine import GenerationFailed

    engine = Engine(str(tiny_models[0]), device="cpu")
    vae = engine.load_base()["vae"]
    original = type(vae).decode

    def nan_decode(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        (out[0] if isinstance(out, tuple) else out.sample)[:] = float("nan")
        return out

    monkeypatch.setattr(type(vae), "decode", nan_decode)
    with pytest.raises(GenerationFailed, match="NaN"):
        engine.generate(make_request(cond_map, tiny_models[1], seed=0))


def test_cpu_offload_changes_no_pixel_and_survives_switching(tiny_models, second_controlnet, cond_map):
    # On this CPU-only machine the "accelerator" is the CPU itself, but the hooks diffusers installs are the real
    # ones: this checks that they compose with the shared base, the ControlNet cache and the skip fast path.
    plain = Engine(str(tiny_models[0]), device="cpu")
    offloaded = Engine(str(tiny_models[0]), device="cpu", offload="model")
    first = make_request(cond_map, tiny_models[1], seed=3, num_images=2)
    second = make_request(cond_map, second_controlnet, seed=4)
    for request in (first, second, first):  # switch ControlNets twice: hooks are removed and reinstalled
        ours = offloaded.generate(request)
        theirs = plain.generate(request)
        assert len(ours.images) == len(theirs.images) == request.num_images
        # Offload moves weights, not numbers; the per-image VAE decode (slicing) may round 1/255 differently.
        for a, b in zip(ours.images, theirs.images):
            assert np.abs(pixels(a) - pixels(b)).max() <= 1
    assert hasattr(offloaded.load_base()["unet"], "_hf_hook")  # accelerate's offload hook is really there
    assert offloaded.load_base()["vae"].use_slicing


def test_offload_mode_is_validated(tiny_models, monkeypatch):
    with pytest.raises(ValueError, match=r"offload='gpu' is not one of \['none', 'model'\]"):
        Engine(str(tiny_models[0]), device="cpu", offload="gpu")
    monkeypatch.setenv("CNET_OFFLOAD", "lots")
    with pytest.raises(ValueError, match="CNET_OFFLOAD='lots'"):
        Engine(str(tiny_models[0]), device="cpu")
    with pytest.raises(ValueError, match="compile=True cannot be combined with offload='model'"):
        Engine(str(tiny_models[0]), device="cpu", offload="model", compile=True)


def test_live_previews_show_the_latents_forming_without_the_vae(engine, tiny_models, cond_map):
    """Every second step the preview callback gets an RGB picture of the first image's latents (the 4-to-3 linear
    map, cnet/preview.py), at the output's size; the VAE decoder runs once, for the result only."""
    from cnet.preview import latents_to_preview

    decodes = []
    hook = engine.load_base()["vae"].decoder.register_forward_hook(lambda *a: decodes.append(1))
    seen = []
    try:
        result = engine.generate(make_request(cond_map, tiny_models[1], seed=2, num_inference_steps=4),
                                 preview=lambda image, step: seen.append((step, image)), preview_every=2)
    finally:
        hook.remove()
    assert [step for step, _ in seen] == [2, 4] and len(decodes) == 1
    assert all(image.size == result.images[0].size and image.mode == "RGB" for _, image in seen)
    assert not np.array_equal(np.asarray(seen[0][1]), np.asarray(seen[1][1]))  # it changes as it forms
    latents = torch.zeros(1, 4, 8, 8)
    latents[0, 0] = 1.0  # channel 0 alone: its factors (0.3512, 0.2297, 0.3227) in [-1, 1], as pixels
    pixel = np.asarray(latents_to_preview(latents))[0, 0]
    assert pixel.tolist() == [round((0.3512 + 1) * 127.5), round((0.2297 + 1) * 127.5), round((0.3227 + 1) * 127.5)]
