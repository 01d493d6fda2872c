"""Memory of the VAE at upscale sizes: peak RSS of one decode, whole-image vs tiled (diffusers' VAE tiling).

The Stable Diffusion 1.5 VAE architecture with random weights (`cnet.tiny.build_sd15_vae`: the true shapes), fp32 on
the CPU, one fresh process per case so each peak is its own. A 2x upscale of a 1024 px picture decodes 2048 px: the
engine tiles every image with a side over 1024 (cnet.engine.AUTO_TILING_SIDE).

    python -m bench.upscale_memory [--cases 1024:whole,2048:tiled,2048:whole]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from bench.common import record


def child(side: int, tiled: bool) -> dict:
    import torch

    from cnet.tiny import build_sd15_vae

    torch.manual_seed(0)
    vae = build_sd15_vae().eval()
    if tiled:
        vae.enable_tiling()
    latents = torch.randn(1, 4, side // 8, side // 8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB: the model and the interpreter
    start = time.perf_counter()
    with torch.no_grad():
        image = vae.decode(latents).sample
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert image.shape[-2:] == (side, side)
    return {"side": side, "tiled": tiled, "peak_gib": peak / 2**20, "decode_gib": (peak - before) / 2**20,
            "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="1024:whole,2048:tiled,2048:whole")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, how = args.child.split(":")
        print(json.dumps(child(int(side), how == "tiled")))
        return
    rows = []
    for case in args.cases.split(","):
        proc = subprocess.run([sys.executable, "-m", "bench.upscale_memory", "--child", case], capture_output=True,
                              text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    record("Upscale memory: one VAE decode, whole vs tiled (SD1.5 VAE shapes, fp32, CPU)",
           ["output side", "VAE", "peak RSS (GiB)", "added by the decode (GiB)", "decode (s)"],
           [[r["side"], "tiled" if r["tiled"] else "whole", f"{r['peak_gib']:.2f}", f"{r['decode_gib']:.2f}",
             f"{r['seconds']:.0f}"] for r in rows],
           "One fresh process per case (a peak is per process; memory, not speed, is the point: one run each). "
           "The U-Net at 2048 px is not tiled: a tile-by-tile U-Net (Ultimate SD upscale style) is not built yet.")


if __name__ == "__main__":
    main()
