"""Live frames on this CPU: one whole frame of the SD1.5 live preset through the engine, by precision and layout.

    python -m bench.live [--sizes 384,512] [--repeats 5] [--models DIR]

A frame is what a stroke costs in live mode (cnet/live.py): the prompt encoded, one LCM step of the U-Net and the
ControlNet at guidance 1 (a batch of 1: no CFG), with a rank-64 LoRA on the layers LCM-LoRA adapts, and a TAESD
decode. The weights are random with the published architectures (`python -m cnet tiny-model DIR --preset sd15`,
diffusers' default AutoencoderTiny = TAESD's), so the times are real and the pictures mean nothing. Configurations
are alternated, the order flipping every round, after one warm-up each; min and median seconds, and the load seen.

What each saves: bfloat16 halves the bytes of every weight and activation, and on a CPU with AMX (Intel Sapphire
Rapids and later) its matrix multiplies and convolutions run on the tile unit (oneDNN); channels-last lets oneDNN
skip the layout reorders around each convolution.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.common import record
from bench.engine import interleaved

# LCM-LoRA's adapted layers (diffusers' train_lcm_distill_lora_sd.py), so the stand-in costs what the real one does.
LCM_LORA_LAYERS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1",
                   "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]
CONFIGS = {  # name -> (Engine options, torch threads; 0: torch's default, one per core)
    "float32 (the CPU default without AMX)": ({"dtype": "float32", "channels_last": False}, 0),
    "bfloat16, contiguous": ({"dtype": "bfloat16", "channels_last": False}, 0),
    "bfloat16, channels-last (the default with AMX)": ({"dtype": "bfloat16", "channels_last": True}, 0),
    "bfloat16, channels-last, 1 thread": ({"dtype": "bfloat16", "channels_last": True}, 1),
}


def stand_in_lora(base: Path, out: Path) -> Path:
    """A rank-64 LoRA on LCM-LoRA's layers of the base's U-Net (random weights), in diffusers' file layout."""
    from cnet.tiny import save_tiny_lora

    return save_tiny_lora(base, out, rank=64, targets=tuple(LCM_LORA_LAYERS))


def models(folder: str | None, work: Path) -> tuple[Path, Path]:
    """The SD1.5-shaped base and ControlNet (built when no folder is given), with TAESD and the LoRA stand-in set
    as the live preset's (CNET_TINY_VAE, CNET_FEW_STEP_LORA)."""
    from diffusers import AutoencoderTiny

    from cnet.tiny import save_tiny_models

    base, net = (Path(folder) / "base", Path(folder) / "controlnet") if folder else \
        save_tiny_models(work / "m", preset="sd15")
    AutoencoderTiny().save_pretrained(work / "taesd")
    os.environ["CNET_TINY_VAE"] = str(work / "taesd")
    os.environ["CNET_FEW_STEP_LORA"] = str(stand_in_lora(base, work / "lora"))
    return base, net


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="384,512", help="output sides, e.g. 384,512")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", help="an SD1.5-shaped folder from `python -m cnet tiny-model DIR --preset sd15`")
    parser.add_argument("--steps", type=int, help="LCM steps per frame (default: the SD1.5 preset's on a CPU)")
    parser.add_argument("--compile", action="store_true",
                        help="also bfloat16, channels-last and torch.compile (minutes to compile)")
    args = parser.parse_args(argv)
    import numpy as np
    import torch
    from PIL import Image

    from cnet.compiled import ShapeBuckets
    from cnet.engine import Engine
    from cnet.families import FAMILIES, few_step_settings
    from cnet.live import live_settings
    from cnet.request import ControlUnit, GenerationRequest

    base, net = models(args.models, Path(tempfile.mkdtemp(prefix="cnet-bench-live-")))
    configs = dict(CONFIGS)
    if args.compile:  # every size is a bucket; the warm-up frame of each size compiles it (not timed)
        buckets = ShapeBuckets.parse(",".join(f"{s}x{s}" for s in args.sizes.split(",")), "1")
        configs["bfloat16, channels-last, torch.compile"] = (
            {"dtype": "bfloat16", "channels_last": True, "compile": True, "compile_buckets": buckets}, 0)
    engines = {name: Engine(str(base), device="cpu", **options) for name, (options, _) in configs.items()}
    cores = torch.get_num_threads()

    def frame(name: str, request: GenerationRequest) -> None:
        torch.set_num_threads(configs[name][1] or cores)
        engines[name].generate(request)

    family = FAMILIES["sd15"]
    rows, load_before = [], os.getloadavg()[0]
    for side in (int(s) for s in args.sizes.split(",")):
        cond = Image.fromarray(((np.random.default_rng(0).random((side, side, 3)) > 0.9) * 255).astype(np.uint8))
        asked = live_settings(family.live, family, {"prompt_mode": "custom", "prompt": "a house", "seed": 0,
                                                    "width": side, "height": side}, device="cpu")
        asked["width"], asked["height"] = side, side  # this row's size, whatever the preset's cap
        asked["num_inference_steps"] = args.steps or asked["num_inference_steps"]
        request = GenerationRequest(units=[ControlUnit(cond, controlnet=str(net))], **few_step_settings(family, asked))
        times = interleaved({name: (lambda n=name, r=request: frame(n, r)) for name in engines}, args.repeats)
        fp32 = statistics.median(next(iter(times.values())))
        rows += [[f"{side}x{side}", name, f"{min(t):.2f}", f"{statistics.median(t):.2f}",
                  f"{fp32 / statistics.median(t):.2f}x"] for name, t in times.items()]
    steps = args.steps or family.live.cpu_steps
    record(f"Live frames on the CPU: SD1.5 + ControlNet, {steps} LCM step{'s' if steps > 1 else ''}, TAESD decode",
           ["size", "precision / layout", "min s / frame", "median s / frame", "vs float32 (medians)"], rows,
           f"{args.repeats} rounds after a warm-up, the order flipping every round; torch {torch.__version__}, "
           f"{cores} threads unless said, AMX {'yes' if torch.cpu._is_amx_tile_supported() else 'no'}; "
           f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after. A frame: prompt encoding, "
           f"{steps} U-Net + ControlNet step(s) at guidance 1 with a rank-64 LoRA on LCM-LoRA's layers (unfused, as "
           "the engine runs LoRAs), TAESD decode, random weights with the published shapes.")


if __name__ == "__main__":
    main()
