"""What a training step computes, per model family: one `Objective` each, chosen by the base's family.

- `NoisePrediction` (SD 1.x, 2.x, XL): the paper's objective. The trainable copy of the U-Net encoder
  (`ControlNetModel.from_unet`) adds its residuals to the locked U-Net, which predicts the noise (or the velocity for
  v-prediction models); SDXL also conditions on pooled text and the image's size and crop.
- `FlowMatching` (FLUX.1, SD3.5): as diffusers' `train_controlnet_flux.py` / `train_controlnet_sd3.py` do. The copy is
  the first blocks of the transformer (`from_transformer`); the latents are interpolated towards noise at a sigma drawn
  logit-normally (their default weighting, whose loss weights are all 1), and the transformer, given the
  ControlNet's block outputs, predicts the velocity `noise - latents`. The map is encoded by the VAE, as the
  families' pipelines do. FLUX.1 packs the latents 2x2 into tokens and embeds its distilled guidance.

Every random draw comes from the run's generator (`rng`), so a resumed run repeats an uninterrupted one bit for bit.
Adding a family is one class here (or a reused one) and one line in OBJECTIVES.
"""

from __future__ import annotations

from typing import Any

from .base import encode_clip_text

# FLUX.1-dev's training scripts embed guidance 3.5 (what its users generate with) when the model has the embedding.
FLUX_TRAINING_GUIDANCE = 3.5
# T5 tokens a DiT prompt is encoded to in training (their pipelines' default at generation: FLUX.1 512, SD3 256).
MAX_SEQUENCE_LENGTH = {"flux": 512, "sd3": 256}


class NoisePrediction:
    """SD 1.x, 2.x and XL: noise (or velocity) prediction by the U-Net with the ControlNet's residuals added."""

    modes = ("default", "small", "large")
    unused_parameters = False  # every weight of the copy feeds an output

    def make_controlnet(self, base: dict[str, Any]) -> Any:
        """The U-Net's encoder copied, zero convolutions at zero. The condition encoder (4x4 kernels, stride 2,
        16/32/96/256 channels in diffusers) downsamples as much as the VAE: 8x for SD1.5, less for test models."""
        from diffusers import ControlNetModel

        downsamples = len(base["vae"].config.block_out_channels) - 1
        return ControlNetModel.from_unet(base["unet"],
                                         conditioning_embedding_out_channels=(16, 32, 96, 256)[: downsamples + 1])

    def connect_middle_only(self, controlnet: Any) -> None:
        """Small mode: the 12 skip zero-convolutions take no part (the loss gives them zeros)."""
        controlnet.controlnet_down_blocks.requires_grad_(False)

    def encode_text(self, texts: list[str], base: dict[str, Any], device: Any) -> tuple[Any, Any]:
        return encode_clip_text(texts, base, device)

    def draws(self, run: Any, latents: Any) -> dict[str, Any]:
        """The step's noise and timesteps (uniform over the training schedule), from the run's generator."""
        import torch

        device, scheduler = run.accelerator.device, run.base["noise_scheduler"]
        noise = torch.randn(latents.shape, generator=run.rng).to(device, latents.dtype)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],),
                                  generator=run.rng).to(device)
        return {"noise": noise, "timesteps": timesteps}

    def loss(self, run: Any, batch: dict[str, Any], latents: Any, draws: dict[str, Any], hidden: Any, pooled: Any
             ) -> Any:
        import torch
        import torch.nn.functional as F

        config, device = run.config, run.accelerator.device
        unet, scheduler = run.denoiser, run.base["noise_scheduler"]
        noise, timesteps, bsz = draws["noise"], draws["timesteps"], latents.shape[0]
        noisy = scheduler.add_noise(latents, noise, timesteps)
        extra = _size_conditions(run.base["family"], config.resolution, pooled, bsz, device, run.weight_dtype)
        cond = batch["conditioning_pixel_values"].to(device, run.weight_dtype)
        down, mid = run.controlnet(noisy, timesteps, encoder_hidden_states=hidden, controlnet_cond=cond,
                                   return_dict=False, **extra)
        if config.mode == "small":
            # Only the middle block is connected. diffusers adds the mid residual only when skip residuals are given
            # too, so the 12 skips get constant zeros: no contribution, no gradient.
            down = [torch.zeros_like(d, requires_grad=False) for d in down]
        model_pred = unet(noisy, timesteps, encoder_hidden_states=hidden,
                          down_block_additional_residuals=[d.to(unet.dtype) for d in down],
                          mid_block_additional_residual=mid.to(unet.dtype), **extra).sample
        if scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        return F.mse_loss(model_pred.float(), target.float(), reduction="mean")


def _size_conditions(family: Any, resolution: int, pooled: Any, bsz: int, device: Any, dtype: Any
                     ) -> dict[str, Any]:
    """A family with size conditioning (SDXL) also conditions on the pooled text and the image's size and crop
    (original, top-left, target): the rows are resized to `resolution` and centre-cropped, so (res, res, 0, 0, res,
    res), as diffusers' SDXL ControlNet training script passes them. Nothing for the other families."""
    import torch

    if not family.size_conditioning:
        return {}
    sizes = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], device=device,
                         dtype=dtype).repeat(bsz, 1)
    return {"added_cond_kwargs": {"text_embeds": pooled, "time_ids": sizes}}


class FlowMatching:
    """The DiT families' objective; the family's subclass says how its models are called."""

    # A transformer has no middle block to connect alone: small mode does not apply. Large mode unlocks the whole
    # transformer, as it unlocks the U-Net.
    modes = ("default", "large")
    # The copy's last double block computes a text branch no output reads: several processes (DDP) must expect it.
    unused_parameters = True
    layers: dict[str, int] = {}  # the copy's depth, given to `from_transformer`

    def make_controlnet(self, base: dict[str, Any]) -> Any:
        raise NotImplementedError

    def connect_middle_only(self, controlnet: Any) -> None:
        raise NotImplementedError("small mode does not apply to a transformer")

    def encode_text(self, texts: list[str], base: dict[str, Any], device: Any) -> tuple[Any, Any]:
        """(T5 and CLIP text, pooled CLIP text) by the family's own pipeline's `encode_prompt`."""
        raise NotImplementedError

    def draws(self, run: Any, latents: Any) -> dict[str, Any]:
        """The step's noise and a logit-normal sigma per row (mean 0, std 1: the scripts' default), as an index into
        the training schedule, from the run's generator."""
        import torch

        device, scheduler = run.accelerator.device, run.base["noise_scheduler"]
        noise = torch.randn(latents.shape, generator=run.rng).to(device, latents.dtype)
        u = torch.sigmoid(torch.randn(latents.shape[0], generator=run.rng))
        indices = (u * scheduler.config.num_train_timesteps).long().clamp(max=len(scheduler.timesteps) - 1)
        return {"noise": noise, "timesteps": scheduler.timesteps[indices].to(device),
                "sigmas": scheduler.sigmas[indices].to(device, latents.dtype).view(-1, 1, 1, 1)}

    def loss(self, run: Any, batch: dict[str, Any], latents: Any, draws: dict[str, Any], hidden: Any, pooled: Any
             ) -> Any:
        import torch.nn.functional as F

        noise, sigmas = draws["noise"], draws["sigmas"]
        noisy = (1.0 - sigmas) * latents + sigmas * noise
        cond = _map_latents(run, batch)
        prediction = self.predict(run, noisy, draws["timesteps"], cond, hidden, pooled)
        return F.mse_loss(prediction.float(), (noise - latents).float(), reduction="mean")

    def predict(self, run: Any, noisy: Any, timesteps: Any, cond: Any, hidden: Any, pooled: Any) -> Any:
        raise NotImplementedError


def _map_latents(run: Any, batch: dict[str, Any]) -> Any:
    """The condition maps as the DiT ControlNets read them: through the VAE (a sample of its posterior, drawn from
    the run's generator), shifted and scaled as the latents are; the maps in [-1, 1] as the pipelines send them."""
    import torch

    vae = run.base["vae"]
    pixels = batch["conditioning_pixel_values"].to(run.accelerator.device, run.weight_dtype) * 2 - 1
    with torch.no_grad():
        dist = vae.encode(pixels).latent_dist
        eps = torch.randn(dist.mean.shape, generator=run.rng).to(dist.mean.device, dist.mean.dtype)
        return scale_latents(dist.mean + dist.std * eps, vae.config)


def scale_latents(latents: Any, vae_config: Any) -> Any:
    """VAE latents as the denoiser reads them: shifted (the DiT families' VAEs have a shift) and scaled."""
    shift = getattr(vae_config, "shift_factor", None)
    return (latents - shift if shift is not None else latents) * vae_config.scaling_factor


class FluxFlow(FlowMatching):
    """FLUX.1: packed 2x2 latent tokens with their position ids, the distilled guidance embedded."""

    layers = {"num_layers": 4, "num_single_layers": 10}  # diffusers' from_transformer defaults (the script's 4+0)

    def make_controlnet(self, base: dict[str, Any]) -> Any:
        from diffusers import FluxControlNetModel

        transformer = base["transformer"]
        depth = {k: min(v, transformer.config[k]) for k, v in self.layers.items()}
        return FluxControlNetModel.from_transformer(
            transformer, attention_head_dim=transformer.config.attention_head_dim,
            num_attention_heads=transformer.config.num_attention_heads, **depth)

    def encode_text(self, texts: list[str], base: dict[str, Any], device: Any) -> tuple[Any, Any]:
        hidden, pooled, _ = base["pipeline"].encode_prompt(texts, texts, device=device,
                                                           max_sequence_length=MAX_SEQUENCE_LENGTH["flux"])
        return hidden, pooled

    def predict(self, run: Any, noisy: Any, timesteps: Any, cond: Any, hidden: Any, pooled: Any) -> Any:
        import torch
        from diffusers import FluxPipeline

        bsz, channels, height, width = noisy.shape
        device, transformer = noisy.device, run.denoiser
        packed = FluxPipeline._pack_latents(noisy, bsz, channels, height, width)
        packed_cond = FluxPipeline._pack_latents(cond, bsz, channels, height, width)
        image_ids = FluxPipeline._prepare_latent_image_ids(bsz, height // 2, width // 2, device, noisy.dtype)
        text_ids = torch.zeros(hidden.shape[1], 3, device=device, dtype=noisy.dtype)
        guidance = torch.full((bsz,), FLUX_TRAINING_GUIDANCE, device=device) \
            if transformer.config.guidance_embeds else None
        common = dict(timestep=timesteps / 1000, guidance=guidance, pooled_projections=pooled,
                      encoder_hidden_states=hidden, txt_ids=text_ids, img_ids=image_ids, return_dict=False)
        blocks, single_blocks = run.controlnet(hidden_states=packed, controlnet_cond=packed_cond, **common)
        out = transformer(hidden_states=packed, controlnet_block_samples=_cast(blocks, transformer.dtype),
                          controlnet_single_block_samples=_cast(single_blocks, transformer.dtype), **common)[0]
        vae_scale = 2 ** (len(run.base["vae"].config.block_out_channels) - 1)
        return FluxPipeline._unpack_latents(out, height * vae_scale, width * vae_scale, vae_scale)


class SD3Flow(FlowMatching):
    """SD3.5: the MMDiT with the ControlNet's block outputs added; the map's latents as the condition."""

    layers = {"num_layers": 12}

    def make_controlnet(self, base: dict[str, Any]) -> Any:
        from diffusers import SD3ControlNetModel

        transformer = base["transformer"]
        # No extra condition channels: those are the inpainting ControlNet's (the mask beside the picture). The
        # transformer's last block reads the text only as context (`context_pre_only`): the copy stops before it.
        return SD3ControlNetModel.from_transformer(
            transformer, num_layers=min(self.layers["num_layers"], transformer.config.num_layers - 1),
            num_extra_conditioning_channels=0)

    def encode_text(self, texts: list[str], base: dict[str, Any], device: Any) -> tuple[Any, Any]:
        hidden, _, pooled, _ = base["pipeline"].encode_prompt(
            texts, texts, texts, device=device, do_classifier_free_guidance=False,
            max_sequence_length=MAX_SEQUENCE_LENGTH["sd3"])
        return hidden, pooled

    def predict(self, run: Any, noisy: Any, timesteps: Any, cond: Any, hidden: Any, pooled: Any) -> Any:
        transformer = run.denoiser
        common = dict(timestep=timesteps, encoder_hidden_states=hidden, pooled_projections=pooled, return_dict=False)
        blocks = run.controlnet(hidden_states=noisy, controlnet_cond=cond, **common)[0]
        return transformer(hidden_states=noisy, block_controlnet_hidden_states=_cast(blocks, transformer.dtype),
                           **common)[0]


def _cast(samples: Any, dtype: Any) -> Any:
    return None if samples is None else [s.to(dtype) for s in samples]


OBJECTIVES: dict[str, Any] = {"sd15": NoisePrediction(), "sd2": NoisePrediction(), "sdxl": NoisePrediction(),
                              "flux": FluxFlow(), "sd3": SD3Flow()}


def objective_for(family: Any) -> Any:
    """The objective that trains a ControlNet for `family` (cnet/families.py); ValueError naming a family the
    trainer has none for."""
    if family.name not in OBJECTIVES:
        raise ValueError(f"the trainer has no objective for {family.label} models")
    return OBJECTIVES[family.name]


def encode_text(texts: list[str], base: dict[str, Any], device: Any) -> tuple[Any, Any]:
    """The denoiser's text conditioning and the pooled text (None where the family has none), as the base's family
    encodes prompts."""
    return objective_for(base["family"]).encode_text(texts, base, device)
