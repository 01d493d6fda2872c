"""The locked base a ControlNet trains against: its parts loaded (a Hub id, a diffusers folder or a single file) and
its text conditioning encoded. The training loop and the latent cache both build on it."""

from __future__ import annotations

from typing import Any


def load_base(base_model: str, dtype: Any, single_file_config: str | None = None) -> dict[str, Any]:
    """Tokenizer(s), text encoder(s), VAE, U-Net and noise scheduler of a base model (Hub id, diffusers folder, or a
    single file described by `single_file_config`), and its `family` (cnet/families.py, read from the U-Net's
    config): SDXL brings a second tokenizer and text encoder (the one with the pooled projection)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from cnet.families import family_of
    from common.models import load_with_hub_fallback, parse_model_source

    source = parse_model_source(base_model, what="base_model")
    if source.kind == "file":
        return _load_single_file_base(source.location, dtype, single_file_config)
    from cnet.families import base_family

    family = base_family(source)
    if family.denoiser != "unet":
        return _load_pipeline_base(source, family, dtype)

    def load(cls: Any, subfolder: str, **kw: Any) -> Any:
        return load_with_hub_fallback(cls.from_pretrained, source, env_var="CNET_BASE_MODEL", subfolder=subfolder,
                                      **kw)

    unet = load(UNet2DConditionModel, "unet")
    base = {"family": family_of(unet.config), "tokenizer": load(CLIPTokenizer, "tokenizer"),
            "text_encoder": load(CLIPTextModel, "text_encoder", dtype=dtype),
            "vae": load(AutoencoderKL, "vae", dtype=dtype), "unet": unet,
            "noise_scheduler": load(DDPMScheduler, "scheduler")}
    if base["family"].text_encoders == 2:
        base["tokenizer_2"] = load(CLIPTokenizer, "tokenizer_2")
        base["text_encoder_2"] = load(CLIPTextModelWithProjection, "text_encoder_2", dtype=dtype)
    return base


def _load_single_file_base(path: str, dtype: Any, single_file_config: str | None) -> dict[str, Any]:
    """A single-file base through the family's pipeline `from_single_file` (diffusers converts the weights)."""
    import diffusers
    from diffusers import DDPMScheduler
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    from cnet.families import base_family
    from common.models import hub_is_offline

    family = base_family(path, single_file_config)
    try:
        pipe = getattr(diffusers, family.base_pipeline).from_single_file(
            path, config=single_file_config, local_files_only=hub_is_offline())  # fp32: the U-Net may train
    except (OSError, ValueError, SingleFileComponentError) as err:
        reason = str(err).strip().splitlines()[0][:300]
        raise ValueError(f"base_model={path!r}: the single file could not be read as a {family.label} checkpoint "
                         f"({reason}). Offline, --single-file-config must name the diffusers pipeline folder that "
                         "describes its architecture") from None
    # As a folder base loads: the locked encoders and the VAE in the training dtype, the U-Net as it is.
    base = {"family": family, "tokenizer": pipe.tokenizer, "text_encoder": pipe.text_encoder.to(dtype=dtype),
            "vae": pipe.vae.to(dtype=dtype), "unet": pipe.unet,
            "noise_scheduler": DDPMScheduler.from_config(pipe.scheduler.config)}
    if family.text_encoders == 2:
        base.update(tokenizer_2=pipe.tokenizer_2, text_encoder_2=pipe.text_encoder_2.to(dtype=dtype))
    return base


def _load_pipeline_base(source: Any, family: Any, dtype: Any) -> dict[str, Any]:
    """A DiT base (FLUX.1, SD3.5) through its family's pipeline: the components, the pipeline itself (its
    `encode_prompt` encodes the text, as at generation), the denoiser in fp32 (it may train), the encoders and VAE in
    the training dtype."""
    import diffusers

    from common.models import load_with_hub_fallback

    pipe = load_with_hub_fallback(getattr(diffusers, family.base_pipeline).from_pretrained, source,
                                  env_var="CNET_BASE_MODEL")
    base = {"family": family, "pipeline": pipe, "noise_scheduler": pipe.scheduler}
    for name, module in pipe.components.items():
        if module is not None and name != "scheduler":
            base[name] = module.to(dtype=dtype) if name.startswith(("text_encoder", "vae")) else module
    return base


def encode_clip_text(texts: list[str], base: dict[str, Any], device: Any) -> tuple[Any, Any]:
    """The U-Net's text conditioning, and SDXL's pooled text (None for one encoder). SDXL: both encoders'
    penultimate hidden states side by side and the second's pooled projection, as its pipelines encode prompts."""
    import torch

    def ids(tokenizer: Any) -> Any:
        return tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids.to(device)

    if "text_encoder_2" not in base:
        return base["text_encoder"](ids(base["tokenizer"]))[0], None
    first = base["text_encoder"](ids(base["tokenizer"]), output_hidden_states=True)
    second = base["text_encoder_2"](ids(base["tokenizer_2"]), output_hidden_states=True)
    return torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1), second.text_embeds
