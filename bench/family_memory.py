"""Weights each model family holds, from parameter counts of the published architectures (no download, no GPU).

The U-Nets, ControlNets (`from_unet`, as the published ones are made), VAEs and text encoders are built from their
published configs on the meta device (no memory), their parameters counted, and the bytes in fp16 reported: all on
the GPU at once (offload "none"), and the most that model offload keeps there at a time (the U-Net and its
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
    return rows


def main() -> None:
    rows = []
    for name, c in family_counts().items():
        everything = c["unet"] + c["controlnet"] + c["vae"] + c["text_encoders"]
        offloaded = max(c["unet"] + c["controlnet"], c["largest_text_encoder"], c["vae"])
        rows.append([name, f"{c['unet'] / 1e6:.1f}", f"{c['controlnet'] / 1e6:.1f}", f"{c['text_encoders'] / 1e6:.1f}",
                     f"{c['vae'] / 1e6:.1f}", f"{everything * 2 / GIB:.2f}", f"{offloaded * 2 / GIB:.2f}"])
    record("Weights per model family, fp16 (parameter counts of the published architectures)",
           ["family", "U-Net (M)", "ControlNet (M)", "text encoders (M)", "VAE (M)", "all on the GPU (GiB)",
            "model offload: most at once (GiB)"], rows,
           "Counted on the meta device from the architectures' configs (SD 1.5, SD 2.1-768, SDXL 1.0; ControlNets "
           "made with from_unet as the published ones are; one ControlNet). Weights only: activations, the CUDA "
           "context and workspaces come on top (bench/gpu.py measures them on a card).")


if __name__ == "__main__":
    main()
