"""Pre-train the tiny demo base model from scratch on the circles domain (shapes/data.py).

This is a tiny text-to-image pre-training, outside the ControlNet trainer: real diffusers/transformers classes
(AutoencoderKL, UNet2DConditionModel, CLIPTextModel, CLIPTokenizer), trained on data drawn on the fly.

    python -m shapes pretrain vae  --out shapes/model/base --steps 1200 --seed 0    (the recipe's 1,200 and 4,500:
    python -m shapes pretrain unet --out shapes/model/base --steps 4500 --seed 0     examples/shapes/recipe.sh)

The second stage reads the VAE the first one saved, then writes a complete StableDiffusionPipeline folder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import load_palette, sample_batch

# Every word the prompts use: each becomes a single token (cnet.tiny.clip_vocabulary).
MAX_TOKENS = 8  # "<colour> circle with <colour> background" is 5 words + start/end tokens


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def build_vae():
    from diffusers import AutoencoderKL

    # Three blocks: 64x64 images -> 16x16x4 latents (factor 4), ~0.7M parameters.
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                         up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 64),
                         latent_channels=4, layers_per_block=1, norm_num_groups=8, sample_size=64)


def train_vae(out: Path, steps: int, seed: int, batch: int = 32, lr: float = 1e-3, log=print) -> None:
    """Reconstruction (L1 + MSE) with a small KL term, on freshly drawn circles every step."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    palette = load_palette()
    vae = build_vae()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 0.05)
    start = time.monotonic()
    for step in range(1, steps + 1):
        images = to_tensor(sample_batch(rng, batch, palette)[0])
        posterior = vae.encode(images).latent_dist
        recon = vae.decode(posterior.sample()).sample
        kl = posterior.kl().mean() / (64 * 64)
        loss = F.l1_loss(recon, images) + F.mse_loss(recon, images) + 1e-4 * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 200 == 0 or step == steps:
            log(json.dumps({"stage": "vae", "step": step, "loss": round(loss.item(), 5),
                            "minutes": round((time.monotonic() - start) / 60, 2)}))
    # Latents should have unit variance for the diffusion model: measure and store the scaling factor.
    with torch.no_grad():
        latents = vae.encode(to_tensor(sample_batch(np.random.default_rng(seed + 1), 256, palette)[0])).latent_dist.mean
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    vae.save_pretrained(out / "vae")


def build_text_side(out: Path):
    from transformers import CLIPTextConfig, CLIPTextModel

    from cnet.tiny import build_clip_tokenizer

    words = list(load_palette()) + ["circle", "with", "background"]
    tokenizer = build_clip_tokenizer(out / "tokenizer", words, max_length=MAX_TOKENS)
    tokenizer.save_pretrained(out / "tokenizer")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=MAX_TOKENS, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    return tokenizer, text_encoder


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=8, norm_num_groups=8)


def train_unet(out: Path, steps: int, seed: int, batch: int = 32, lr: float = 1e-3, empty_prob: float = 0.1,
               snr_gamma: float | None = 5.0, log=print) -> None:
    """Noise prediction on VAE latents with a jointly trained text encoder; 10% empty prompts so CFG works.

    `snr_gamma`: Min-SNR loss weighting (Hang et al., 2023), min(SNR, gamma) / SNR per sample. It stops the many
    nearly noise-free timesteps (easy, and about texture) from dominating, so the high-noise steps that decide the
    circle's colours from the prompt learn sooner. None trains with the plain mean squared error."""
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline
    from diffusers.training_utils import compute_snr

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 7)
    palette = load_palette()
    vae = AutoencoderKL.from_pretrained(out / "vae").eval().requires_grad_(False)
    tokenizer, text_encoder = build_text_side(out)
    unet = build_unet()
    noise_scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                    num_train_timesteps=1000, clip_sample=False)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps, eta_min=lr * 0.05)
    start = time.monotonic()
    for step in range(1, steps + 1):
        images, _, prompts = sample_batch(rng, batch, palette)
        prompts = ["" if rng.random() < empty_prob else p for p in prompts]
        with torch.no_grad():
            latents = vae.encode(to_tensor(images)).latent_dist.sample() * vae.config.scaling_factor
        ids = tokenizer(prompts, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                        return_tensors="pt").input_ids
        hidden = text_encoder(ids)[0]
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, 1000, (batch,))
        pred = unet(noise_scheduler.add_noise(latents, noise, timesteps), timesteps, hidden).sample
        if snr_gamma is None:
            loss = F.mse_loss(pred, noise)
        else:
            snr = compute_snr(noise_scheduler, timesteps)
            weights = torch.clamp(snr, max=snr_gamma) / snr
            loss = (F.mse_loss(pred, noise, reduction="none").mean(dim=(1, 2, 3)) * weights).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        if step % 200 == 0 or step == steps:
            log(json.dumps({"stage": "unet", "step": step, "loss": round(loss.item(), 5),
                            "minutes": round((time.monotonic() - start) / 60, 2)}))
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder.eval(), tokenizer=tokenizer, unet=unet.eval(),
        scheduler=DDIMScheduler.from_config(noise_scheduler.config, set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shapes pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("vae", "unet"))
    parser.add_argument("--out", required=True, help="the base model folder (diffusers layout)")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--snr-gamma", type=float, default=5.0,
                        help="U-Net stage: Min-SNR loss weighting; 0 trains with the plain MSE")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.stage == "vae":
        train_vae(out, args.steps, args.seed, batch=args.batch_size, lr=args.lr)
    else:
        train_unet(out, args.steps, args.seed, batch=args.batch_size, lr=args.lr, snr_gamma=args.snr_gamma or None)


if __name__ == "__main__":
    main()
