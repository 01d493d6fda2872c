"""Live previews: the image forming, from the latents of a denoising step, without the VAE.

A linear map from the 4 latent channels to RGB approximates the VAE's decoder well enough to watch the picture take
shape (the factors are the ones ComfyUI and the A1111 web UI use for their "approximate" previews, fitted to the SD
and SDXL VAEs). It costs one 4x3 matrix product on the 64x64 latent grid: measured in bench/RESULTS.md against a step.
The DiT families' 16-channel latents have no such factors here: their previews are the family's tiny autoencoder's
decode (TAEF1, TAESD3), as A1111's "TAESD" preview mode does.
"""

from __future__ import annotations

from typing import Any

from PIL import Image


def latents_to_preview(latents: Any, family: str = "sd15", size: tuple[int, int] | None = None) -> Image.Image:
    """The first image of a latent batch (B, 4, h, w) as an approximate RGB picture (the family's `latent_rgb`
    factors, cnet/families.py), resized to `size`."""
    import torch

    from .families import FAMILIES

    factors, bias = FAMILIES[family].latent_rgb
    with torch.no_grad():
        latent = latents[0].detach().float().cpu()
        rgb = torch.einsum("chw,cr->hwr", latent, torch.tensor(factors)) + torch.tensor(bias)
        pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    image = Image.fromarray(pixels)
    return image.resize(size, Image.Resampling.BILINEAR) if size else image


def tiny_vae_preview(pipe: Any, latents: Any, tiny_vae: Any, size: tuple[int, int]) -> Image.Image:
    """The first image of a DiT step's latents decoded by the tiny autoencoder: FLUX.1's packed tokens unpacked
    (its pipeline's own `_unpack_latents`), unscaled and unshifted as its VAE's config says, then decoded."""
    import torch

    width, height = size
    with torch.no_grad():
        latent = latents[:1].detach()
        if latent.ndim == 3:  # FLUX.1: (batch, tokens, 64) -> (batch, 16, h, w)
            latent = pipe._unpack_latents(latent, height, width, pipe.vae_scale_factor)
        config = pipe.vae.config
        latent = latent / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
        decoded = tiny_vae.decode(latent.to(tiny_vae.device, tiny_vae.dtype)).sample[0].float().cpu()
        pixels = ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels)
    return image.resize(size, Image.Resampling.BILINEAR) if image.size != size else image
