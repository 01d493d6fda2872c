"""The memory plan's first half: parameter counts and sizes read from configs on the meta device, checked against
the parameter counts the model authors publish (FLUX.1 [dev]: 12 billion; SD3.5 Large: 8.1 billion; CLIP ViT-L/14's
text encoder: 123 million), with the published architectures' config values."""

from __future__ import annotations

import pytest

from cnet.memory import BYTES_PER_PARAM, PartSize, count_params, model_parts
from cnet.tiny_dit import save_tiny_dit_models

FLUX_DEV = dict(attention_head_dim=128, guidance_embeds=True, in_channels=64, joint_attention_dim=4096,
                num_attention_heads=24, num_layers=19, num_single_layers=38, patch_size=1, pooled_projection_dim=768,
                axes_dims_rope=[16, 56, 56])
SD35_LARGE = dict(attention_head_dim=64, caption_projection_dim=2432, in_channels=16, joint_attention_dim=4096,
                  num_attention_heads=38, num_layers=38, out_channels=16, patch_size=2, pooled_projection_dim=2048,
                  pos_embed_max_size=192, qk_norm="rms_norm", sample_size=128)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
              max_position_embeddings=77, vocab_size=49408, projection_dim=768)


@pytest.mark.slow
def test_the_published_architectures_count_as_their_authors_say():
    flux = count_params("diffusers", "FluxTransformer2DModel", FLUX_DEV)
    assert round(flux / 1e9) == 12 and 11.8e9 < flux < 12.0e9
    assert round(count_params("diffusers", "SD3Transformer2DModel", SD35_LARGE) / 1e8) == 81
    assert round(count_params("transformers", "CLIPTextModel", CLIP_L) / 1e6) == 123
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
