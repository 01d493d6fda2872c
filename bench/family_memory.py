"""Weights each model family holds, from parameter counts of the published architectures (no download, no GPU).

The denoisers (U-Nets; FLUX.1's and SD3.5 Large's transformers), ControlNets (`from_unet` / `from_transformer`, as
the published ones are made; the DiTs' at diffusers' default depth), VAEs and text encoders are built from their
published configs on the meta device (no memory), their parameters counted, and the bytes in 16 bits reported: all
on the GPU at once (offload "none"), and the most that model offload keeps there at a time (the denoiser and its
ControlNet run together; the text encoders and the VAE run alone). Activations and the CUDA context come on top:
`bench/gpu.py` measures those on a card.

    python -m bench.family_memory
"""

from __future__ import annotations

from bench.common import record

GIB = 2**30

SD15_UNET = dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                 block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
SD2_UNET = dict(sample_size=96, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, use_linear_projection=True)
SDXL_UNET = dict(sample_size=128, cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
                 block_out_channels=(320, 640, 1280), layers_per_block=2, use_linear_projection=True,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), addition_embed_type="text_time",
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12)
OPENCLIP_H = dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                  hidden_act="gelu")
OPENCLIP_BIGG = dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                     hidden_act="gelu", projection_dim=1280)
FLUX_DEV = dict(attention_head_dim=128, guidance_embeds=True, in_channels=64, joint_attention_dim=4096,
                num_attention_heads=24, num_layers=19, num_single_layers=38, patch_size=1, pooled_projection_dim=768,
                axes_dims_rope=[16, 56, 56])
SD35_LARGE = dict(attention_head_dim=64, caption_projection_dim=2432, in_channels=16, joint_attention_dim=4096,
                  num_attention_heads=38, num_layers=38, out_channels=16, patch_size=2, pooled_projection_dim=2048,
                  pos_embed_max_size=192, qk_norm="rms_norm", sample_size=128)
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
              feed_forward_proj="gated-gelu")
DIT_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
               up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=16, layers_per_block=2,
               use_quant_conv=False, use_post_quant_conv=False)


def count(build) -> int:
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = build()
    return sum(p.numel() for p in model.parameters())


def family_counts() -> dict[str, dict[str, int]]:
    from diffusers import ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from cnet.tiny import build_sd15_vae

    vae = count(build_sd15_vae)  # the SD 2.x and SDXL VAEs have the same architecture

    def unet_and_controlnet(config: dict) -> tuple[int, int]:
        from accelerate import init_empty_weights

        with init_empty_weights():
            unet = UNet2DConditionModel(**config)
            controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
        return (sum(p.numel() for p in unet.parameters()), sum(p.numel() for p in controlnet.parameters()))

    rows = {}
    for name, unet_config, encoders in (
        ("sd15", SD15_UNET, [(CLIPTextModel, CLIP_L)]),
        ("sd2", SD2_UNET, [(CLIPTextModel, OPENCLIP_H)]),
        ("sdxl", SDXL_UNET, [(CLIPTextModel, CLIP_L), (CLIPTextModelWithProjection, OPENCLIP_BIGG)]),
    ):
        unet, controlnet = unet_and_controlnet(unet_config)
        text = [count(lambda cls=cls, cfg=cfg: cls(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77,
                                                                  **cfg)))
                for cls, cfg in encoders]
        rows[name] = {"unet": unet, "controlnet": controlnet, "vae": vae, "text_encoders": sum(text),
                      "largest_text_encoder": max(text)}
    rows.update(dit_counts())
    return rows


def dit_counts() -> dict[str, dict[str, int]]:
    """FLUX.1 [dev] and SD3.5 Large: transformer, a ControlNet `from_transformer` (FLUX.1: 4 double + 10 single
    blocks; SD3.5: 12 blocks), their 16-channel VAE, CLIP(s) and T5-XXL."""
    from diffusers import (
        AutoencoderKL,
        FluxControlNetModel,
        FluxTransformer2DModel,
        SD3ControlNetModel,
        SD3Transformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    def clip(cls: type, config: dict) -> int:
        return count(lambda: cls(CLIPTextConfig(vocab_size=49408, max_position_embeddings=77, **config)))

    t5, vae = count(lambda: T5EncoderModel(T5Config(**T5_XXL))), count(lambda: AutoencoderKL(**DIT_VAE))
    flux_text = [clip(CLIPTextModel, CLIP_L), t5]
    sd3_text = [clip(CLIPTextModelWithProjection, {**CLIP_L, "projection_dim": 768}),
                clip(CLIPTextModelWithProjection, OPENCLIP_BIGG), t5]
    return {
        "flux": {"unet": count(lambda: FluxTransformer2DModel(**FLUX_DEV)),
                 "controlnet": count(lambda: FluxControlNetModel(**{**FLUX_DEV, "num_layers": 4,
                                                                    "num_single_layers": 10})),
                 "vae": vae, "text_encoders": sum(flux_text), "largest_text_encoder": max(flux_text)},
        "sd3": {"unet": count(lambda: SD3Transformer2DModel(**SD35_LARGE)),
                "controlnet": count(lambda: SD3ControlNetModel(**{**SD35_LARGE, "num_layers": 12})),
                "vae": vae, "text_encoders": sum(sd3_text), "largest_text_encoder": max(sd3_text)},
    }


def main() -> None:
    rows = []
    for name, c in family_counts().items():
        everything = c["unet"] + c["controlnet"] + c["vae"] + c["text_encoders"]
        offloaded = max(c["unet"] + c["controlnet"], c["largest_text_encoder"], c["vae"])
        rows.append([name, f"{c['unet'] / 1e6:.1f}", f"{c['controlnet'] / 1e6:.1f}", f"{c['text_encoders'] / 1e6:.1f}",
                     f"{c['vae'] / 1e6:.1f}", f"{everything * 2 / GIB:.2f}", f"{offloaded * 2 / GIB:.2f}"])
    record("Weights per model family, fp16 (parameter counts of the published architectures)",
           ["family", "denoiser (M)", "ControlNet (M)", "text encoders (M)", "VAE (M)", "all on the GPU (GiB)",
            "model offload: most at once (GiB)"], rows,
           "Counted on the meta device from the architectures' configs (SD 1.5, SD 2.1-768, SDXL 1.0, FLUX.1 [dev], "
           "SD3.5 Large; ControlNets made with from_unet / from_transformer as the published ones are, the DiTs' at "
           "diffusers' default depth; one ControlNet). Weights only: activations, the CUDA "
           "context and workspaces come on top (bench/gpu.py measures them on a card).")


if __name__ == "__main__":
    main()
