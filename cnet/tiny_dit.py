"""Tiny random-weight FLUX.1 and SD3.5 models, built from configs, for offline tests of the DiT families.

The real classes with tiny configs: a FluxTransformer2DModel / SD3Transformer2DModel and their ControlNets, CLIP and
T5 text encoders, a narrow VAE of the real latent shape (16 channels, 8x down), the flow-matching scheduler. T5's
tokenizer is a SentencePiece model upstream; here it is a Unigram model over a few words (`tokenizers`), saved as
T5TokenizerFast's `tokenizer.json`, so nothing is downloaded and no sentencepiece package is needed.
`save_tiny_dit_models(..., family="flux" | "sd3")` writes them in diffusers layout, so `from_pretrained` runs for
real.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .tiny import BASE_WORDS, build_clip_tokenizer

T5_MAX_LENGTH = 512  # FLUX.1-dev's and SD3's T5 read up to 512 tokens


def build_t5_tokenizer(out_dir: str | Path, words: Iterable[str] = BASE_WORDS) -> Any:
    """A T5TokenizerFast over `words` (whole words, then single letters for anything else), saved to `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + w, -1.0) for w in dict.fromkeys(words)]
    pieces += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789,.'-"]
    model = Tokenizer(models.Unigram(pieces, unk_id=2))
    model.pre_tokenizer = pre_tokenizers.Metaspace()
    model.decoder = decoders.Metaspace()
    model.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = T5TokenizerFast(tokenizer_object=model, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                extra_ids=0, model_max_length=T5_MAX_LENGTH)
    tokenizer.save_pretrained(str(out_dir))
    return T5TokenizerFast.from_pretrained(str(out_dir))


def _t5(tokenizer: Any) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)).eval()


def _clip_config(tokenizer: Any) -> dict[str, Any]:
    return dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_attention_heads=4,
                num_hidden_layers=2, max_position_embeddings=77, projection_dim=32,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)


# The DiT families' VAE shape: 16 latent channels, 8x down (FLUX.1 packs 2x2 latents into 64-wide tokens); narrow.
LATENT_CHANNELS = 16


def _vae() -> Any:
    """A narrow four-block VAE of the DiT families' shape (16 latent channels, 8x down, a latent shift)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(sample_size=64, in_channels=3, out_channels=3, block_out_channels=(8, 8, 8, 8),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         layers_per_block=1, latent_channels=LATENT_CHANNELS, norm_num_groups=2,
                         use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)


def save_tiny_taef(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random AutoencoderTiny of the DiT families' latent shape (TAEF1's / TAESD3's architecture: 8x down,
    16 latent channels, the VAE's shift and scale), for `fast_decode` tests (CNET_TINY_VAE); returns its folder."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=LATENT_CHANNELS,
                    shift_factor=0.0609, scaling_factor=1.5035).eval().save_pretrained(out_dir)
    return Path(out_dir)


def wake_zero_layers(controlnet: Any, std: float = 0.1) -> None:
    """A DiT ControlNet starts its output blocks and condition embedder at zero (as the paper's zero convolutions):
    give every all-zero weight small random values, so the tiny model's map changes its output (the U-Net families'
    `wake_zero_convolutions` does the same)."""
    import torch

    with torch.no_grad():
        for name, param in controlnet.named_parameters():
            if name.endswith("weight") and param.ndim > 1 and not param.any():
                param.normal_(0.0, std)


def build_tiny_flux_components(seed: int = 0, tokenizer_dir: str | Path | None = None) -> dict[str, Any]:
    """Tiny FLUX.1-shaped components (a transformer with one double and one single block, CLIP + T5), a
    FluxControlNetModel of the same width and a Union one (control types), seeded random weights."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxControlNetModel, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    folder = Path(tokenizer_dir or tempfile.mkdtemp(prefix="cnet-tok-"))
    blocks = dict(patch_size=1, in_channels=4 * LATENT_CHANNELS, num_layers=1, num_single_layers=1,
                  attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                  axes_dims_rope=[4, 4, 8], guidance_embeds=True)
    controlnet = FluxControlNetModel(**blocks)
    union = FluxControlNetModel(num_mode=10, **blocks)  # InstantX's Union: the control type is an embedding
    wake_zero_layers(controlnet)
    wake_zero_layers(union)
    clip_tokenizer = build_clip_tokenizer(folder / "clip")
    t5_tokenizer = build_t5_tokenizer(folder / "t5")
    return dict(transformer=FluxTransformer2DModel(**blocks), controlnet=controlnet, union=union, vae=_vae(),
                text_encoder=CLIPTextModel(CLIPTextConfig(**_clip_config(clip_tokenizer))).eval(),
                tokenizer=clip_tokenizer, text_encoder_2=_t5(t5_tokenizer), tokenizer_2=t5_tokenizer,
                scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True))


def build_tiny_sd3_components(seed: int = 0, tokenizer_dir: str | Path | None = None) -> dict[str, Any]:
    """Tiny SD3.5-shaped components (an MMDiT of two blocks, two CLIPs with projections + T5) and an
    SD3ControlNetModel of one block, seeded random weights."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3ControlNetModel, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    folder = Path(tokenizer_dir or tempfile.mkdtemp(prefix="cnet-tok-"))
    blocks = dict(sample_size=8, patch_size=2, in_channels=LATENT_CHANNELS, attention_head_dim=8,
                  num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32, pooled_projection_dim=64)
    controlnet = SD3ControlNetModel(num_layers=1, **blocks)
    wake_zero_layers(controlnet)
    clip_tokenizer = build_clip_tokenizer(folder / "clip")
    t5_tokenizer = build_t5_tokenizer(folder / "t5")
    clip = _clip_config(clip_tokenizer)
    return dict(transformer=SD3Transformer2DModel(num_layers=2, out_channels=LATENT_CHANNELS, **blocks),
                controlnet=controlnet,
                vae=_vae(), text_encoder=CLIPTextModelWithProjection(CLIPTextConfig(**clip)).eval(),
                tokenizer=clip_tokenizer, text_encoder_2=CLIPTextModelWithProjection(CLIPTextConfig(**clip)).eval(),
                tokenizer_2=clip_tokenizer, text_encoder_3=_t5(t5_tokenizer), tokenizer_3=t5_tokenizer,
                scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))


def build_tiny_flux_fill_components(seed: int = 0, tokenizer_dir: str | Path | None = None) -> dict[str, Any]:
    """A tiny FLUX.1 Fill: the tiny FLUX.1's parts with a transformer that also reads the masked picture's latents
    and the packed mask (64 + 64 + 256 channels in, 64 out, as FLUX.1 Fill [dev]); no ControlNet."""
    import torch
    from diffusers import FluxTransformer2DModel

    parts = build_tiny_flux_components(seed, tokenizer_dir)
    parts.pop("controlnet")
    parts.pop("union")
    torch.manual_seed(seed + 1)
    packed = 4 * LATENT_CHANNELS
    parts["transformer"] = FluxTransformer2DModel(
        patch_size=1, in_channels=6 * packed, out_channels=packed, num_layers=1, num_single_layers=1,
        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
        axes_dims_rope=[4, 4, 8], guidance_embeds=True)
    return parts


DIT_BUILDERS = {"flux": build_tiny_flux_components, "sd3": build_tiny_sd3_components,
                "flux_fill": build_tiny_flux_fill_components}


def save_tiny_dit_models(out_dir: str | Path, seed: int = 0, family: str = "flux") -> tuple[Path, Path | None]:
    """Write `out_dir/base` (the family's base pipeline) and `out_dir/controlnet` in diffusers layout (FLUX.1 also
    `out_dir/controlnet-union`, a Union model); return the first two (FLUX.1 Fill has no ControlNet: None)."""
    import diffusers

    from .families import FAMILIES

    if family not in DIT_BUILDERS:
        raise ValueError(f"family={family!r} is not one of {list(DIT_BUILDERS)}")
    out = Path(out_dir)
    parts = DIT_BUILDERS[family](seed, tokenizer_dir=out / "tokenizers")
    controlnet, union = parts.pop("controlnet", None), parts.pop("union", None)
    getattr(diffusers, FAMILIES[family].base_pipeline)(**parts).save_pretrained(out / "base")
    if controlnet is None:
        return out / "base", None
    controlnet.save_pretrained(out / "controlnet")
    if union is not None:
        union.save_pretrained(out / "controlnet-union")
    return out / "base", out / "controlnet"
