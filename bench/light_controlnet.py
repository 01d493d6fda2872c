"""A light ControlNet (LoRA on the copy, `--controlnet-lora-rank`) against a full one, per family: the weights that
train, the file that carries them, and the training state a card must hold, counted on the meta device from the
published architectures (bench/family_memory.py's configs; no download, no GPU).

    python -m bench.light_controlnet [--ranks 16 64]

Training state, weights only (activations, measured on a card by bench/gpu.py, come on top): the locked denoiser in
16 bits, the copy's frozen weights in 16 bits, and each trained weight in fp32 with its gradient and AdamW's two
moments (16 bytes; 10 with 8-bit AdamW); the text encoders and the VAE are not on the card during the steps
(`--precompute`, as the memory presets set).
"""

from __future__ import annotations

import argparse

from bench.common import record
from bench.family_memory import FLUX_DEV, SD15_UNET, SD35_LARGE, SDXL_UNET

GB = 1e9
TRAINED_BYTES = 16  # fp32 weight, gradient, AdamW's two moments


def controlnet_on_meta(family: str):
    """The family's ControlNet (as the published ones are made), with no memory."""
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel, FluxControlNetModel, SD3ControlNetModel, UNet2DConditionModel

    with init_empty_weights():
        if family in ("sd15", "sdxl"):
            unet = UNet2DConditionModel(**(SD15_UNET if family == "sd15" else SDXL_UNET))
            return unet, ControlNetModel.from_unet(unet, load_weights_from_unet=False)
        if family == "flux":
            from diffusers import FluxTransformer2DModel

            return (FluxTransformer2DModel(**FLUX_DEV),
                    FluxControlNetModel(**{**FLUX_DEV, "num_layers": 4, "num_single_layers": 10}))
        from diffusers import SD3Transformer2DModel

        return SD3Transformer2DModel(**SD35_LARGE), SD3ControlNetModel(**{**SD35_LARGE, "num_layers": 12})


def light_counts(family: str, ranks: list[int]) -> dict[str, int]:
    """Parameters of the denoiser, the whole ControlNet, and the trained ones at each rank."""
    from cnet.light_controlnet import add_adapters

    denoiser, controlnet = controlnet_on_meta(family)
    counts = {"denoiser": sum(p.numel() for p in denoiser.parameters()),
              "controlnet": sum(p.numel() for p in controlnet.parameters())}
    for rank in ranks:
        _, adapted = controlnet_on_meta(family)
        add_adapters(adapted, rank)
        counts[f"rank {rank}"] = sum(p.numel() for p in adapted.parameters() if p.requires_grad)
    return counts


def training_state_gb(counts: dict[str, int], trained: int | None) -> float:
    """Weights, gradients and optimizer states on the card (GB): the whole copy trained when `trained` is None."""
    frozen_copy = 0 if trained is None else counts["controlnet"] * 2
    return (counts["denoiser"] * 2 + frozen_copy + (trained or counts["controlnet"]) * TRAINED_BYTES) / GB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[16, 64])
    args = parser.parse_args()
    rows = []
    for family in ("sd15", "sdxl", "flux", "sd3"):
        counts = light_counts(family, args.ranks)
        rows.append([family, "whole copy", f"{counts['controlnet'] / 1e6:.1f}M (100%)",
                     f"{counts['controlnet'] * 2 / GB:.2f} GB (fp16)", f"{training_state_gb(counts, None):.1f} GB"])
        for rank in args.ranks:
            trained = counts[f"rank {rank}"]
            rows.append([family, f"LoRA rank {rank}", f"{trained / 1e6:.1f}M ({trained / counts['controlnet']:.1%})",
                         f"{trained * 4 / 1e6:.0f} MB (fp32)", f"{training_state_gb(counts, trained):.1f} GB"])
    record("Light ControlNets: trained weights, file and training state per family",
           ["family", "trains", "trained weights", "file", "training state on the card (weights only)"], rows,
           "Counted on the meta device (published architectures; the DiTs' ControlNets at diffusers' default depth). "
           "The file: a full ControlNet as usually shared (fp16), a light file as `python -m train` writes it (fp32, "
           "the trained weights alone, rebuilt on the base when loaded). Training state: the locked denoiser and "
           "the frozen copy in 16 bits, 16 bytes per trained weight (fp32, gradient, AdamW); activations on top.")


if __name__ == "__main__":
    main()
