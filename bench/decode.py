"""The opt-in fast decode against the VAE: one 512x512 image's latents decoded by SD1.5's AutoencoderKL and by
TAESD (diffusers' AutoencoderTiny), random weights with the published architectures, on this machine.

    python -m bench.decode [--resolution 512] [--repeats 5]

Alternated (VAE, TAESD, VAE, ...), after one untimed decode of each; min and median seconds. What it saves: the VAE
decoder runs 128- to 512-channel 3x3 convolutions up to full resolution (2.48 TFLOP at 512 px, counted with torch's
FlopCounterMode, 2 per multiply-add); TAESD's decoder has 64 channels (0.14 TFLOP).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench.common import record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import torch
    from diffusers import AutoencoderTiny
    from torch.utils.flop_counter import FlopCounterMode

    from cnet.tiny import build_sd15_vae

    torch.manual_seed(0)
    decoders = {"VAE (AutoencoderKL, SD1.5)": build_sd15_vae().eval(),
                "TAESD (AutoencoderTiny)": AutoencoderTiny().eval()}
    latents = torch.randn(1, 4, args.resolution // 8, args.resolution // 8)
    flops, times = {}, {name: [] for name in decoders}
    with torch.no_grad():
        for name, vae in decoders.items():
            counter = FlopCounterMode(display=False)
            with counter:
                vae.decode(latents)
            flops[name] = counter.get_total_flops()
        load = os.getloadavg()[0]
        for _ in range(args.repeats):
            for name, vae in decoders.items():
                start = time.perf_counter()
                vae.decode(latents)
                times[name].append(time.perf_counter() - start)
    vae_median = statistics.median(times["VAE (AutoencoderKL, SD1.5)"])
    rows = [[name, f"{flops[name] / 1e12:.3f}", f"{min(t):.3f}", f"{statistics.median(t):.3f}",
             f"{vae_median / statistics.median(t):.1f}x"] for name, t in times.items()]
    record(f"Decode of one {args.resolution}x{args.resolution} image: VAE against TAESD (fast decode)",
           ["decoder", "TFLOP", "min s", "median s", "speed-up"], rows,
           f"float32 on the CPU, {args.repeats} repeats alternated after one untimed decode each (the FLOP count); "
           f"load 1-min avg at the start: {load:.2f}.")


if __name__ == "__main__":
    main()
