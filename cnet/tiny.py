"""Small random-weight models in diffusers layout, for offline smoke tests, CI and benchmarks.

`save_tiny_models(dir)` writes `dir/base` (a StableDiffusionPipeline folder, 64x64 output) and `dir/controlnet`,
loadable by `StableDiffusionControlNetPipeline.from_pretrained(dir/base, controlnet=ControlNetModel.from_pretrained(
dir/controlnet))`. The weights are random: the images are noise-like, but every code path is the real one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .request import DEFAULT_PROMPT, ORIGINAL_ADDED_PROMPT, ORIGINAL_NEGATIVE_PROMPT

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
# Words given a single token each (everything else is spelled letter by letter, which still works).
BASE_WORDS = tuple(sorted(set(re.findall(r"[a-z]+", " ".join(
    (DEFAULT_PROMPT, ORIGINAL_ADDED_PROMPT, ORIGINAL_NEGATIVE_PROMPT,
     "a photo of the cat dog person man woman house car tree sky circle with background red green blue")).lower()))))


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word, as CLIP's tokenizer applies it (lowest-ranked merge first)."""
    while len(symbols) > 1:
        pairs = [(ranks.get(p, 1 << 30), i, p) for i, p in enumerate(zip(symbols, symbols[1:]))]
        rank, _, best = min(pairs)
        if rank == 1 << 30:
            break
        merged, i = [], 0
        while i < len(symbols):
            if i < len(symbols) - 1 and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def clip_vocabulary(words: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP BPE vocabulary of printable ASCII plus one token per word in `words`.

    Merges are derived by simulating BPE word by word, so each word becomes exactly one token and every merge
    result is in the vocabulary (transformers 5's fast CLIP tokenizer requires both).
    """
    chars = [chr(c) for c in range(33, 127)]
    tokens = list(chars) + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in sorted(set(words)):
        while True:
            pieces = _bpe(list(word[:-1]) + [word[-1] + "</w>"], ranks)
            if len(pieces) == 1:
                break
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            if pair[0] + pair[1] not in tokens:
                tokens.append(pair[0] + pair[1])
    tokens.extend(SPECIAL_TOKENS)
    return {t: i for i, t in enumerate(tokens)}, merges


def build_clip_tokenizer(out_dir: str | Path, words: Iterable[str] = BASE_WORDS, max_length: int = 77):
    """Write vocab.json and merges.txt for `words` into `out_dir` and load them as a CLIPTokenizer."""
    from transformers import CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = clip_vocabulary(words)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"), model_max_length=max_length,
                         pad_token="<|endoftext|>")


def wake_zero_convolutions(controlnet: Any, std: float = 0.1) -> None:
    """Make a fresh random-weight ControlNet respond to its map, in place.

    diffusers starts the 13 zero convolutions and the condition encoder's last conv at zero, as the paper does, and
    the encoder's other convs at PyTorch's default, which shrinks a signal about threefold per layer: after its eight
    layers the map is all but gone. A tiny model built that way gives the same pixels for a black, a white, a canny
    and an MLSD map, and every test of map handling on it passes whatever happens to the map. So the encoder gets
    a signal-preserving (He) initialisation with zero biases, and the zero convolutions small random values.
    """
    import torch

    encoder = controlnet.controlnet_cond_embedding
    with torch.no_grad():
        for conv in [encoder.conv_in, *encoder.blocks, encoder.conv_out]:
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            conv.bias.zero_()
        for module in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            for p in module.parameters():
                p.normal_(0.0, std)


def build_tiny_components(seed: int = 0, tokenizer_dir: str | Path | None = None, family: str = "sd15") -> dict:
    """Tiny SD1.5-shaped components and a ControlNet, seeded random weights (`family="sd2"`: SD 2.x's linear
    projections and v-prediction, otherwise the same).

    The VAE downsamples by 8 like Stable Diffusion's, so a 512x512 request makes 64x64 latents (not 256x256) and the
    plumbing check over the app's real sizes takes seconds; the U-Net's `sample_size` makes 64x64 its default output.
    """
    import tempfile

    import torch
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    blocks = dict(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), block_out_channels=(32, 64),
                  layers_per_block=1, cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8,
                  use_linear_projection=family == "sd2")
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4,
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), **blocks)
    # The conditioning encoder must downsample as much as the VAE (factor 8, as in SD1.5): four widths, three halvings.
    controlnet = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=(8, 8, 16, 16), **blocks)
    wake_zero_convolutions(controlnet)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 16, 16), latent_channels=4,
                        norm_num_groups=8, sample_size=64)
    tok_dir = tokenizer_dir or tempfile.mkdtemp(prefix="cnet-tok-")
    tokenizer = build_clip_tokenizer(tok_dir)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type="v_prediction" if family == "sd2" else "epsilon")
    return dict(unet=unet, controlnet=controlnet, vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                scheduler=scheduler)


def build_tiny_sdxl_components(seed: int = 0, tokenizer_dir: str | Path | None = None) -> dict:
    """Tiny SDXL-shaped components (two text encoders, the pooled-text and size conditioning), a ControlNet and a
    ControlNet-Union model (`union`, eight control types as xinsir's promax model), seeded random weights."""
    import tempfile

    import torch
    from diffusers import AutoencoderKL, ControlNetModel, ControlNetUnionModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    # SDXL's U-Net reads both encoders' hidden states side by side (32 + 32) and adds the second's pooled output
    # (32) and six size/crop numbers (6 x 8) to its time embedding: 80.
    blocks = dict(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), block_out_channels=(32, 64),
                  layers_per_block=1, cross_attention_dim=64, attention_head_dim=(2, 4), norm_num_groups=8,
                  use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                  transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4,
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), **blocks)
    controlnet = ControlNetModel(in_channels=4, conditioning_embedding_out_channels=(8, 8, 16, 16), **blocks)
    union = ControlNetUnionModel(in_channels=4, conditioning_embedding_out_channels=(8, 8, 16, 16), num_control_type=8,
                                 num_trans_channel=32, num_trans_head=2, num_proj_channel=32, **blocks)
    for net in (controlnet, union):
        wake_zero_convolutions(net)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(8, 16, 16, 16), latent_channels=4,
                        norm_num_groups=8, sample_size=64, scaling_factor=0.13025)
    tokenizer = build_clip_tokenizer(tokenizer_dir or tempfile.mkdtemp(prefix="cnet-tok-"))
    config = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_attention_heads=4,
                  num_hidden_layers=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, projection_dim=32)
    text_encoder = CLIPTextModel(CLIPTextConfig(**config))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**config))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return dict(unet=unet, controlnet=controlnet, union=union, vae=vae, text_encoder=text_encoder.eval(),
                text_encoder_2=text_encoder_2.eval(), tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=scheduler)


def build_sd15_vae() -> Any:
    """The SD1.5 VAE's architecture (83.7M parameters) with random weights."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                         up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2,
                         sample_size=512)


def build_sd15_components(seed: int = 0, tokenizer_dir: str | Path | None = None) -> dict:
    """The real SD1.5 + ControlNet architectures (published configs: U-Net 859.5M, ControlNet 361.3M parameters)
    with random weights, so benchmarks run the true network shapes offline. Pictures are noise."""
    import tempfile

    import torch
    from diffusers import ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    controlnet = ControlNetModel.from_unet(unet)
    wake_zero_convolutions(controlnet, std=0.01)
    vae = build_sd15_vae()
    tokenizer = build_clip_tokenizer(tokenizer_dir or tempfile.mkdtemp(prefix="cnet-tok-"))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
        max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, hidden_act="quick_gelu"))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return dict(unet=unet, controlnet=controlnet, vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer,
                scheduler=scheduler)


def build_sdxl_components(seed: int = 0, tokenizer_dir: str | Path | None = None) -> dict:
    """The real SDXL + ControlNet architectures (published configs: U-Net 2.57B, ControlNet 1.25B, CLIP-L and
    OpenCLIP bigG text encoders) with random weights in bfloat16 (about 9 GB, half of float32's), for benchmarks on
    a GPU machine. Pictures are noise."""
    import tempfile

    import torch
    from diffusers import ControlNetModel, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # built in half the memory; the engine casts to its own dtype
    try:
        unet = UNet2DConditionModel(
            sample_size=128, cross_attention_dim=2048, attention_head_dim=(5, 10, 20),
            block_out_channels=(320, 640, 1280), layers_per_block=2, use_linear_projection=True,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
        controlnet = ControlNetModel.from_unet(unet)
        wake_zero_convolutions(controlnet, std=0.01)
        vae = build_sd15_vae()
        vae.register_to_config(scaling_factor=0.13025)
        tokenizer = build_clip_tokenizer(tokenizer_dir or tempfile.mkdtemp(prefix="cnet-tok-"))
        ids = dict(vocab_size=49408, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                   eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                                    num_hidden_layers=12, hidden_act="quick_gelu", **ids))
        text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
            hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
            hidden_act="gelu", projection_dim=1280, **ids))
    finally:
        torch.set_default_dtype(before)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return dict(unet=unet, controlnet=controlnet, vae=vae, text_encoder=text_encoder.eval(),
                text_encoder_2=text_encoder_2.eval(), tokenizer=tokenizer, tokenizer_2=tokenizer, scheduler=scheduler)


PRESETS = {"tiny": build_tiny_components, "sd15": build_sd15_components, "sdxl": build_sdxl_components}
PRESET_FAMILIES = {"sd15": "sd15", "sdxl": "sdxl"}  # a full-size preset's family


TINY_FAMILIES = ("sd15", "sd2", "sdxl")


def save_tiny_models(out_dir: str | Path, seed: int = 0, preset: str = "tiny",
                     family: str = "sd15") -> tuple[Path, Path]:
    """Write `out_dir/base` and `out_dir/controlnet` (preset 'tiny': 64x64 toy; 'sd15' / 'sdxl': real shapes, random
    weights); return both.
    `family` (tiny preset): sd15, sd2 or sdxl; sdxl also writes `out_dir/controlnet-union` (a ControlNet-Union)."""
    import diffusers

    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {sorted(PRESETS)}")
    if family not in TINY_FAMILIES or (family != "sd15" and preset != "tiny"):
        raise ValueError(f"family={family!r} is not one of {list(TINY_FAMILIES)} (other families: preset 'tiny')")
    family = PRESET_FAMILIES.get(preset, family)
    out = Path(out_dir)
    if preset == "sdxl":
        parts = build_sdxl_components(seed, tokenizer_dir=out / "base" / "tokenizer")
        extra: dict[str, Any] = {"force_zeros_for_empty_prompt": True, "add_watermarker": False}
    elif family == "sdxl":
        parts = build_tiny_sdxl_components(seed, tokenizer_dir=out / "base" / "tokenizer")
        parts.pop("union").save_pretrained(out / "controlnet-union")
        extra = {"force_zeros_for_empty_prompt": True, "add_watermarker": False}
    else:
        parts = (PRESETS[preset](seed, tokenizer_dir=out / "base" / "tokenizer", family=family) if preset == "tiny"
                 else PRESETS[preset](seed, tokenizer_dir=out / "base" / "tokenizer"))
        extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    from .families import FAMILIES

    controlnet = parts.pop("controlnet")
    pipe = getattr(diffusers, FAMILIES[family].base_pipeline)(**parts, **extra)
    pipe.save_pretrained(out / "base")
    controlnet.save_pretrained(out / "controlnet")
    return out / "base", out / "controlnet"


def save_tiny_blip(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random BLIP captioner (real classes, config-built) saved for `Captioner`; returns its folder."""
    import torch
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *BASE_WORDS]
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(str(vocab_file), bos_token="[DEC]")
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    torch.manual_seed(seed)
    config = BlipConfig(
        text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_attention_heads=4,
                         num_hidden_layers=2, bos_token_id=words.index("[DEC]"), sep_token_id=words.index("[SEP]"),
                         pad_token_id=0, eos_token_id=words.index("[SEP]")),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
                           image_size=32, patch_size=8),
        projection_dim=32,
    )
    BlipForConditionalGeneration(config).eval().save_pretrained(out)
    processor.save_pretrained(out)
    return out


LORA_ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")


def save_tiny_lora(base_dir: str | Path, out_dir: str | Path, seed: int = 0, rank: int = 4,
                   targets: tuple[str, ...] = LORA_ATTENTION) -> Path:
    """Write a LoRA for the base at `base_dir` (on its denoiser's `targets` layers, by default the attention
    projections, U-Net or transformer; random non-zero weights, so it visibly changes the output) as diffusers'
    `pytorch_lora_weights.safetensors` in `out_dir`; return the file."""
    import diffusers
    import torch
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    from .families import base_family

    torch.manual_seed(seed)
    family = base_family(str(base_dir))
    denoiser = diffusers.AutoModel.from_pretrained(str(base_dir), subfolder=family.denoiser)
    denoiser.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=list(targets)))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(denoiser))
    pipeline = getattr(diffusers, family.base_pipeline)
    pipeline.save_lora_weights(str(out_dir), **{f"{family.denoiser}_lora_layers": layers})
    return Path(out_dir) / "pytorch_lora_weights.safetensors"


def save_tiny_taesd(out_dir: str | Path, seed: int = 0) -> Path:
    """A tiny random AutoencoderTiny (TAESD's architecture: 8x down, 4 latent channels; narrow layers) saved in
    diffusers layout, for `fast_decode` tests (CNET_TINY_VAE); returns its folder."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    out = Path(out_dir)
    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                    num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1)).eval().save_pretrained(out)
    return out


def save_tiny_ip_adapter(base_dir: str | Path, out_dir: str | Path, seed: int = 0) -> Path:
    """An IP-Adapter for the tiny U-Net base at `base_dir`, in the authors' layout (h94/IP-Adapter): one
    `ip-adapter.safetensors` (the image projection, `image_proj.*`, and a key and value projection per
    cross-attention layer, `ip_adapter.{1,3,5,...}.to_{k,v}_ip.weight`, numbered as diffusers reads them) and a tiny
    CLIP image encoder in `image_encoder/` beside it. Random non-zero weights, so a reference visibly changes the
    output. Returns the weights file."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    out = Path(out_dir)
    torch.manual_seed(seed)
    config = UNet2DConditionModel.load_config(str(base_dir), subfolder="unet")
    width, tokens, embed = config["cross_attention_dim"], 4, 32
    # 224 px, as every CLIP image processor the pipelines carry crops to (SD 1.5's safety-checker one included).
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, projection_dim=embed, num_hidden_layers=2, num_attention_heads=4,
        image_size=224, patch_size=32)).eval().save_pretrained(out / "image_encoder")
    tensors = {"image_proj.proj.weight": torch.randn(tokens * width, embed) * 0.2,
               "image_proj.proj.bias": torch.zeros(tokens * width),
               "image_proj.norm.weight": torch.ones(width), "image_proj.norm.bias": torch.zeros(width)}
    with init_empty_weights():  # only the layer names and widths are read
        unet = UNet2DConditionModel.from_config(config)
    channels, key = config["block_out_channels"], 1
    for name in unet.attn_processors:
        if not name.endswith("attn2.processor"):
            continue
        if name.startswith("mid_block"):
            hidden = channels[-1]
        else:
            block = int(name.split(".")[1])
            hidden = (list(reversed(channels)) if name.startswith("up_blocks") else list(channels))[block]
        for projection in ("to_k_ip", "to_v_ip"):
            tensors[f"ip_adapter.{key}.{projection}.weight"] = torch.randn(hidden, width) * 0.3
        key += 2
    save_file(tensors, str(out / "ip-adapter.safetensors"))
    return out / "ip-adapter.safetensors"
