"""Few-step mode against the paper's default: steps x seconds per step, SD1.5 + ControlNet shapes, CPU.

    python -m bench.few_step [--resolution 512] [--models DIR]

The default is 20 DDIM steps at CFG 9 (each step runs the U-Net and ControlNet on a batch of 2: the unconditional
half and the conditional one); few-step mode is 4 LCM steps at guidance 1 (a batch of 1) with an LCM-LoRA. The
weights are random with the published architectures (a rank-4 LoRA stands in for the LCM-LoRA: the same layers are
adapted, so the cost is the same; the pictures mean nothing). One run each, after one warm-up run of each: minutes
of CPU time, as the issue asks; alternate and repeat for a tighter figure.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.common import record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--models", help="an SD1.5-shaped folder from `python -m cnet tiny-model DIR --preset sd15`")
    args = parser.parse_args(argv)
    import numpy as np
    from PIL import Image

    from cnet.engine import Engine
    from cnet.families import FAMILIES, few_step_settings
    from cnet.request import ControlUnit, GenerationRequest
    from cnet.tiny import save_tiny_lora, save_tiny_models

    work = Path(tempfile.mkdtemp(prefix="cnet-bench-few-"))
    if args.models:
        base, net = Path(args.models) / "base", Path(args.models) / "controlnet"
    else:
        base, net = save_tiny_models(work / "m", preset="sd15")
    os.environ["CNET_FEW_STEP_LORA"] = str(save_tiny_lora(base, work / "lora"))
    cond = Image.fromarray(((np.random.default_rng(0).random((args.resolution, args.resolution, 3)) > 0.9) * 255)
                           .astype(np.uint8))
    engine = Engine(str(base), device="cpu", dtype="float32")  # as its recorded figures; bench/live.py: bfloat16
    unit = ControlUnit(cond, controlnet=str(net))
    requests = {"default: 20 DDIM steps, CFG 9": GenerationRequest(units=[unit], seed=0),
                "few-step: 4 LCM steps, guidance 1, LCM-LoRA": GenerationRequest(
                    units=[unit], seed=0, **few_step_settings(FAMILIES["sd15"], {}))}
    seconds = {}
    for request in requests.values():  # warm-up: the LoRA loads, kernels warm
        engine.generate(request)
    load = os.getloadavg()[0]
    for name, request in requests.items():
        start = time.perf_counter()
        engine.generate(request)
        seconds[name] = time.perf_counter() - start
    default = seconds["default: 20 DDIM steps, CFG 9"]
    rows = [[name, r.num_inference_steps, f"{s / r.num_inference_steps:.2f}", f"{s:.1f}", f"{default / s:.1f}x"]
            for (name, r), s in zip(requests.items(), seconds.values())]
    # A live preview (cnet/preview.py) of this size's latents, against a step of each.
    import statistics

    import torch

    from cnet.preview import latents_to_preview

    latents = torch.randn(1, 4, args.resolution // 8, args.resolution // 8)
    costs = []
    for _ in range(50):
        start = time.perf_counter()
        latents_to_preview(latents, "sd15", (args.resolution, args.resolution))
        costs.append(time.perf_counter() - start)
    preview = statistics.median(costs)
    steps = {name: s / r.num_inference_steps for (name, r), s in zip(requests.items(), seconds.values())}
    rows.append(["live preview, one (median of 50)", "", f"{preview * 1000:.2f} ms", "",
                 " / ".join(f"{preview / s:.2%} of a {n.split(':')[0]} step" for n, s in steps.items())])
    record(f"Few-step mode vs the default, SD1.5 + ControlNet shapes at {args.resolution}x{args.resolution}, CPU",
           ["run", "steps", "s / step", "s / image", "faster than the default"], rows,
           f"One run each after a warm-up of each; fp32, load average {load:.2f} at the start. A step of the "
           "default runs a batch of 2 (CFG), a few-step one a batch of 1: the time per image falls by about "
           "5 x 2 = 10x, less the fixed cost (text encoder, VAE decode).")


if __name__ == "__main__":
    main()
