"""Memory presets for desktop GPUs, chosen from the detected card (SD1.5 ControlNet at 512x512).

A preset only fills settings the user did not give. The 8 GB preset is the documented batch-1 configuration:
fp16 weights for the locked base, gradient checkpointing, 8-bit AdamW and precomputed latents/prompts.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "8gb": dict(batch_size=1, grad_accum=4, mixed_precision="fp16", gradient_checkpointing=True, use_8bit_adam=True,
                precompute=True),
    "12gb": dict(batch_size=2, grad_accum=2, mixed_precision="fp16", gradient_checkpointing=True,
                 use_8bit_adam=True, precompute=True),
    "16gb": dict(batch_size=4, grad_accum=1, mixed_precision="fp16", gradient_checkpointing=True, precompute=True),
    "24gb": dict(batch_size=4, grad_accum=1, mixed_precision="bf16", precompute=True),
    "40gb": dict(batch_size=8, grad_accum=1, mixed_precision="bf16", precompute=True),
    # Light ControlNets (a LoRA on the copy, its zero layers whole; train/light.py) for a custom condition from about
    # a thousand pictures on one desktop card. Training state, weights only (python -m bench.light_controlnet):
    # SD1.5 2.7 GB, SDXL 7.9 GB (rank 16) / 8.5 GB (rank 64); SD3.5 Large 22.6 GB and FLUX.1 31.9 GB need a 40-48 GB
    # card. A LoRA takes a larger learning rate than the paper's 1e-5 for the whole copy (the demo: bench/RESULTS.md).
    "light-12gb": dict(controlnet_lora_rank=16, batch_size=2, grad_accum=8, mixed_precision="fp16",
                       gradient_checkpointing=True, precompute=True, lr=1e-4),
    "light-24gb": dict(controlnet_lora_rank=64, batch_size=8, grad_accum=2, mixed_precision="bf16",
                       gradient_checkpointing=True, precompute=True, lr=1e-4),
}


def detect_preset() -> str | None:
    """The preset for the first CUDA card (by its memory), or None on CPU/mps (small models need none)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    except Exception:  # no torch/CUDA: no preset
        return None
    for name, limit in (("8gb", 10), ("12gb", 14), ("16gb", 20), ("24gb", 32)):
        if gib < limit:
            return name
    return "40gb"


def apply_preset(given: dict[str, Any], preset: str | None) -> tuple[dict[str, Any], str | None]:
    """Settings with the preset filled in where `given` is silent; 'auto' detects the card, 'none' applies none."""
    if preset in (None, "none"):
        return dict(given), None
    name = detect_preset() if preset == "auto" else preset
    if name is None:
        return dict(given), None
    if name not in PRESETS:
        raise ValueError(f"preset={preset!r} is not one of {['auto', 'none', *PRESETS]}")
    preset_settings = dict(PRESETS[name])
    if given.get("streaming") or given.get("latent_cache"):  # their latents come per step or from disk, never all
        preset_settings.pop("precompute", None)  # held in RAM
    return {**preset_settings, **given}, name
