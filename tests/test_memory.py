"""The memory plan's first half: parameter counts and sizes read from configs on the meta device, checked against
the parameter counts the model authors publish (FLUX.1 [dev]: 12 billion; SD3.5 Large: 8.1 billion; CLIP ViT-L/14's
text encoder: 123 million), with the published architectures' config values."""

from __future__ import annotations

import pytest

from bench.family_memory import FLUX_DEV, SD35_LARGE  # the published architectures' configs, kept once
from bench.family_memory import T5_XXL as T5_XXL_CONFIG
from cnet.memory import BYTES_PER_PARAM, PartSize, count_params, model_parts, plan_memory
from cnet.tiny_dit import save_tiny_dit_models

CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
              max_position_embeddings=77, vocab_size=49408, projection_dim=768)


@pytest.mark.slow
def test_the_published_architectures_count_as_their_authors_say():
    flux = count_params("diffusers", "FluxTransformer2DModel", FLUX_DEV)
    assert round(flux / 1e9) == 12 and 11.8e9 < flux < 12.0e9
    assert round(count_params("diffusers", "SD3Transformer2DModel", SD35_LARGE) / 1e8) == 81
    assert round(count_params("transformers", "CLIPTextModel", CLIP_L) / 1e6) == 123
    assert count_params("transformers", "T5EncoderModel", T5_XXL_CONFIG) == T5_XXL
    assert count_params("transformers", "CLIPTextModelWithProjection", CLIP_G_CONFIG) == CLIP_G
    assert count_params("diffusers", "FluxControlNetModel", {**FLUX_DEV, "num_layers": 4,
                                                             "num_single_layers": 10}) == FLUX_CONTROLNET
    up = {"up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]}
    assert count_params("diffusers", "UNet2DConditionModel", {**SDXL, **up}) == SDXL_UNET  # 2.6B, as published
    assert count_params("diffusers", "ControlNetModel", SDXL) == SDXL_CONTROLNET
    # The "about 24 GB in bf16 for the transformer alone"; NF4 about a quarter of that.
    part = PartSize("transformer", "FluxTransformer2DModel", flux)
    assert 23.5 < part.gigabytes("bfloat16") < 24.0 and 6.5 < part.gigabytes("nf4") < 7.0


def test_a_pipeline_folder_is_counted_part_by_part_without_loading(tmp_path):
    base, controlnet = save_tiny_dit_models(tmp_path, family="flux")
    parts = {part.name: part for part in model_parts(base)}
    assert set(parts) == {"transformer", "text_encoder", "text_encoder_2", "vae"}  # no tokenizer or scheduler
    import diffusers

    real = diffusers.FluxTransformer2DModel.from_pretrained(base, subfolder="transformer")
    assert parts["transformer"].params == sum(p.numel() for p in real.parameters())
    (net,) = model_parts(controlnet)
    assert net.class_name == "FluxControlNetModel" and net.params > 0
    with pytest.raises(ValueError, match="weights='fp8' is not one of"):
        net.gigabytes("fp8")
    assert set(BYTES_PER_PARAM) >= {"bfloat16", "int8", "nf4"}


# Meta-device counts of the published configs (checked in the first test): T5 v1.1 XXL's encoder (FLUX.1's
# text_encoder_2, SD3.5's text_encoder_3; 4.76B without its 132M token embedding), OpenCLIP bigG's text encoder,
# a FLUX.1 ControlNet of diffusers' default depth (4 double + 10 single blocks), SDXL's U-Net and ControlNet.
T5_XXL, CLIP_G, FLUX_CONTROLNET = 4_893_906_944, 694_659_840, 2_952_654_336
SDXL_UNET, SDXL_CONTROLNET = 2_567_463_684, 1_251_014_160
CLIP_G_CONFIG = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                     max_position_embeddings=77, vocab_size=49408, projection_dim=1280, hidden_act="gelu")
SDXL = dict(block_out_channels=[320, 640, 1280], transformer_layers_per_block=[1, 2, 10],
            attention_head_dim=[5, 10, 20], cross_attention_dim=2048, addition_embed_type="text_time",
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, use_linear_projection=True,
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"])


def flux_parts():
    """FLUX.1-dev's parts as its configs count them (the transformer's count is the meta-device one above)."""
    return [PartSize("transformer", "FluxTransformer2DModel", 11_901_408_320),
            PartSize("text_encoder", "CLIPTextModel", 123_060_480),
            PartSize("text_encoder_2", "T5EncoderModel", T5_XXL), PartSize("vae", "AutoencoderKL", 83_819_683),
            PartSize("controlnet", "FluxControlNetModel", FLUX_CONTROLNET)]


@pytest.mark.parametrize("card, placed, fits", [
    (80, {"transformer": "bfloat16", "text_encoder_2": "bfloat16"}, True),  # an H100: nothing to give up
    (40, {"transformer": "bfloat16", "text_encoder_2": "offloaded"}, True),  # T5 first: no quality lost
    (24, {"transformer": "int8", "text_encoder_2": "offloaded"}, True),
    (20, {"transformer": "nf4", "text_encoder_2": "offloaded"}, True),
    (12, {"transformer": "offloaded", "text_encoder_2": "offloaded"}, True),  # slow, but it runs
    (8, {"transformer": "offloaded", "text_encoder_2": "offloaded"}, False),  # the ControlNet alone is 5.9 GB
])
def test_the_plan_gives_up_the_least_that_makes_flux_fit_the_card(card, placed, fits):
    plan = plan_memory("FLUX.1-dev", flux_parts(), card, family="flux", denoiser="transformer")
    got = {p.part.name: ("offloaded" if p.where == "offloaded" else p.weights) for p in plan.placements}
    assert {k: got[k] for k in placed} == placed and plan.fits is fits
    assert got["controlnet"] == "bfloat16" and got["vae"] == "bfloat16"  # they stay whole on the card
    if fits:
        assert plan.used_gb <= card


def test_the_status_line_says_where_each_part_lives_and_the_config_quantises_only_the_denoiser():
    plan = plan_memory("FLUX.1-dev", flux_parts(), 20, family="flux", denoiser="transformer")
    line = plan.status_line()
    assert line.startswith("FLUX.1-dev: transformer nf4 6.7 GB") and "text_encoder_2 offloaded (9.8 GB" in line
    assert line.endswith("16.8 of 20 GB")
    config = plan.quantization_config()
    assert config.quant_backend == "bitsandbytes_4bit" and config.components_to_quantize == ["transformer"]
    assert config.quant_kwargs["bnb_4bit_quant_type"] == "nf4"
    assert plan_memory("FLUX.1-dev", flux_parts(), 80, family="flux").quantization_config() is None


def test_sdxl_fits_an_8_gb_card_by_offloading_its_text_encoders_and_quantising_its_unet():
    """SDXL (2.6B U-Net, CLIP-L + CLIP-G) with one ControlNet (1.25B) in fp16: whole on 16 GB, on an 8 GB card
    with both text encoders offloaded and the U-Net in NF4 (the ControlNet alone is 2.5 GB)."""
    parts = [PartSize("unet", "UNet2DConditionModel", SDXL_UNET),
             PartSize("text_encoder", "CLIPTextModel", 123_060_480),
             PartSize("text_encoder_2", "CLIPTextModelWithProjection", CLIP_G),
             PartSize("vae", "AutoencoderKL", 83_653_863), PartSize("controlnet", "ControlNetModel", SDXL_CONTROLNET)]
    roomy = plan_memory("SDXL", parts, 16, family="sdxl", half="float16")
    assert not roomy.offloaded() and not roomy.quantized()
    tight = plan_memory("SDXL", parts, 8, family="sdxl", half="float16")
    assert tight.fits and tight.offloaded() == ["text_encoder", "text_encoder_2"] and tight.used_gb <= 8
    assert tight.quantized() == {"unet": "nf4"}


def test_the_readme_table_is_what_the_plan_picks():
    """The README's memory table for FLUX.1-dev is the plan's own output (weights on the card, without the room
    kept for activations)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    rows = re.findall(r"^\| (\d+) GB \| [^|]+ \| ([\d.]+) GB \|$", readme, re.M)
    assert [card for card, _ in rows] == ["80", "40", "24", "20", "12"]
    for card, weights in rows:
        plan = plan_memory("FLUX.1-dev", flux_parts(), float(card), family="flux", denoiser="transformer")
        assert f"{plan.used_gb - plan.reserve_gb:.1f}" == weights


@pytest.mark.slow
def test_light_training_of_a_flux_controlnet_trains_under_five_percent_of_the_copy():
    """The README's training figures: a FLUX.1 ControlNet of diffusers' default depth (4 + 10 blocks) trained whole
    keeps 2.95B weights with fp32 gradients and AdamW states (16 bytes each: 47.2 GB); as a rank-16 LoRA with its
    zero layers whole, 136.9M (2.2 GB), counted on the meta device."""
    import diffusers
    from accelerate import init_empty_weights

    from train.light import add_lora

    with init_empty_weights():
        net = diffusers.FluxControlNetModel.from_config({**FLUX_DEV, "num_layers": 4, "num_single_layers": 10})
    assert sum(p.numel() for p in net.parameters()) == FLUX_CONTROLNET
    trained = add_lora(net, 16)
    assert trained == 136_885_248 and trained / FLUX_CONTROLNET < 0.05
    assert round(FLUX_CONTROLNET * 16 / 1e9, 1) == 47.2 and round(trained * 16 / 1e9, 1) == 2.2
