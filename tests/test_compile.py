"""torch.compile of the denoiser (cnet/compiled.py): shape buckets, warm-up, no recompiles within the buckets (the
skip-inactive path included), uncompiled runs outside them, and q/k/v fusion taken off while LoRAs are loaded."""

import numpy as np
import pytest

from cnet.compiled import ShapeBuckets, compile_count
from cnet.engine import Engine
from cnet.request import ControlUnit, GenerationRequest, LoraRef
from cnet.tiny import save_tiny_lora


@pytest.mark.parametrize("sizes, batches, expected", [
    ("512x512", "1", ((512, 512),)),
    (" 768x512 , 512*768,768x512", "2,1,2", ((768, 512), (512, 768))),
])
def test_buckets_read_sizes_and_batches(sizes, batches, expected):
    buckets = ShapeBuckets.parse(sizes, batches)
    assert buckets.sizes == expected
    assert buckets.batches == tuple(sorted({int(b) for b in batches.split(",")}))
    # Each size and batch, with and without the classifier-free-guidance doubling, in latent cells.
    assert (2 * buckets.batches[-1], expected[0][1] // 8, expected[0][0] // 8) in buckets.latent_keys()
    assert (buckets.batches[0], expected[0][1] // 8, expected[0][0] // 8) in buckets.latent_keys()


@pytest.mark.parametrize("sizes, batches, message", [
    ("512", "1", "'512' is not WIDTHxHEIGHT"),
    ("500x512", "1", "'500x512'"),
    ("512x512", "one", "compile batches 'one'"),
    ("512x512", "0", "batch sizes >= 1"),
    ("", "1", "at least one size"),
])
def test_bad_buckets_are_named(sizes, batches, message):
    with pytest.raises(ValueError, match=message):
        ShapeBuckets.parse(sizes, batches)


def test_warm_up_needs_compile_and_buckets(tiny_models):
    with pytest.raises(ValueError, match="CNET_COMPILE_SIZES"):
        Engine(str(tiny_models[0]), device="cpu").warm_up()


def _request(tiny_models, cond_map, **settings):
    unit = settings.pop("unit", {})
    return GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]), **unit)], seed=3,
                             num_inference_steps=3, **settings)


def _pixels(engine, request):
    return np.asarray(engine.generate(request).images[0], dtype=np.int16)


@pytest.mark.slow
def test_compiled_runs_within_the_warmed_buckets_never_recompile(tiny_models, cond_map, tmp_path, monkeypatch):
    monkeypatch.setenv("CNET_COMPILE_CACHE", str(tmp_path / "inductor"))
    compiled = Engine(str(tiny_models[0]), device="cpu", compile=True,
                      compile_buckets=ShapeBuckets.parse("64x64", "1"))
    plain = Engine(str(tiny_models[0]), device="cpu")
    report = compiled.warm_up(controlnet=str(tiny_models[1]))
    assert [(r["width"], r["height"], r["batch"], r["guidance"]) for r in report] == [(64, 64, 1, 9.0),
                                                                                     (64, 64, 1, 1.0)]
    # U-Net, ControlNet and VAE decoder with CFG; then U-Net and ControlNet at the single batch (same decoder).
    assert [r["graphs_compiled"] for r in report] == [3, 2]
    assert any((tmp_path / "inductor").rglob("*")), "inductor wrote no cache to CNET_COMPILE_CACHE"
    before = compile_count()
    for settings in ({}, {"unit": {"end": 0.5}}, {"guidance_scale": 1.0}, {"unit": {"strength": 0.0}}):
        request = _request(tiny_models, cond_map, **settings)
        ours, theirs = _pixels(compiled, request), _pixels(plain, request)
        # Compiled kernels may round differently (fused ops, other reduction orders): within 3/255 per pixel.
        assert np.abs(ours - theirs).max() <= 3, settings
    assert compile_count() == before, "a run within the warmed buckets recompiled"
    # Outside the buckets (another width): the models' own forward, so no compile and diffusers' exact pixels.
    request = _request(tiny_models, cond_map, width=96)
    assert np.array_equal(_pixels(compiled, request), _pixels(plain, request))
    assert compile_count() == before


@pytest.mark.slow
def test_qkv_fusion_is_taken_off_while_loras_are_loaded(tiny_models, cond_map, tmp_path):
    lora = save_tiny_lora(tiny_models[0], tmp_path / "lora")
    engine = Engine(str(tiny_models[0]), device="cpu", compile=True,
                    compile_buckets=ShapeBuckets.parse("64x64", "1"))
    pipe = engine.pipeline([ControlUnit(cond_map, controlnet=str(tiny_models[1]))])
    unet = pipe.unet
    assert unet._cnet_qkv_fused and pipe.controlnet._cnet_qkv_fused
    engine.use_loras(pipe, [LoraRef(str(lora), 0.8)])
    assert not unet._cnet_qkv_fused  # peft's layers wrap to_q / to_k / to_v: a fused to_qkv would skip them
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"AttnProcessor2_0"}
    engine.use_loras(pipe, [])
    assert unet._cnet_qkv_fused
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"FusedAttnProcessor2_0"}


def test_a_public_deployment_compiles_only_the_warmed_buckets(tiny_models, cond_map, tmp_path, monkeypatch, caplog):
    """CNET_COMPILE=1 with no sizes on a public deployment: each new size a visitor sent compiled for minutes on the
    shared queue. Now that runs uncompiled (named in the log), and with buckets only the default engine compiles."""
    from webui.service import Studio, UnitInput
    from webui.settings import PUBLIC_LIMITS, AppSettings

    monkeypatch.setenv("CNET_BASE_MODEL", str(tiny_models[0]))
    monkeypatch.setenv("CNET_CONTROLNET_CANNY", str(tiny_models[1]))
    monkeypatch.setenv("CNET_COMPILE", "1")
    monkeypatch.delenv("CNET_COMPILE_SIZES", raising=False)
    public = Studio(AppSettings(public=True, limits=PUBLIC_LIMITS, output_dir=tmp_path))
    before = compile_count()
    for size in (64, 128):
        public.generate([UnitInput("map", cond_map)], num_inference_steps=1, width=size, height=size, seed=1)
    assert compile_count() == before and public.engine.compile is False
    assert "CNET_COMPILE=1 without CNET_COMPILE_SIZES" in caplog.text
    monkeypatch.setenv("CNET_COMPILE_SIZES", "64x64")
    buckets = Studio(AppSettings(public=True, limits=PUBLIC_LIMITS, output_dir=tmp_path))
    assert buckets.engine_for(None).compile is True  # the default engine, warmed at start-up
    assert buckets.engine_for("some/visitor-model").compile is False  # a visitor's base model never compiles
    assert Studio(AppSettings(output_dir=tmp_path)).engine.compile is True  # locally, as CNET_COMPILE says
